#!/bin/sh
# recipe.sh — write the YAFFS2 fixtures. Debian packages no mkyaffs2image
# (apt-cache search yaffs finds only unyaffs, a reader), so the fixtures come
# from the test writer in writer_test.go, which lays out chunks as
# mkyaffs2image does (see the package comment for the yaffs_guts.h and
# yaffs_packedtags2.h facts it follows) and whose plain little-endian output
# TestAgainstUnyaffs checks with unyaffs:
#   yaffs2-le-2k.img   2048-byte pages, 64-byte spare, tags at spare+0, little-endian
#   yaffs2-be-4k.img   4096-byte pages, 224-byte spare, tags after the bad-block
#                      marker, big-endian, kernel-style extra header tags
# TestWriterFixtures fails when these differ from the writer's output.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../../.."
go test ./firmware/formats/yaffs2 -run WriterFixtures -update

#!/bin/sh
# recipe.sh — build the flash filesystem fixtures with the real tools from the
# shared camera-like tree (testdata/firmware/tree.sh):
#   jffs2-le.img / jffs2-be.img  mkfs.jffs2, 64 KiB erase blocks, both endians,
#                                /dev/console from a device table
#   cramfs.img                   mkfs.cramfs (identified by superblock + CRC)
#   ubifs.img                    mkfs.ubifs (NOR-style: -m 1, stored as 8-byte min I/O; 16256-byte LEBs)
#   ubi.img                      ubinize of it (16 KiB PEBs), volume "rootfs"
# Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SOURCE_DATE_EPOCH=1700000000 "$here/../../../../testdata/firmware/tree.sh" "$tmp/root"
printf '/dev/console c 600 0 0 5 1 0 0 -\n' >"$tmp/devtable"
mkfs.jffs2 -r "$tmp/root" -o "$here/jffs2-le.img" -e 0x10000 -l -q -D "$tmp/devtable"
mkfs.jffs2 -r "$tmp/root" -o "$here/jffs2-be.img" -e 0x10000 -b -q -D "$tmp/devtable"
mkfs.cramfs -n camroot "$tmp/root" "$here/cramfs.img" >/dev/null
mkfs.ubifs -r "$tmp/root" -m 1 -e 16256 -c 64 -x lzo -o "$here/ubifs.img"
cat >"$tmp/ubinize.cfg" <<CFG
[rootfs]
mode=ubi
image=$here/ubifs.img
vol_id=0
vol_type=dynamic
vol_name=rootfs
CFG
ubinize -o "$here/ubi.img" -m 1 -p 16KiB -Q 12345 "$tmp/ubinize.cfg"

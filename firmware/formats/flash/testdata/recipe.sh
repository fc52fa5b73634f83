#!/bin/sh
# recipe.sh — build the flash filesystem fixtures with the real tools from the
# shared camera-like tree (testdata/firmware/tree.sh):
#   jffs2-le.img / jffs2-be.img  mkfs.jffs2, 64 KiB erase blocks, both endians,
#                                /dev/console from a device table
#   cramfs.img                   mkfs.cramfs, little-endian, of the shared tree
#   cramfs-be.img                mkfs.cramfs -N big (MIPS byte order) of the cramfs tree:
#                                the shared tree plus incompressible random data of odd
#                                sizes, a file with zero pages, /dev/console, a block
#                                device and a FIFO (mknod: run as root or under fakeroot)
#   cramfs-holes.img             mkfs.cramfs -z (CRAMFS_FLAG_HOLES), little-endian, same tree
#   cramfs-pad.img               mkfs.cramfs -p (512-byte boot pad before the superblock,
#                                offsets counted from the pad) of the tree's etc/
#   cramfs-16k.img               mkfs.cramfs -b 16384 (blocks of a 16 KiB-page kernel) of usr/
#   cramfs-ext.img               no tool writes CRAMFS_FLAG_EXT_BLOCK_POINTERS images in
#                                Debian: the Go writer in cramfs_writer_test.go does, with
#                                go test ./firmware/formats/flash -run CramfsWriterFixture -update
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
cp -a "$tmp/root" "$tmp/cram"
mkdir -p "$tmp/cram/usr/lib"
# Incompressible bytes (AES-CTR of zeros with a fixed key), odd sizes.
openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f -iv 0 -in /dev/zero 2>/dev/null | head -c 10001 >"$tmp/cram/usr/lib/random.bin"
openssl enc -aes-128-ctr -K 0f0e0d0c0b0a09080706050403020100 -iv 0 -in /dev/zero 2>/dev/null | head -c 4097 >"$tmp/cram/usr/lib/random2.bin"
{ printf 'calibration table v1\n'; head -c 12288 /dev/zero; printf 'end\n'; } >"$tmp/cram/usr/lib/sparse.dat"
mknod "$tmp/cram/dev/console" c 5 1
mknod "$tmp/cram/dev/mtdblock2" b 31 2
mkfifo "$tmp/cram/var/run/ctl"
find "$tmp/cram" -exec touch -h -d "@1700000000" {} +
mkfs.cramfs -N big -n camroot-be "$tmp/cram" "$here/cramfs-be.img" >/dev/null
mkfs.cramfs -z -n camroot-holes "$tmp/cram" "$here/cramfs-holes.img" >/dev/null
mkfs.cramfs -p -n camroot-pad "$tmp/cram/etc" "$here/cramfs-pad.img" >/dev/null
mkfs.cramfs -b 16384 -n camroot-16k "$tmp/cram/usr" "$here/cramfs-16k.img" >/dev/null
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

#!/bin/sh
# recipe.sh — build the romfs fixture with the real genromfs (Debian package
# genromfs) from the shared camera-like tree (testdata/firmware/tree.sh),
# plus a file of incompressible bytes of odd size, a FIFO and, through
# genromfs's "@name,type,major,minor" special files (no root needed),
# /dev/console (char 5:1) and /dev/mtdblock2 (block 31:2). The tree's
# etc/passwd- is a hard link: genromfs writes it as a type 0 header.
# Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SOURCE_DATE_EPOCH=1700000000 "$here/../../../../testdata/firmware/tree.sh" "$tmp/root"
openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f -iv 0 -in /dev/zero 2>/dev/null | head -c 3001 >"$tmp/root/usr/bin/random.bin"
: >"$tmp/root/dev/@console,c,5,1"
: >"$tmp/root/dev/@mtdblock2,b,31,2"
mkfifo "$tmp/root/var/run/ctl"
genromfs -f "$here/romfs.img" -d "$tmp/root" -V camroot

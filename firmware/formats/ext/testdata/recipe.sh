#!/bin/sh
# recipe.sh — build the ext2/ext3/ext4 fixtures with the real mke2fs -d from
# the shared camera-like tree (testdata/firmware/tree.sh), then use debugfs to
# add what the tree cannot hold without root: /dev/console (char 5:1) and a
# file owned by uid/gid 1000. Deterministic: E2FSPROGS_FAKE_TIME, fixed UUID
# and hash seed. Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SOURCE_DATE_EPOCH=1700000000 "$here/../../../../testdata/firmware/tree.sh" "$tmp/root"
export E2FSPROGS_FAKE_TIME=1700000000
uuid=6b1f2e9c-0c4e-4c57-9a3e-5d1a0c2b7e11
mk() {
	out=$here/$1 type=$2 size=$3
	shift 3
	rm -f "$out"
	mke2fs -q -F -t "$type" -b 1024 -L camroot -U "$uuid" -E "hash_seed=$uuid,root_owner=0:0" \
		-d "$tmp/root" "$@" "$out" "$size" >/dev/null
	debugfs -w "$out" -f - >/dev/null 2>&1 <<'DBG'
cd /dev
mknod console c 5 1
sif console mode 020600
sif console mtime @1700000000
sif console ctime @1700000000
sif console atime @1700000000
cd /
sif /usr/share/www/index.html uid 1000
sif /usr/share/www/index.html gid 1000
DBG
}
mk ext-ext2.img ext2 256k -N 64
mk ext-ext3.img ext3 2048k
# ext4 with 4 KiB blocks, extents, flex_bg and 64bit (the mke2fs default set).
mk ext-ext4.img ext4 512k -N 64 -O ^has_journal,64bit -b 4096 -I 256

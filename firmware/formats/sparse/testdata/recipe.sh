#!/bin/sh
# recipe.sh — build the Android sparse fixtures with the real img2simg:
#   android-sparse.simg       an ext4 image of the shared camera-like tree
#                             (mke2fs -d), sparsed with 4 KiB blocks
#   android-sparse-fill.simg  a raw image of random, 0xdeadbeef-pattern and
#                             zero blocks: raw and fill chunks (fill.raw is
#                             the original, for the byte comparison)
#   android-sparse-split.simg the middle part of simg2simg's split of it:
#                             don't-care chunks and empty raw chunks
# Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SOURCE_DATE_EPOCH=1700000000 "$here/../../../../testdata/firmware/tree.sh" "$tmp/root"
export E2FSPROGS_FAKE_TIME=1700000000
uuid=6b1f2e9c-0c4e-4c57-9a3e-5d1a0c2b7e11
mke2fs -q -F -t ext4 -O ^has_journal -b 4096 -N 64 -L system -U "$uuid" \
	-E "hash_seed=$uuid,root_owner=0:0" -d "$tmp/root" "$tmp/ext4.img" 1M >/dev/null
img2simg "$tmp/ext4.img" "$here/android-sparse.simg" 4096
{
	head -c 8192 /dev/urandom
	i=0
	while [ $i -lt 2048 ]; do printf '\336\255\276\357'; i=$((i + 1)); done
	head -c 16384 /dev/zero
} >"$tmp/raw.img"
printf 'end of image\n' | dd of="$tmp/raw.img" bs=4096 seek=12 conv=notrunc 2>/dev/null
truncate -s 53248 "$tmp/raw.img"
img2simg "$tmp/raw.img" "$here/android-sparse-fill.simg" 4096
cp "$tmp/raw.img" "$here/fill.raw"
# img2simg writes zero runs as fill chunks; simg2simg's split parts cover the
# rest of the image with don't-care chunks. Keep the middle part.
simg2simg "$here/android-sparse-fill.simg" "$tmp/split.simg" 5000
cp "$tmp/split.simg.1" "$here/android-sparse-split.simg"

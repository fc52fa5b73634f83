#!/bin/sh
# recipe.sh — build the squashfs fixtures with the real mksquashfs (4.5), one
# per compressor it offers, plus a 4 KiB-block variant with fragments, from the
# shared camera-like tree (testdata/firmware/tree.sh). Run from anywhere.
# /dev/console (char 5:1) comes from a -p pseudo definition: no root needed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
SOURCE_DATE_EPOCH=1700000000 # the tree's mtimes; mksquashfs gets -all-time instead
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH "$here/../../../../testdata/firmware/tree.sh" "$tmp/root"
mk() {
	out=$1
	shift
	mksquashfs "$tmp/root" "$here/$out" -all-root -mkfs-time 0 -all-time 1700000000 \
		-noappend -no-progress -quiet -p 'dev/console c 600 0 0 5 1' "$@" >/dev/null
}
for c in gzip xz lzma lzo lz4 zstd; do
	mk "squashfs-$c.img" -comp "$c"
done
# Small blocks: busybox spans several blocks and its tail, like the small
# files, is packed into shared fragment blocks.
mk squashfs-frag4k.img -comp gzip -b 4096 -always-use-fragments
# No compression at all (-noI -noD -noF -noX): stored blocks and metadata.
mk squashfs-uncompressed.img -comp gzip -noI -noD -noF -noX
# Issue 11: zstd, 128 KiB blocks, one 140,000-byte file (a full block and a
# partial one) of alternating 512-byte runs of random bytes (Python's
# Mersenne Twister, seeded: deterministic) and English text. Decoded by
# parallel workers, the first block overwrote the second (this content makes
# the race show on nearly every run; other random bytes rarely do).
mixed=$tmp/mixed
mkdir "$mixed"
python3 - "$mixed/mixed.bin" <<'PY'
import random, sys
rng = random.Random(2)
text = (b"It was the best of times, it was the worst of times, it was the age of "
        b"wisdom, it was the age of foolishness. " * 5)[:512]
out = bytearray()
while len(out) < 140000:
    out += bytes(rng.getrandbits(8) for _ in range(512)) if len(out) // 512 % 2 == 0 else text
open(sys.argv[1], "wb").write(out[:140000])
PY
mksquashfs "$mixed" "$here/squashfs-zstd-mixed.img" -comp zstd -all-root -mkfs-time 0 \
	-all-time 1700000000 -noappend -no-progress -quiet >/dev/null
# 1.0 and 3.x (both byte orders) and big-endian 4.0 images (vendor LZMA framings):
# mksquashfs 4 cannot make them; the package's test writer (writer_test.go,
# following the 1.0, 2.x, 3.x and 4.0 on-disk layouts) does.
(cd "$here/.." && go test -run TestWriterFixtures -write-fixtures . >/dev/null)

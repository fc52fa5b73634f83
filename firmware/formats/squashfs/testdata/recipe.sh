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

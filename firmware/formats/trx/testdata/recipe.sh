#!/bin/sh
# Builds TRX fixtures with gen.py (no Debian tool makes TRX) around partitions
# made by the real tools: an lzma-compressed loader stand-in (xz --format=lzma),
# a gzip'd kernel stand-in and a squashfs root filesystem (mksquashfs).
# Run from this directory: sh recipe.sh
set -eu
export SOURCE_DATE_EPOCH=1700000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'CFE loader stand-in\n%.0s' $(seq 16) | xz --format=lzma -9 > "$tmp/loader.lzma"
printf 'MIPS Linux kernel stand-in\n%.0s' $(seq 32) | gzip -n -9 > "$tmp/kernel.gz"
mkdir -p "$tmp/root/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tmp/root/etc/passwd"
find "$tmp/root" -exec touch -h -d @1700000000 {} +
mksquashfs "$tmp/root" "$tmp/root.sqfs" -all-root -noappend -comp xz -quiet >/dev/null
/usr/bin/python3 gen.py 1 trx-v1.trx "$tmp/loader.lzma" "$tmp/kernel.gz" "$tmp/root.sqfs"
/usr/bin/python3 gen.py 2 trx-v2.trx "$tmp/kernel.gz" "$tmp/root.sqfs"

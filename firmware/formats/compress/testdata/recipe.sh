#!/bin/sh
# Builds the compression fixtures with the real tools (gzip, bzip2, xz, lz4,
# lzop, zstd; zlib through Python's zlib module, i.e. the C zlib).
# Run from this folder: sh recipe.sh. Deterministic: fixed content and mtimes.
set -eu
export LC_ALL=C SOURCE_DATE_EPOCH=1700000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A small camera-like configuration file (about 12 KiB).
{
	echo "# IPC-G5 camera configuration"
	i=0
	while [ $i -lt 200 ]; do
		echo "channel$i.stream=rtsp://0.0.0.0:554/Streaming/Channels/$i bitrate=$((i * 37 % 4096)) enable=$((i % 2))"
		i=$((i + 1))
	done
	echo "admin_password_hash=\$6\$salt\$0123456789abcdef"
} > "$tmp/camera.cfg"
touch -d @$SOURCE_DATE_EPOCH "$tmp/camera.cfg"
in="$tmp/camera.cfg"

gzip -9 -c "$in" > gzip.gz                 # stores the name and mtime
/usr/bin/python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.compress(open(sys.argv[1], "rb").read(), 9))' "$in" > zlib.zlib
bzip2 -9 -c "$in" > bzip2.bz2
xz -6 -c "$in" > xz.xz
xz --format=lzma -6 -c "$in" > lzma.lzma
lz4 -q -9 --content-size -c "$in" > lz4.lz4
lz4 -q -l -9 -c "$in" > lz4-legacy.lz4
( cd "$tmp" && lzop -9 -c camera.cfg ) > lzop.lzo
zstd -q -19 --no-progress -c "$in" > zstd.zst

# Adversarial and composite inputs.
head -c 1200 gzip.gz > gzip-truncated.gz                       # stream cut short
gzip -9 -n -c gzip.gz | gzip -9 -n -c > gzip-nested.gz          # three gzip layers
{ head -c 512 /dev/zero; cat xz.xz; head -c 300 /dev/zero | tr '\0' '\377'; cat zstd.zst; printf 'trailing bytes no format claims'; } > xz-multi.bin

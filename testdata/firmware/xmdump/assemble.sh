#!/bin/sh
# assemble.sh OUT — write the 16 MiB XiongMai-style flash dump to OUT from the
# parts of layout.txt, at the offsets in layout.txt, 0xFF elsewhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: assemble.sh OUT}
head -c 16777216 /dev/zero | tr '\000' '\377' >"$out"
grep -v '^#' "$here/layout.txt" | while read -r off part; do
	dd if="$here/$part" of="$out" bs=4096 seek=$((off / 4096)) conv=notrunc 2>/dev/null
done

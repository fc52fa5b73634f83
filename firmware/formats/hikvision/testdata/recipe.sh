#!/bin/sh
# Builds Hikvision digicap.dav fixtures with gen.py (no Hikvision packager is
# public; gen.py follows the documented SWKH layout) over files made by the
# real tools: a uImage from mkimage, a squashfs from mksquashfs, a gzip'd tar.
# Run from this directory: sh recipe.sh
set -eu
export SOURCE_DATE_EPOCH=1700000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/app/bin" "$tmp/app/etc"
printf 'davinci stand-in\n' > "$tmp/app/bin/davinci"
chmod 755 "$tmp/app/bin/davinci"
printf 'root:x:0:0:root:/root:/bin/psh\n' > "$tmp/app/etc/passwd"
find "$tmp/app" -exec touch -h -d @1700000000 {} +
mksquashfs "$tmp/app" "$tmp/app.img" -all-root -noappend -comp xz -quiet >/dev/null
printf 'kernel stand-in\n' > "$tmp/kernel.bin"
mkimage -A arm -O linux -T kernel -C none -a 0x80008000 -e 0x80008000 -n "Linux-3.18.20" -d "$tmp/kernel.bin" "$tmp/uImage" >/dev/null
printf 'class=IPC\n' > "$tmp/cfg"
/usr/bin/python3 gen.py hikvision-dav-swkh.dav _cfgUpgClass="$tmp/cfg" uImage="$tmp/uImage" app.img="$tmp/app.img"
/usr/bin/python3 gen.py --03kh hikvision-dav-03kh.dav

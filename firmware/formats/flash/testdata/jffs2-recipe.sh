#!/bin/sh
# jffs2-recipe.sh — build the JFFS2 extraction fixtures with mkfs.jffs2 and
# sumtool (mtd-utils) from the shared camera-like tree (testdata/firmware/tree.sh)
# plus a few extras: incompressible random bytes, odd sizes, a long name, a
# fifo and block and character devices from a device table. -U keeps the
# modes (setuid included) and makes every owner root; -f sets every time to 0
# (the device table's nodes would get the current time otherwise).
#
#   jffs2-le-8k-none.img      little-endian, 8 KiB erase blocks, no compression
#   jffs2-be-128k-lzo.img     big-endian, 128 KiB erase blocks, lzo (rtime is
#                             enabled too, lzo's priority wins)
#   jffs2-le-256k-rtime.img   little-endian, 256 KiB erase blocks, rtime only
#   jffs2-be-8k-summary.img   big-endian, 8 KiB erase blocks, zlib, rewritten
#                             by sumtool: nodes re-split to fit the blocks, an
#                             erase block summary node at the end of each
#   jffs2-be-appended.img     big-endian, 8 KiB erase blocks: an image of an
#                             older tree padded to its erase block, then the
#                             appendage `mkfs.jffs2 -i` writes for the final
#                             tree (newer versions of the names, new inodes)
#   jffs2-tree.txt            the final tree: type mode size sha256 path
#                             [-> target] [major,minor], sorted; every image
#                             above must extract to exactly this
#
# mkfs.jffs2 refuses erase blocks under 8 KiB. Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C SOURCE_DATE_EPOCH=1700000000
root=$tmp/root
"$here/../../../../testdata/firmware/tree.sh" "$root"
# Incompressible: 5003 pseudo-random bytes over the full byte range.
awk 'BEGIN { s = 4242; for (i = 0; i < 5003; i++) { s = (s * 1103515245 + 12345) % 2147483648; printf "%c", int(s / 65536) % 256 } }' >"$root/usr/bin/random.bin"
# Odd sizes around the 4 KiB data node: 1 byte, 4097 bytes of text.
printf 'x' >"$root/etc/one"
awk 'BEGIN { for (i = 0; i < 4097; i++) printf "%c", 97 + i % 26 }' >"$root/etc/odd.txt"
mkdir -p "$root/var/log"
name=$(awk 'BEGIN { for (i = 0; i < 200; i++) printf "n" }')
printf 'long name\n' >"$root/var/log/$name"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
cat >"$tmp/devtable" <<'DEV'
/dev/console c 600 0 0 5 1 0 0 -
/dev/mtdblock3 b 640 0 0 31 3 0 0 -
/dev/ttyS c 660 0 0 4 64 0 0 -
/dev/initctl p 600 0 0 0 0 0 0 -
DEV

mkfs.jffs2 -r "$root" -o "$here/jffs2-le-8k-none.img" -l -e 8KiB -m none -U -f -D "$tmp/devtable"
mkfs.jffs2 -r "$root" -o "$here/jffs2-be-128k-lzo.img" -b -e 128KiB -X lzo -x zlib -U -f -D "$tmp/devtable"
mkfs.jffs2 -r "$root" -o "$here/jffs2-le-256k-rtime.img" -l -e 256KiB -x zlib -U -f -D "$tmp/devtable"
mkfs.jffs2 -r "$root" -o "$tmp/plain.img" -b -e 8KiB -U -f -D "$tmp/devtable"
sumtool -i "$tmp/plain.img" -o "$here/jffs2-be-8k-summary.img" -e 8KiB -b

# The older tree: other content in two files, one file not there yet.
old=$tmp/old
cp -a "$root" "$old"
printf 'rtsp_port=80\n' >"$old/etc/ipcam.conf"
printf 'root::0:0:root:/root:/bin/sh\n' >"$old/etc/passwd"
rm "$old/etc/passwd-" "$old/usr/bin/random.bin"
find "$old" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkfs.jffs2 -r "$old" -o "$tmp/base.img" -b -e 8KiB -p -U -f
mkfs.jffs2 -r "$root" -o "$tmp/app.img" -b -e 8KiB -U -f -D "$tmp/devtable" -i "$tmp/base.img"
cat "$tmp/base.img" "$tmp/app.img" >"$here/jffs2-be-appended.img"

# The listing of the final tree, devices from the table.
(
	cd "$root"
	find . -mindepth 1 | sort | while read -r p; do
		p=${p#./}
		mode=$(stat -c %a "$p")
		mode=$(printf '%04d' "$mode")
		if [ -L "$p" ]; then
			echo "symlink 0777 0 - $p -> $(readlink "$p")"
		elif [ -d "$p" ]; then
			echo "dir $mode 0 - $p"
		else
			echo "file $mode $(stat -c %s "$p") $(sha256sum <"$p" | cut -d' ' -f1) $p"
		fi
	done
	awk '{ t = $2 == "c" ? "chardev" : $2 == "b" ? "blockdev" : "fifo"
		d = t == "fifo" ? "" : " " $6 "," $7
		printf "%s %04d 0 - %s%s\n", t, $3, substr($1, 2), d }' "$tmp/devtable"
) | sort >"$here/jffs2-tree.txt"

#!/bin/sh
# End-to-end benchmark: `cordon inspect` on a 16 MiB camera flash dump (a
# bootloader-sized 0xff region, a uImage-wrapped kernel-like blob, then an
# xz squashfs root of ~3,000 files built from the fixtures and random blobs
# (about 10 MiB compressed), padded with 0xff to
# 16 MiB), with --workers 1 and 2 in the same run. Prints wall time and peak
# RSS of each, and the speedup.
#   sh inspect/testdata/bench-flash.sh [path/to/cordon]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cordon=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$cordon" ]; then
	(cd "$here/../.." && go build -o "$work/cordon" ./cmd/cordon)
	cordon=$work/cordon
fi
/usr/bin/time -f "%e" true 2>/dev/null || { echo "needs GNU time (/usr/bin/time)"; exit 1; }
root=$work/root
mkdir -p "$root"
cp -a "$here/fw/." "$root/"
rm -f "$root/report.json"
i=0
while [ $i -lt 300 ]; do
	d=$root/usr/share/app$i
	mkdir -p "$d"
	j=0
	while [ $j -lt 10 ]; do
		case $j in
		0) cp "$here/fw/bin/busybox" "$d/bin$j" ;;
		1) cp "$here/fw/usr/bin/cloudd" "$d/bin$j" ;;
		2) head -c 32768 /dev/urandom > "$d/blob$j.bin" ;; # incompressible: ~10 MiB of squashfs in all
		*) printf 'key%d=value%d\nserver=update%d.example.com\nlog=/var/log/app%d\n' $j $i $j $i > "$d/conf$j.cfg" ;;
		esac
		j=$((j + 1))
	done
	i=$((i + 1))
done
mksquashfs "$root" "$work/root.sqfs" -comp xz -all-root -noappend -quiet >/dev/null
head -c 2097152 /dev/urandom > "$work/kernel.bin"
mkimage -A arm -O linux -T kernel -C none -a 0x80008000 -e 0x80008000 -n "Linux-4.9.37" -d "$work/kernel.bin" "$work/uImage" >/dev/null
size=16777216
{
	head -c 262144 /dev/zero | tr '\000' '\377'
	cat "$work/uImage" "$work/root.sqfs"
} > "$work/flash.bin"
have=$(stat -c %s "$work/flash.bin")
head -c $((size - have)) /dev/zero | tr '\000' '\377' >> "$work/flash.bin"
echo "flash dump: $(stat -c %s "$work/flash.bin") bytes, squashfs $(stat -c %s "$work/root.sqfs") bytes, $(find "$root" -type f | wc -l) files"
for w in 1 2; do
	/usr/bin/time -f "%e %M %U %S" -o "$work/time$w" "$cordon" inspect "$work/flash.bin" --workers $w --format json -o "$work/out$w.json"
	read -r secs kb usr sys < "$work/time$w"
	echo "workers=$w: ${secs}s wall (${usr}s user, ${sys}s sys), peak RSS $((kb / 1024)) MiB, $(grep -c '"rule"' "$work/out$w.json") findings"
done
awk -v a="$(cut -d' ' -f1 "$work/time1")" -v b="$(cut -d' ' -f1 "$work/time2")" 'BEGIN { printf "speedup workers=2 vs 1: %.2fx\n", a / b }'

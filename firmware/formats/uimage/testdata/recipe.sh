#!/bin/sh
# Builds the uImage fixtures with U-Boot's mkimage (u-boot-tools).
# Run from this directory: sh recipe.sh
set -eu
export SOURCE_DATE_EPOCH=1700000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A stand-in "kernel" and a small camera-like ramdisk (cpio newc).
printf 'ARM Linux kernel stand-in for cordon tests\n%.0s' $(seq 64) > "$tmp/kernel.bin"
mkdir -p "$tmp/root/etc/init.d" "$tmp/root/bin"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tmp/root/etc/passwd"
printf '#!/bin/sh\nmount -a\n/bin/ipcam &\n' > "$tmp/root/etc/init.d/rcS"
chmod 755 "$tmp/root/etc/init.d/rcS"
printf 'ipcam daemon\n' > "$tmp/root/bin/ipcam"
find "$tmp/root" -exec touch -h -d @1700000000 {} +
(cd "$tmp/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$tmp/ramdisk.cpio"
gzip -n -9 -c "$tmp/kernel.bin" > "$tmp/kernel.bin.gz"

mkimage -A arm -O linux -T kernel -C none -a 0x80008000 -e 0x80008000 -n "Linux-3.10.14" \
	-d "$tmp/kernel.bin" uimage-kernel.img >/dev/null
mkimage -A arm -O linux -T kernel -C gzip -a 0x80008000 -e 0x80008000 -n "Linux-3.10.14 gz" \
	-d "$tmp/kernel.bin.gz" uimage-gzip.img >/dev/null
mkimage -A arm -O linux -T ramdisk -C none -a 0 -e 0 -n "ramdisk" \
	-d "$tmp/ramdisk.cpio" uimage-ramdisk.img >/dev/null
mkimage -A arm -O linux -T multi -C none -a 0x80008000 -e 0x80008000 -n "multi kernel+ramdisk" \
	-d "$tmp/kernel.bin:$tmp/ramdisk.cpio" uimage-multi.img >/dev/null

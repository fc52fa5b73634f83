#!/bin/sh
# Builds FIT images with U-Boot's mkimage (and dtc) from camera.its: a gzip'd
# kernel stand-in, a cpio initramfs and a device tree. fit.itb embeds the data;
# fit-external.itb stores it after the blob (mkimage -E).
# Run from this directory: sh recipe.sh
set -eu
export SOURCE_DATE_EPOCH=1700000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'ARM Linux kernel stand-in for cordon tests\n%.0s' $(seq 32) | gzip -n -9 > "$tmp/kernel.bin.gz"
mkdir -p "$tmp/root/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tmp/root/etc/passwd"
find "$tmp/root" -exec touch -h -d @1700000000 {} +
(cd "$tmp/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$tmp/ramdisk.cpio"
dtc -I dts -O dtb -o "$tmp/board.dtb" ../../dtb/testdata/camera.dts
cp camera.its "$tmp/"
mkimage -f "$tmp/camera.its" fit.itb >/dev/null
mkimage -E -f "$tmp/camera.its" fit-external.itb >/dev/null

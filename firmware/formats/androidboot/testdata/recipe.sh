#!/bin/sh
# Builds Android boot images with AOSP mkbootimg (Debian package mkbootimg),
# header versions 0, 1, 2 and 3 (this mkbootimg stops at 3; v4 is covered by a unit test), around a gzip'd kernel stand-in, a cpio newc
# ramdisk and a device tree from dtc. Run from this directory: sh recipe.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'ARM64 Linux kernel stand-in\n%.0s' $(seq 40) | gzip -n -9 > "$tmp/kernel"
mkdir -p "$tmp/root/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tmp/root/etc/passwd"
printf '#!/bin/sh\nexec /bin/ipcam\n' > "$tmp/root/init"
chmod 755 "$tmp/root/init"
find "$tmp/root" -exec touch -h -d @1700000000 {} +
(cd "$tmp/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$tmp/ramdisk"
printf 'second stage stand-in\n' > "$tmp/second"
dtc -q -I dts -O dtb -o "$tmp/dtb" ../../dtb/testdata/camera.dts
common="--kernel $tmp/kernel --ramdisk $tmp/ramdisk --os_version 11.0.0 --os_patch_level 2023-11"
mkbootimg $common --second "$tmp/second" --header_version 0 --pagesize 2048 --board camera \
	--cmdline "console=ttyS0 androidboot.hardware=cam" -o androidboot-v0.img
mkbootimg $common --header_version 1 --pagesize 4096 --cmdline "console=ttyS0" -o androidboot-v1.img
mkbootimg $common --dtb "$tmp/dtb" --header_version 2 --pagesize 2048 --cmdline "console=ttyS0" -o androidboot-v2.img
mkbootimg $common --header_version 3 --cmdline "console=ttyS0" -o androidboot-v3.img

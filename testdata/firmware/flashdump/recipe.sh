#!/bin/sh
# recipe.sh — build the small parts of the camera-like 16 MiB NOR flash dump
# with the real tools. The dump itself is not committed: assemble.sh (or the
# Go test in firmware/formats/flash) writes each part at the offset that
# layout.txt gives and fills the rest with 0xFF, as erased flash reads.
#
#   boot.bin        U-Boot-like bootloader: ARM-looking code words with a
#                   version string, then its environment (no known magic)
#   kernel.uimage   mkimage -A arm -O linux -T kernel -C gzip around a fake kernel
#   rootfs.squashfs mksquashfs -comp xz of the shared camera-like tree
#   config.jffs2    mkfs.jffs2 (little-endian, 64 KiB erase blocks) of /mnt/mtd
#
# Deterministic: fixed content, SOURCE_DATE_EPOCH, mkimage/mksquashfs times
# pinned; mkfs.jffs2 stores the tree's fixed mtimes. Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SOURCE_DATE_EPOCH=1700000000

# Bootloader: 24 KiB of instruction-like little-endian words, then strings.
awk 'BEGIN {
	s = 7
	for (i = 0; i < 6144 - 64; i++) {
		s = (s * 1103515245 + 12345) % 2147483648
		op = (i % 4 == 0) ? 229 : (i % 4 == 1) ? 227 : (i % 4 == 2) ? 234 : 225   # e5 e3 ea e1
		printf "%c%c%c%c", s % 256, int(s / 256) % 256, int(s / 65536) % 16, op
	}
}' >"$tmp/boot"
printf 'U-Boot 2016.11-hi3518ev300 (Nov 14 2023 - 22:13:20 +0000)\0' >>"$tmp/boot"
printf 'bootargs=mem=64M console=ttyAMA0,115200 root=/dev/mtdblock2 rootfstype=squashfs mtdparts=hi_sfc:256K(boot),2M(kernel),10M(rootfs),3840K(config)\0' >>"$tmp/boot"
printf 'bootcmd=sf probe 0;sf read 0x82000000 0x40000 0x200000;bootm 0x82000000\0' >>"$tmp/boot"
head -c 24576 "$tmp/boot" >"$here/boot.bin"

# Kernel: a fake zImage-like payload, gzip-compressed inside a uImage.
awk 'BEGIN {
	printf "Linux version 4.9.37 (builder@cam) (gcc version 6.3.0) #1 PREEMPT Tue Nov 14 22:13:20 UTC 2023\n"
	s = 99
	for (i = 0; i < 20000; i++) {
		s = (s * 1103515245 + 12345) % 2147483648
		printf "%c%c%c%c", s % 256, (s % 7 == 0) ? 0 : 160, int(s / 65536) % 4, 227
	}
}' >"$tmp/Image"
gzip -9 -n -c "$tmp/Image" >"$tmp/Image.gz"
mkimage -A arm -O linux -T kernel -C gzip -a 0x80008000 -e 0x80008000 \
	-n "Linux-4.9.37-hi3518ev300" -d "$tmp/Image.gz" "$here/kernel.uimage" >/dev/null

# Root filesystem.
"$here/../tree.sh" "$tmp/root"
env -u SOURCE_DATE_EPOCH mksquashfs "$tmp/root" "$here/rootfs.squashfs" -comp xz -all-root -mkfs-time 0 \
	-all-time 1700000000 -noappend -no-progress -quiet -p 'dev/console c 600 0 0 5 1' >/dev/null

# Configuration partition.
mkdir -p "$tmp/config/Config" "$tmp/config/Log"
printf '<Network><IP>192.168.1.10</IP><Gateway>192.168.1.1</Gateway></Network>\n' >"$tmp/config/Config/network.xml"
printf 'admin:21232f297a57a5a743894a0e4a801fc3\n' >"$tmp/config/Config/Account1"
printf 'cloud=p2p.example-camera-cloud.com:8000\n' >"$tmp/config/Config/p2p.conf"
: >"$tmp/config/Log/.keep"
find "$tmp/config" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkfs.jffs2 -r "$tmp/config" -o "$here/config.jffs2" -e 0x10000 -l -q

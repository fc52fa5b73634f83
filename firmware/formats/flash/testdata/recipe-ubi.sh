#!/bin/sh
# recipe-ubi.sh — build the UBI/UBIFS extraction fixtures with mtd-utils
# (mkfs.ubifs, ubinize) from the shared camera-like tree (tree.sh) plus a few
# extras: pseudo-random (incompressible) and text files of odd sizes, a
# sparse file (mkfs.ubifs stores no data node for a zero block: a hole) and
# device nodes and a fifo from a device table.
#   ubifs-zlib.img   mkfs.ubifs -x zlib, NOR-style (-m 1, 16256-byte LEBs),
#                    with the device table
#   ubi-volumes.img  ubinize, 16 KiB PEBs, image_seq 4242: volume 0 "rootfs"
#                    (dynamic, mkfs.ubifs -x zstd) and volume 1 "blob"
#                    (static, 20011 pseudo-random bytes)
#   ubi-nand.bin.gz  a Dahua/Hikvision-style raw NAND dump (2048-byte pages
#                    with 64 spare bytes, 128 KiB blocks; nand-oob.sh): a boot
#                    area, then UBI (image_seq 7) with "rootfs" (dynamic,
#                    mkfs.ubifs -x lzo of the tree with planted findings: a
#                    weak MD5-crypt root hash in /etc/passwd, an RSA private
#                    key, a Dahua cloud host name), "kernel" (static, the
#                    flash dump's uImage) and an empty autoresize "userdata";
#                    one bad and one erased block among its erase blocks;
#                    erased flash after it. gzip -9n keeps it small.
# Deterministic (fixed content and mtimes), except the random UUID that
# mkfs.ubifs writes in every superblock: a rebuild changes those 16 bytes
# (and the image hashes in the golden manifests), not the files. Run from
# anywhere, then: go test ./firmware/formats -run Fixtures -update.
#
# recipe-ubi.sh sources DIR builds only the sources, for the Go tests that
# compare the extraction with them byte for byte: DIR/root (ubifs-zlib.img,
# ubi-volumes.img), DIR/nandroot (ubi-nand.bin.gz), DIR/blob, DIR/devtable.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$here/../../../..
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SOURCE_DATE_EPOCH=1700000000

# extras DIR: add the extra files to a tree.sh tree.
extras() {
	perl -e 'srand(7); print map { chr(int(rand(256))) } 1 .. 13001' >"$1/lib/firmware.bin"
	perl -e 'for (1 .. 4097) { print chr(97 + $_ % 26) }' >"$1/etc/block-plus-one.txt"
	printf 'x' >"$1/etc/one"
	truncate -s 20000 "$1/var/sparse.db"
	printf 'tail' >>"$1/var/sparse.db"
	find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}
cat >"$tmp/devtable" <<'DEV'
/dev/console c 600 0 0 5 1 0 0 -
/dev/mtdblock2 b 640 0 0 31 2 0 0 -
/dev/ttyS300 c 660 0 0 4 300 0 0 -
/dev/initctl p 600 0 0 0 0 0 0 -
DEV

# sources DIR: the trees, the static volume's blob and the device table.
sources() {
	"$top/testdata/firmware/tree.sh" "$1/root"
	extras "$1/root"
	perl -e 'srand(11); print map { chr(int(rand(256))) } 1 .. 20011' >"$1/blob"
	# The NAND dump's root filesystem: the tree with things `cordon inspect` finds.
	"$top/testdata/firmware/tree.sh" "$1/nandroot"
	extras "$1/nandroot"
	printf 'root:%s:0:0:root:/root:/bin/sh\n' "$(openssl passwd -1 -salt dhNAND01 7ujMko0admin)" >"$1/nandroot/etc/passwd"
	mkdir -p "$1/nandroot/etc/ssl/private"
	cp "$here/nand-cloud.key" "$1/nandroot/etc/ssl/private/cloud.key" # its own copy: the image must not change when inspect's fixtures do
	printf 'p2p_enable=1\np2p_server=p2p.easy4ipcloud.com\np2p_port=8800\n' >"$1/nandroot/etc/p2p.conf"
	find "$1/nandroot" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	cp "$tmp/devtable" "$1/devtable"
}
if [ "${1:-}" = sources ]; then
	mkdir -p "${2:?usage: recipe-ubi.sh sources DIR}"
	sources "$2"
	exit 0
fi

mkdir "$tmp/src"
sources "$tmp/src"
mkfs.ubifs -r "$tmp/src/root" -m 1 -e 16256 -c 64 -x zlib -D "$tmp/devtable" -o "$here/ubifs-zlib.img"
mkfs.ubifs -r "$tmp/src/root" -m 1 -e 16256 -c 64 -x zstd -o "$tmp/rootfs-zstd.ubifs"
cat >"$tmp/volumes.cfg" <<CFG
[rootfs]
mode=ubi
image=$tmp/rootfs-zstd.ubifs
vol_id=0
vol_type=dynamic
vol_name=rootfs
[blob]
mode=ubi
image=$tmp/src/blob
vol_id=1
vol_type=static
vol_name=blob
CFG
ubinize -o "$here/ubi-volumes.img" -m 1 -p 16KiB -Q 4242 "$tmp/volumes.cfg"

mkfs.ubifs -r "$tmp/src/nandroot" -m 2048 -e 126976 -c 40 -x lzo -D "$tmp/devtable" -o "$tmp/nandroot.ubifs"
cat >"$tmp/nand.cfg" <<CFG
[rootfs]
mode=ubi
image=$tmp/nandroot.ubifs
vol_id=0
vol_type=dynamic
vol_name=rootfs
[kernel]
mode=ubi
image=$top/testdata/firmware/flashdump/kernel.uimage
vol_id=1
vol_type=static
vol_name=kernel
[userdata]
mode=ubi
vol_id=2
vol_type=dynamic
vol_name=userdata
vol_size=1MiB
vol_flags=autoresize
CFG
ubinize -o "$tmp/nand.ubi" -m 2048 -p 128KiB -Q 7 "$tmp/nand.cfg"
# Erase blocks 0-4 of the image, a bad block, an erased block, the rest.
peb=131072
{
	# Boot area: the flash dump's bootloader, padded to four erase blocks.
	cat "$top/testdata/firmware/flashdump/boot.bin"
	perl -e "print \"\\xff\" x ($peb * 4 - $(wc -c <"$top/testdata/firmware/flashdump/boot.bin"))"
	head -c $((peb * 5)) "$tmp/nand.ubi"
	perl -e "print 'BADBLOCK', \"\\0\" x ($peb - 8)"
	perl -e "print \"\\xff\" x $peb"
	tail -c +$((peb * 5 + 1)) "$tmp/nand.ubi"
	perl -e "print \"\\xff\" x ($peb * 3)"
} | sh "$here/nand-oob.sh" 2048 64 | gzip -9n >"$here/ubi-nand.bin.gz"

#!/bin/sh
# recipe.sh — build the cramfs root of the XiongMai-style 16 MiB NOR flash
# dump with the real mkfs.cramfs (util-linux), as on hi3518/hi3516 XMEye
# cameras whose romfs partition is a raw cramfs. The dump reuses the
# bootloader, kernel and JFFS2 config partition of ../flashdump; layout.txt
# places the four parts, and assemble.sh (or the Go tests in
# firmware/formats/flash and cmd/cordon) writes them, 0xFF elsewhere.
#
#   romfs.cramfs       mkfs.cramfs -n romfs of the shared tree plus planted
#                      findings: a DES-crypt root hash of the XiongMai default
#                      password in etc/passwd, an EC private key PEM, the
#                      XMEye cloud hostname in the Sofia daemon and its config
#   romfs.files        sha256 of every file of that tree and the target of
#                      every symlink, from the source folder: what a correct
#                      extraction must give back byte for byte
#
# Deterministic: fixed content and mtimes (mkfs.cramfs stores none). Run
# from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SOURCE_DATE_EPOCH=1700000000 "$here/../tree.sh" "$tmp/root"
cd "$tmp/root"
# XiongMai keeps the root hash in /etc/passwd: crypt("xmhdipc", "ab").
printf 'root:abSMa52lhy1Wg:0:0::/root:/bin/sh\n' >etc/passwd
mkdir -p usr/etc/ssl mnt/custom
cat >usr/etc/ssl/device.key <<'KEY'
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDo6W37yiFHpk+PjU
dWarTgoOdJKGmSAwmHM5q5mzEnuhRANCAASatSX1bVup+4tfGPkMvvFxC8sGtqgI
mYnh7BlwTmK/ZypgT/jVvANC0dAc1gmNQU+7BqU26vkGd7EgDxW+XE2K
-----END PRIVATE KEY-----
KEY
chmod 0600 usr/etc/ssl/device.key
# The camera daemon: incompressible bytes around its cloud strings.
{
	printf '\177ELF\001\001\001\000\000\000\000\000\000\000\000\000'
	openssl enc -aes-128-ctr -K 58694f6e674d6169536f666961313233 -iv 0 -in /dev/zero 2>/dev/null | head -c 7001
	printf '\0pub-cfg.secu100.net\0access-dss.secu100.net:6611\0xmcloud.xmsecu.com:9355\0'
	openssl enc -aes-128-ctr -K 536f6669614c6f6f7031323334353637 -iv 0 -in /dev/zero 2>/dev/null | head -c 3333
} >usr/bin/Sofia
chmod 0755 usr/bin/Sofia
printf '[Cloud]\nServer=pub-cfg.secu100.net\nPort=8086\n' >mnt/custom/cloud.ini
find . -exec touch -h -d "@1700000000" {} +
mkfs.cramfs -n romfs "$tmp/root" "$here/romfs.cramfs" >/dev/null
{
	echo "# sha256 path (files) and path -> target (symlinks) of the romfs source tree"
	find . -type f | sort | while read -r f; do
		printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "${f#./}"
	done
	find . -type l | sort | while read -r f; do
		printf '%s -> %s\n' "${f#./}" "$(readlink "$f")"
	done
} >"$here/romfs.files"

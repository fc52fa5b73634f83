#!/bin/sh
# Builds ar fixtures with GNU ar (binutils) in deterministic mode (D): one
# with a long member name (GNU "//" table) and a symbol table from an object
# compiled by gcc, and a Debian-style package (debian-binary, control and data
# tarballs). Run from this directory: sh recipe.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'int ipcam_version(void) { return 3; }\n' > "$tmp/v.c"
gcc -Os -c -o "$tmp/version.o" "$tmp/v.c"
printf 'onvif discovery settings\n' > "$tmp/onvif-discovery-settings.conf"
printf 'short\n' > "$tmp/short.txt"
rm -f ar-lib.a ar-deb.deb
(cd "$tmp" && ar rcsD "$OLDPWD/ar-lib.a" version.o onvif-discovery-settings.conf short.txt)
mkdir -p "$tmp/data/usr/bin" "$tmp/ctl"
printf 'ipcam\n' > "$tmp/data/usr/bin/ipcam"
printf 'Package: ipcam\nVersion: 1.0\nArchitecture: armhf\n' > "$tmp/ctl/control"
t="tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner"
$t -C "$tmp/ctl" -czf "$tmp/control.tar.gz" ./control
$t -C "$tmp/data" -cf - . | xz -9 > "$tmp/data.tar.xz"
printf '2.0\n' > "$tmp/debian-binary"
(cd "$tmp" && ar rcD "$OLDPWD/ar-deb.deb" debian-binary control.tar.gz data.tar.xz)

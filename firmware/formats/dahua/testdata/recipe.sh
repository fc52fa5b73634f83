#!/bin/sh
# Builds a small Dahua-style firmware package following the documented layout
# (no Dahua tool is public): real partitions made by mksquashfs and wrapped by
# U-Boot's mkimage, an Install.lua script, zipped by Info-ZIP zip, then the
# first local header's "PK" patched to "DH" as Dahua's packager does.
# Run from this directory: sh recipe.sh
set -eu
export SOURCE_DATE_EPOCH=1700000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/romfs"
mkdir -p "$r/etc" "$r/bin" "$tmp/pkg"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
printf 'sonia stand-in\n' > "$r/bin/sonia"
chmod 755 "$r/bin/sonia"
mkdir -p "$tmp/web"
printf '<html>dahua</html>\n' > "$tmp/web/index.html"
find "$r" "$tmp/web" -exec touch -h -d @1700000000 {} +
mksquashfs "$r" "$tmp/romfs.sqfs" -all-root -noappend -comp xz -quiet >/dev/null
mksquashfs "$tmp/web" "$tmp/web.sqfs" -all-root -noappend -comp gzip -quiet >/dev/null
printf 'Linux kernel stand-in\n' > "$tmp/kernel.bin"
mkimage -A arm -O linux -T kernel -C none -a 0x80008000 -e 0x80008000 -n "kernel" -d "$tmp/kernel.bin" "$tmp/pkg/kernel.img" >/dev/null
mkimage -A arm -O linux -T filesystem -C none -a 0x00580000 -e 0x00f80000 -n "romfs" -d "$tmp/romfs.sqfs" "$tmp/pkg/romfs-x.squashfs.img" >/dev/null
mkimage -A arm -O linux -T filesystem -C none -a 0x00f80000 -e 0x01380000 -n "web" -d "$tmp/web.sqfs" "$tmp/pkg/web-x.squashfs.img" >/dev/null
cat > "$tmp/pkg/Install.lua" <<'LUA'
local Installer = {}
Installer.Files = { "kernel.img", "romfs-x.squashfs.img", "web-x.squashfs.img" }
return Installer
LUA
printf 'sign stand-in\n' > "$tmp/pkg/sign.img"
find "$tmp/pkg" -exec touch -h -d @1700000000 {} +
rm -f dahua.bin
(cd "$tmp/pkg" && TZ=UTC zip -q -X "$tmp/pkg.zip" Install.lua kernel.img romfs-x.squashfs.img web-x.squashfs.img sign.img)
cp "$tmp/pkg.zip" dahua.bin
printf 'DH' | dd of=dahua.bin bs=1 count=2 conv=notrunc status=none

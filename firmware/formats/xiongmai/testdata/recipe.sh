#!/bin/sh
# Builds a small XiongMai-style firmware package following the documented
# layout (no XiongMai tool is public): an InstallDesc JSON plus partitions made
# by mkfs.cramfs / mksquashfs and wrapped by U-Boot's mkimage, whose load and
# entry fields carry each partition's flash start and end; zipped by Info-ZIP zip.
# Run from this directory: sh recipe.sh
set -eu
export SOURCE_DATE_EPOCH=1700000000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/romfs/etc" "$tmp/romfs/bin" "$tmp/web" "$tmp/pkg"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tmp/romfs/etc/passwd"
printf 'Sofia stand-in\n' > "$tmp/romfs/bin/Sofia"
chmod 755 "$tmp/romfs/bin/Sofia"
printf '<html>xmeye</html>\n' > "$tmp/web/index.html"
find "$tmp/romfs" "$tmp/web" -exec touch -h -d @1700000000 {} +
if command -v mkfs.cramfs >/dev/null; then
	mkfs.cramfs -N little "$tmp/romfs" "$tmp/romfs.fs"
else
	mksquashfs "$tmp/romfs" "$tmp/romfs.fs" -all-root -noappend -comp xz -quiet >/dev/null
fi
mksquashfs "$tmp/web" "$tmp/web.fs" -all-root -noappend -comp xz -quiet >/dev/null
printf 'U-Boot stand-in\n' > "$tmp/u-boot.bin"
mkimage -A arm -O linux -T firmware -C none -a 0x00000000 -e 0x00040000 -n "u-boot" -d "$tmp/u-boot.bin" "$tmp/pkg/u-boot.bin.img" >/dev/null
mkimage -A arm -O linux -T kernel -C none -a 0x00040000 -e 0x00330000 -n "linux" -d "$tmp/u-boot.bin" "$tmp/pkg/uImage.img" >/dev/null
mkimage -A arm -O linux -T filesystem -C none -a 0x00330000 -e 0x00640000 -n "romfs" -d "$tmp/romfs.fs" "$tmp/pkg/romfs-x.cramfs.img" >/dev/null
mkimage -A arm -O linux -T filesystem -C none -a 0x00640000 -e 0x00800000 -n "web" -d "$tmp/web.fs" "$tmp/pkg/web-x.cramfs.img" >/dev/null
cat > "$tmp/pkg/InstallDesc" <<'JSON'
{
	"UpgradeCommand" : [
		{ "Command" : "Burn", "FileName" : "u-boot.bin.img" },
		{ "Command" : "Burn", "FileName" : "uImage.img" },
		{ "Command" : "Burn", "FileName" : "romfs-x.cramfs.img" },
		{ "Command" : "Burn", "FileName" : "web-x.cramfs.img" }
	],
	"Hardware" : "HI3518EV200_50H10L_S38",
	"DevID" : "000559110000000000000000",
	"CompatibleVersion" : 2,
	"Vendor" : "General",
	"CRC" : "1"
}
JSON
find "$tmp/pkg" -exec touch -h -d @1700000000 {} +
rm -f xiongmai.zip
(cd "$tmp/pkg" && TZ=UTC zip -q -X "$OLDPWD/xiongmai.zip" InstallDesc u-boot.bin.img uImage.img romfs-x.cramfs.img web-x.cramfs.img)

#!/bin/sh
# Builds 7z fixtures with p7zip (7z) from a small camera-like tree: LZMA2
# (solid, with a symlink kept as a link by -snl), LZMA, PPMd and BZip2, and
# one with a header encrypted by a password (-mhe=on), which is reported, not
# extracted. Run from this directory: sh recipe.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/root"
mkdir -p "$r/etc/init.d" "$r/bin" "$r/web"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
printf '#!/bin/sh\nmount -a\n' > "$r/etc/init.d/rcS"
printf 'busybox stand-in\n' > "$r/bin/busybox"
printf '<html>camera</html>\n' > "$r/web/index.html"
chmod 755 "$r/etc/init.d/rcS" "$r/bin/busybox"
ln -s busybox "$r/bin/sh"
find "$r" -exec touch -h -d @1700000000 {} +
rm -f 7z-*.7z
(cd "$r" && 7z a -bd -snl -m0=lzma2 -mx=5 "$OLDPWD/7z-lzma2.7z" bin etc web >/dev/null)
(cd "$r" && 7z a -bd -m0=lzma -ms=off "$OLDPWD/7z-lzma.7z" bin/busybox etc web >/dev/null)
(cd "$r" && 7z a -bd -m0=ppmd:mem=16m "$OLDPWD/7z-ppmd.7z" etc web >/dev/null)
(cd "$r" && 7z a -bd -m0=lzma2 -mhc=off "$OLDPWD/7z-plainheader.7z" etc >/dev/null)
(cd "$r" && 7z a -bd -m0=bzip2 "$OLDPWD/7z-bzip2.7z" etc >/dev/null)
(cd "$r" && 7z a -bd -mhe=on -padmin12345 "$OLDPWD/7z-encrypted.7z" etc >/dev/null)

#!/bin/sh
# Builds the cpio fixtures with GNU cpio, one per header format, from a small
# camera-like tree with a symlink, a hard link, a setuid binary, a fifo and
# device nodes (mknod needs root). cpio-traversal.cpio holds "../" and
# absolute names and an escaping symlink, which GNU cpio stores as given.
# Run from this directory as root: sh recipe.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/root"
mkdir -p "$r/etc/init.d" "$r/bin" "$r/dev" "$r/usr/sbin"
printf 'root:x:0:0:root:/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n' > "$r/etc/passwd"
printf '#!/bin/sh\nmount -a\n/usr/sbin/ipcam &\n' > "$r/etc/init.d/rcS"
printf 'busybox stand-in\n' > "$r/bin/busybox"
printf 'ipcam daemon stand-in\n' > "$r/usr/sbin/ipcam"
chmod 755 "$r/etc/init.d/rcS" "$r/bin/busybox" "$r/usr/sbin/ipcam"
chmod 4755 "$r/bin/busybox"
ln -s busybox "$r/bin/sh"
ln "$r/usr/sbin/ipcam" "$r/usr/sbin/ipcam-watchdog"
mknod "$r/dev/console" c 5 1
mknod "$r/dev/mtdblock0" b 31 0
mkfifo "$r/dev/initctl"
find "$r" -exec touch -h -d @1700000000 {} +
for fmt in newc crc odc bin; do
	(cd "$r" && find . | LC_ALL=C sort | cpio --quiet -o -H $fmt -R 0:0 --reproducible) > cpio-$fmt.cpio
done

# Hostile names: cpio -o stores the names it reads verbatim.
mkdir -p "$tmp/a/b" "$tmp/abs"
printf 'escaped\n' > "$tmp/a/evil"
printf 'absolute\n' > "$tmp/abs/evil"
ln -s /etc/shadow "$tmp/a/b/link"
find "$tmp/a" "$tmp/abs" -exec touch -h -d @1700000000 {} +
(cd "$tmp/a/b" && printf '../evil\nlink\n%s\n' "$tmp/abs/evil" | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$tmp/t.cpio"
# Replace the random temp prefix of the absolute name with a fixed one of the same length.
/usr/bin/python3 - "$tmp" "$tmp/t.cpio" cpio-traversal.cpio <<'PY'
import sys
tmp, src, dst = sys.argv[1].encode(), sys.argv[2], sys.argv[3]
data = open(src, 'rb').read()
fixed = (b'/tmp/' + b'x' * len(tmp))[:len(tmp)]
open(dst, 'wb').write(data.replace(tmp, fixed))
PY

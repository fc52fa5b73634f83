#!/bin/sh
# Builds the tar fixtures with GNU tar from a small camera-like tree, one per
# header format (ustar, gnu with a sparse file, pax with a long name), with a
# symlink, a hard link, a setuid binary, a fifo and device nodes (mknod needs
# root). tar-traversal.tar keeps "../" and absolute names and an escaping
# symlink (tar -P stores them as given). Run from this directory as root: sh recipe.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/root"
mkdir -p "$r/etc/init.d" "$r/bin" "$r/dev" "$r/usr/sbin" "$r/var"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
printf '#!/bin/sh\nmount -a\n' > "$r/etc/init.d/rcS"
printf 'busybox stand-in\n' > "$r/bin/busybox"
printf 'ipcam daemon stand-in\n' > "$r/usr/sbin/ipcam"
chmod 755 "$r/etc/init.d/rcS" "$r/usr/sbin/ipcam"
chmod 4755 "$r/bin/busybox"
ln -s busybox "$r/bin/sh"
ln "$r/usr/sbin/ipcam" "$r/usr/sbin/ipcam-watchdog"
mknod "$r/dev/console" c 5 1
mknod "$r/dev/mtdblock2" b 31 2
mkfifo "$r/dev/initctl"
t="tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner"
find "$r" -exec touch -h -d @1700000000 {} +
$t --format=ustar -C "$r" -cf tar-ustar.tar .
# A sparse file: 64 KiB with two small data islands.
printf 'head' | dd of="$r/var/sparse.img" bs=1 seek=0 conv=notrunc status=none
printf 'tail' | dd of="$r/var/sparse.img" bs=1 seek=65532 conv=notrunc status=none
long="$r/usr/share/a-rather-long-directory-name-for-a-camera-web-interface/with-nested-folders-that-exceed-one-hundred-bytes"
mkdir -p "$long"
printf 'long\n' > "$long/index.html"
find "$r" -exec touch -h -d @1700000000 {} +
$t --format=gnu --sparse -C "$r" -cf tar-gnu.tar .
$t --format=pax --pax-option=delete=atime,delete=ctime -C "$r" -cf tar-pax.tar .

mkdir -p "$tmp/a/b"
printf 'escaped\n' > "$tmp/a/evil"
ln -s /etc/shadow "$tmp/a/b/link"
find "$tmp/a" -exec touch -h -d @1700000000 {} +
(cd "$tmp/a/b" && $t --format=gnu -P -cf "$OLDPWD/tar-traversal.tar" ../evil link /dev/null)

# Writes through symlinks: a directory symlink to /tmp and one up the tree,
# then files "through" them, and a hard link to an absolute path. GNU tar will
# not write such an archive on purpose, so Python's tarfile does.
/usr/bin/python3 - <<'PY'
import io, tarfile
def add(t, name, typ=tarfile.REGTYPE, data=b'', link=''):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime, ti.mode = typ, link, 1700000000, 0o644
    ti.size = len(data) if typ == tarfile.REGTYPE else 0
    t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
with tarfile.open('tar-symlink-escape.tar', 'w', format=tarfile.GNU_FORMAT) as t:
    add(t, 'tmpdir', tarfile.SYMTYPE, link='/tmp')
    add(t, 'tmpdir/cordon-escape-check', data=b'written through a symlink\n')
    add(t, 'up', tarfile.SYMTYPE, link='../../../../../../../tmp')
    add(t, 'up/cordon-escape-check-2', data=b'written through a relative symlink\n')
    add(t, 'passwd', tarfile.LNKTYPE, link='/etc/passwd')
    add(t, 'ok.txt', data=b'fine\n')
PY

# A decompression-bomb-like sparse file: 1 TiB of holes in a 10 KiB archive.
# Named so the golden-manifest harness does not pick it up; tar_test checks
# that extraction stops at the Sink's byte limit.
truncate -s 1T "$tmp/huge.img"
printf 'x' | dd of="$tmp/huge.img" bs=1 seek=1099511627775 conv=notrunc status=none
touch -d @1700000000 "$tmp/huge.img"
$t --format=gnu --sparse -C "$tmp" -cf bomb-sparse.tar huge.img

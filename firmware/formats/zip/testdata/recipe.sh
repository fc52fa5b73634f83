#!/bin/sh
# Builds the zip fixtures with Info-ZIP zip from a small camera-like tree
# (deflate and bzip2, symlinks stored as links with -y, a setuid binary).
# zip-traversal.zip is written by Python's zipfile, because Info-ZIP refuses
# to store "../" and absolute names; it also holds a symlink to /etc/shadow.
# Run from this directory: sh recipe.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/root"
mkdir -p "$r/etc/init.d" "$r/bin" "$r/web/cgi-bin"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
printf '#!/bin/sh\nmount -a\n/bin/ipcam &\n' > "$r/etc/init.d/rcS"
printf 'busybox stand-in\n' > "$r/bin/busybox"
printf '<html>camera</html>\n' > "$r/web/index.html"
printf '#!/bin/sh\necho ok\n' > "$r/web/cgi-bin/login.cgi"
chmod 755 "$r/etc/init.d/rcS" "$r/web/cgi-bin/login.cgi"
chmod 4755 "$r/bin/busybox"
ln -s busybox "$r/bin/sh"
find "$r" -exec touch -h -d @1700000000 {} +
rm -f zip-stream.zip zip-zip64.zip zip-deflate.zip zip-bzip2.zip zip-traversal.zip
(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | TZ=UTC zip -q -X -y -@ "$OLDPWD/zip-deflate.zip")
(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | TZ=UTC zip -q -X -y -fz -@ "$OLDPWD/zip-zip64.zip")
(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | TZ=UTC zip -q -X -y -Z bzip2 -@ "$OLDPWD/zip-bzip2.zip")
# Written to a pipe: sizes only in data descriptors after the data, so the
# extent is found by scanning for the end record (zipfile streams when it
# cannot seek; Info-ZIP seeks back whenever stdout is a file).
/usr/bin/python3 - <<'PY' | cat > zip-stream.zip
import sys, zipfile
with zipfile.ZipFile(sys.stdout.buffer, 'w', zipfile.ZIP_DEFLATED) as z:
    zi = zipfile.ZipInfo('-', date_time=(2023, 11, 14, 22, 13, 20))
    zi.compress_type = zipfile.ZIP_DEFLATED
    with z.open(zi, 'w') as f:
        f.write(b'streamed camera log line\n' * 50)
PY

/usr/bin/python3 - <<'PY'
import zipfile, stat
def info(name, mode):
    zi = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
    zi.external_attr = mode << 16
    zi.create_system = 3
    return zi
with zipfile.ZipFile('zip-traversal.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr(info('../../evil.sh', stat.S_IFREG | 0o755), '#!/bin/sh\necho escaped\n')
    z.writestr(info('/etc/cron.d/evil', stat.S_IFREG | 0o644), '* * * * * root /tmp/x\n')
    z.writestr(info('shadow', stat.S_IFLNK | 0o777), '/etc/shadow')
    z.writestr(info('ok.txt', stat.S_IFREG | 0o644), 'fine\n')
    # Writes through symlinks: a directory link to /tmp, then a file under it.
    z.writestr(info('tmpdir', stat.S_IFLNK | 0o777), '/tmp')
    z.writestr(info('tmpdir/cordon-escape-check', stat.S_IFREG | 0o644), 'written through a symlink\n')
    z.writestr(info('up', stat.S_IFLNK | 0o777), '../../../../../../../tmp')
    z.writestr(info('up/cordon-escape-check-2', stat.S_IFREG | 0o644), 'written through a relative symlink\n')
PY

#!/bin/sh
# tree.sh DIR — build the shared camera-like root tree that the firmware
# fixture recipes pack with the real tools (mksquashfs, mke2fs, mkfs.jffs2, ...).
#
# The tree is deterministic: fixed content, fixed modes, every mtime set to
# SOURCE_DATE_EPOCH (default 1700000000). It holds a busybox-like layout, a
# symlink, a hard-linkable binary, a setuid file and a small config partition.
# Device nodes cannot be made without root, so recipes add /dev/console
# (char 5:1) with their tool's own mechanism: mksquashfs -p pseudo
# definitions, `debugfs -w -R mknod` for ext2/3/4, mkfs.jffs2 -D device tables.
set -eu
dir=${1:?usage: tree.sh DIR}
: "${SOURCE_DATE_EPOCH:=1700000000}"
umask 022
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin etc/init.d usr/bin usr/share/www lib dev tmp var/run
# A fake busybox: code-like bytes with a version string, big enough to span
# several 4 KiB blocks so block lists and fragments are exercised.
{
	printf '\177ELF\001\001\001\000\000\000\000\000\000\000\000\000'
	printf 'BusyBox v1.31.1 (2023-11-14 22:13:20 UTC) multi-call binary.\n'
	i=0
	while [ $i -lt 600 ]; do
		printf 'applet_%04d: mov r0, #%d; bl main_%d; ldr pc, [sp], #4\n' $i $i $i
		i=$((i + 1))
	done
} >bin/busybox
chmod 0755 bin/busybox
for a in sh ls cat mount; do ln -s busybox "bin/$a"; done
ln -s ../bin/busybox sbin/init
printf 'root:x:0:0:root:/root:/bin/sh\nadmin:x:1000:1000:admin:/home/admin:/bin/sh\n' >etc/passwd
printf 'root:$1$abcdefgh$Q4D6vqzMdJpH6qbyqvwQ61:19000:0:99999:7:::\nadmin:$1$ijklmnop$3uZ5mX2.2eS4xG8CShw0E/:19000:0:99999:7:::\n' >etc/shadow
chmod 0600 etc/shadow
ln etc/passwd etc/passwd-
printf 'root:x:0:\nadmin:x:1000:\n' >etc/group
cat >etc/init.d/rcS <<'RCS'
#!/bin/sh
mount -t proc proc /proc
mount -t tmpfs tmpfs /tmp
/usr/bin/ipcam --config /etc/ipcam.conf &
telnetd -l /bin/sh
RCS
chmod 0755 etc/init.d/rcS
printf 'rtsp_port=554\nonvif=1\nuser=admin\npassword=12345\n' >etc/ipcam.conf
# The camera daemon: pseudo-random (incompressible) bytes, over one block.
awk 'BEGIN { s = 12345; for (i = 0; i < 9000; i++) { s = (s * 1103515245 + 12345) % 2147483648; printf "%c", 32 + (s % 90) } }' >usr/bin/ipcam
chmod 0755 usr/bin/ipcam
# A setuid helper.
printf '#!/bin/sh\necho upgrade helper\n' >usr/bin/upgrade
chmod 4755 usr/bin/upgrade
printf '<html><body>IP Camera</body></html>\n' >usr/share/www/index.html
: >var/run/.keep
: >etc/empty.conf
printf 'libc stub\n' >lib/libc.so.0
find . -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

#!/bin/sh
# Builds the inspect fixtures with the real tools (gcc, openssl, perl's crypt).
#   fw/     a camera-like tree with planted findings (see inspect_test.go for the list)
#   clean/  the same layout done right: it must yield no high or critical finding
# Run: sh recipe.sh [OUTDIR]   (OUTDIR defaults to this directory; keys and salts
# are random on each run: the tests check the findings, not the bytes, and
# TestRecipe rebuilds the fixtures into a temporary folder to prove it).
set -eu
cd "${1:-$(dirname "$0")}"
rm -rf fw clean
mkdir -p fw/etc/init.d fw/etc/ssl/private fw/etc/ssl/certs fw/etc/config fw/usr/bin fw/bin \
	fw/lib/modules/4.9.37/kernel fw/mnt/mtd/Config
mkdir -p clean/etc/init.d clean/etc/ssl/certs clean/etc/config clean/usr/bin clean/bin

# --- accounts: hashes made by the tools, with passwords from the vendor-default list
cat > fw/etc/passwd <<P
root:x:0:0:root:/root:/bin/sh
admin:x:0:0:admin:/:/bin/sh
guest:x:1000:1000:guest:/home/guest:/bin/sh
user:x:1001:1001::/home/user:/bin/sh
support:x:1002:1002::/home/support:/bin/sh
daemon:x:2:2:daemon:/:/sbin/nologin
P
{
	echo "root:$(openssl passwd -1 xmhdipc):19000:0:99999:7:::"
	echo "admin:$(openssl passwd -6 admin):19000:0:99999:7:::"
	echo "guest::19000:0:99999:7:::"
	echo "user:$(perl -e 'print crypt("123456", "xy")'):19000:0:99999:7:::"
	echo "support:$(openssl passwd -5 support):19000:0:99999:7:::"
	echo "daemon:*:19000:0:99999:7:::"
} > fw/etc/shadow
# a vendor copy of passwd with the hash inline (DES of a Mirai default)
echo "root:$(perl -e 'print crypt("vizxv", "ab")'):0:0:root:/:/bin/sh" > fw/mnt/mtd/Config/passwd
# Hikvision's historic root password, only in the vendor block of passwords.txt
echo "root:$(openssl passwd -1 hiklinux):19000:0:99999:7:::" > fw/mnt/mtd/Config/shadow

cat > clean/etc/passwd <<P
root:x:0:0:root:/root:/bin/sh
daemon:x:2:2:daemon:/:/sbin/nologin
P
{
	echo "root:$(openssl passwd -6 "$(openssl rand -base64 24)"):19000:0:99999:7:::"
	echo "daemon:*:19000:0:99999:7:::"
} > clean/etc/shadow

# --- services
cat > fw/etc/inittab <<'I'
::sysinit:/etc/init.d/rcS
::respawn:/usr/sbin/telnetd -F -l /bin/sh
ttyS0::askfirst:-/bin/sh
::ctrlaltdel:/sbin/reboot
I
cat > fw/etc/init.d/rcS <<'R'
#!/bin/sh
mount -a
# start the remote services
/usr/sbin/telnetd -p 2323 &
dropbear -p 0.0.0.0:22 -r /etc/dropbear/dropbear_rsa_host_key
tcpsvd -vE 0.0.0.0 21 ftpd -w / &
/usr/sbin/upnpd &
if [ -f /mnt/mtd/debug ]; then nc -l -p 4444 -e /bin/sh & fi
/usr/bin/cloudd &
R
cat > clean/etc/inittab <<'I'
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L ttyS0 115200 vt100
I
cat > clean/etc/init.d/rcS <<'R'
#!/bin/sh
mount -a
echo "telnetd is not started on this build"
dropbear -p 22 -s
/usr/bin/app &
R

# --- secrets: a 1024-bit RSA key, a self-signed certificate, cloud keys, passwords in config
openssl genrsa -traditional -out fw/etc/ssl/private/server.key 1024 2>/dev/null
openssl req -x509 -new -key fw/etc/ssl/private/server.key -subj "/CN=ipcam.local/O=Camera Vendor" \
	-days 3650 -out fw/etc/ssl/certs/server.crt 2>/dev/null
# the same in DER, as vendors ship them for their cloud client
openssl ecparam -name prime256v1 -genkey -noout -outform DER -out fw/etc/ssl/private/cloud-key.der
openssl x509 -in fw/etc/ssl/certs/server.crt -outform DER -out fw/etc/ssl/certs/server.der
cat > fw/etc/config/cloud.conf <<'C'
[cloud]
server=https://litedev.hik-connect.com
aws_access_key_id=AKIA2E0A8F3B244C9986
aws_secret_access_key=Zk3vQ9rT2mLx8BwN4pYc7HsJ1dFg6KuE0aViWo5R
[ftp]
ftp_user=camera
ftp_password=Cam3raPass!
[relay]
stream=rtsp://admin:12345@192.168.1.10:554/h264
C
cat > clean/etc/config/cloud.conf <<'C'
[ftp]
ftp_user=camera
# ftp_password=
ftp_password=${FTP_PASSWORD}
C

# --- binaries: an unhardened daemon with vendor-cloud endpoints, hardened ones
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/cloudd.c" <<'S'
#include <stdio.h>
#include <string.h>
static const char *endpoints[] = {
	"https://litedev.hik-connect.com/api/device/register",
	"pub-cfg.secu100.net",
	"http://iotaccess.easy4ipcloud.com:10001/",
	"114.114.114.114",
	"203.0.113.9",
	"http://www.w3.org/2001/XMLSchema",
	"OpenSSL 1.0.2k  26 Jan 2017",
	0,
};
int main(int argc, char **argv) {
	char buf[64];
	for (int i = 0; endpoints[i]; i++) puts(endpoints[i]);
	if (argc > 1) strcpy(buf, argv[1]);
	return buf[0];
}
S
cat > "$tmp/busybox.c" <<'S'
#include <stdio.h>
int main(void) { puts("BusyBox v1.24.1 (2019-03-04 10:00:00 CST) multi-call binary."); return 0; }
S
cat > "$tmp/app.c" <<'S'
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
	char buf[64];
	puts("http://www.w3.org/2001/XMLSchema https://update.example.com/fw version 1.2.3.4");
	if (argc > 1) { strncpy(buf, argv[1], sizeof buf - 1); buf[sizeof buf - 1] = 0; printf("%d %s\n", argc, buf); }
	return 0;
}
S
CFLAGS_WEAK="-O0 -no-pie -fno-pie -z execstack -fno-stack-protector -z norelro"
CFLAGS_HARD="-O2 -fPIE -pie -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wl,-z,relro,-z,now"
gcc $CFLAGS_WEAK -o fw/usr/bin/cloudd "$tmp/cloudd.c"
gcc $CFLAGS_HARD -o fw/bin/busybox "$tmp/busybox.c"
gcc $CFLAGS_HARD -o clean/usr/bin/app "$tmp/app.c"
gcc $CFLAGS_HARD -o clean/bin/busybox "$tmp/busybox.c"
strip fw/usr/bin/cloudd fw/bin/busybox clean/usr/bin/app clean/bin/busybox
# a kernel module: an ELF relocatable object whose .modinfo says vermagic=,
# as modpost writes it (the module directory below names another version on
# purpose: the vermagic is what the kernel checks)
cat > "$tmp/mod.c" <<'S'
__attribute__((section(".modinfo"), used, aligned(1))) static const char vermagic[] =
	"vermagic=4.9.37 SMP preempt mod_unload ARMv7 p2v8 ";
__attribute__((section(".modinfo"), used, aligned(1))) static const char license[] = "license=GPL";
int init_module(void) { return 0; }
S
gcc -c -O2 -o fw/lib/modules/4.9.37/kernel/cam_sensor.ko "$tmp/mod.c"

# --- package databases: opkg status and a .control file, a Buildroot
# legal-info manifest and .config, busybox applet links
mkdir -p fw/usr/lib/opkg/info fw/usr/share/legal-info fw/etc/buildroot fw/sbin
cat > fw/usr/lib/opkg/status <<'O'
Package: dropbear
Version: 2019.78-2
Depends: libc
Status: install user installed
Architecture: arm_cortex-a7

Package: libopenssl1.1
Version: 1.1.1k-1
Status: install user installed
Architecture: arm_cortex-a7

Package: oldpkg
Version: 0.1
Status: deinstall ok not-installed
O
cat > fw/usr/lib/opkg/info/uhttpd.control <<'O'
Package: uhttpd
Version: 2021-03-21-15346de8-2
Architecture: arm_cortex-a7
O
cat > fw/usr/share/legal-info/manifest.csv <<'M'
"PACKAGE","VERSION","LICENSE","LICENSE FILES","SOURCE ARCHIVE","SOURCE SITE","DEPENDENCIES WITH LICENSES"
"busybox","1.24.1","GPL-2.0","LICENSE","busybox-1.24.1.tar.bz2","http://www.busybox.net/downloads",""
"live555","2018.08.28","LGPL-2.1+","COPYING","live.2018.08.28.tar.gz","http://www.live555.com/liveMedia/public",""
"openssl","1.0.2k","OpenSSL or SSLeay","LICENSE","openssl-1.0.2k.tar.gz","http://www.openssl.org/source",""
M
cat > fw/etc/buildroot/.config <<'B'
#
# Automatically generated file; DO NOT EDIT.
# Buildroot 2019.02.4 Configuration
#
BR2_HAVE_DOT_CONFIG=y
BR2_arm=y
BR2_LINUX_KERNEL=y
BR2_LINUX_KERNEL_CUSTOM_VERSION=y
BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE="4.9.37"
BR2_PACKAGE_BUSYBOX=y
B
for a in telnetd httpd ftpd sh ls; do ln -s ../bin/busybox fw/sbin/$a; done

# --- the unpack manifest the firmware engine writes (setuid and world-writable
# bits are kept there, never on disk)
cat > fw/report.json <<'J'
{"image": {"path": "fw.img"}, "chunks": [], "manifest": [
 {"path": "bin/busybox", "orig_name": "bin/busybox", "type": "file", "mode": "4755", "uid": 0, "gid": 0, "size": 0},
 {"path": "etc/config/cloud.conf", "orig_name": "etc/config/cloud.conf", "type": "file", "mode": "0666", "uid": 0, "gid": 0, "size": 0},
 {"path": "", "orig_name": "dev/console", "type": "chardev", "mode": "0600", "uid": 0, "gid": 0, "size": 0, "dev_major": 5, "dev_minor": 1, "note": "device node not created"}
]}
J
chmod 0644 fw/etc/shadow clean/etc/shadow

package inspect

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cordon-vms/cordon/internal/watchlist"
)

var accountCases = []struct {
	in         string
	passwd     int
	shadow     int
	firstUser  string
	firstField string
}{
	{"root:x:0:0:root:/root:/bin/sh\nbin:*:1:1::/:/bin/false\n", 2, 0, "root", "x"},
	{"root:$1$ab$xyz:19000:0:99999:7:::\n", 0, 1, "root", "$1$ab$xyz"},
	{"root::19000::::::\n", 0, 1, "root", ""},
	{"admin:abOV.DfJmdnYw:0:0::/:/bin/sh\r\n", 1, 0, "admin", "abOV.DfJmdnYw"},
	{"# comment\n+@netgroup::::::\n\nbad line\nroot:x:notanumber:0::/:/bin/sh\n", 0, 0, "", ""},
	{"we ird:x:0:0::/:/bin/sh\n", 0, 0, "", ""},
	{"guest:!:19000\n", 0, 1, "guest", "!"},
}

func TestParseAccounts(t *testing.T) {
	for _, tc := range accountCases {
		pw, sh := parseAccounts([]byte(tc.in))
		if len(pw) != tc.passwd || len(sh) != tc.shadow {
			t.Errorf("parseAccounts(%q) = %d passwd, %d shadow; want %d, %d", tc.in, len(pw), len(sh), tc.passwd, tc.shadow)
			continue
		}
		switch {
		case len(pw) > 0 && (pw[0].user != tc.firstUser || pw[0].pw != tc.firstField):
			t.Errorf("parseAccounts(%q) first = %+v", tc.in, pw[0])
		case len(pw) == 0 && len(sh) > 0 && (sh[0].user != tc.firstUser || sh[0].pw != tc.firstField):
			t.Errorf("parseAccounts(%q) first = %+v", tc.in, sh[0])
		}
	}
}

func FuzzParseAccounts(f *testing.F) {
	for _, tc := range accountCases {
		f.Add([]byte(tc.in))
	}
	for _, p := range []string{"testdata/fw/etc/shadow", "testdata/fw/etc/passwd", "testdata/fw/mnt/mtd/Config/passwd"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pw, sh := parseAccounts(data)
		for _, e := range pw {
			if e.uid < 0 || !validUser(e.user) {
				t.Fatalf("bad passwd entry %+v", e)
			}
		}
		for _, e := range sh {
			if !validUser(e.user) || strings.Contains(e.pw, ":") {
				t.Fatalf("bad shadow entry %+v", e)
			}
			classifyHash(e.pw)
		}
	})
}

var serviceCases = []struct {
	via, in string
	want    string // name:port:boot:shell of each service, space separated
}{
	{"rc", "/usr/sbin/telnetd -p 2323 &", "telnetd:2323:true:false"},
	{"rc", "telnetd -l /bin/sh", "telnetd:23:true:true"},
	{"rc", "echo telnetd disabled", ""},
	{"rc", "# telnetd", ""},
	{"rc", "busybox telnetd -p 24 -l /bin/login", "telnetd:24:true:false"},
	{"rc", "if [ -e /x ]; then nc -l -p 4444 -e /bin/sh & fi", "netcat:4444:true:true"},
	{"rc", "nc 10.0.0.1 80 < /tmp/x", ""},
	{"rc", "nc -lk 9000", "netcat:9000:true:false"},
	{"rc", "dropbear -p 0.0.0.0:2222 -r key", "dropbear:2222:true:false"},
	{"rc", "tcpsvd -vE 0.0.0.0 21 ftpd -w /", "ftpd:21:true:false"},
	{"rc", "udpsvd -vE 0.0.0.0 69 tftpd /tmp", "tftpd:69:true:false"},
	{"rc", "start-stop-daemon -S -x /usr/sbin/vsftpd -- /etc/vsftpd.conf", "ftpd:21:true:false"},
	{"rc", "/usr/sbin/miniupnpd -f /etc/miniupnpd.conf && /sbin/sshd", "upnpd:1900:true:false sshd:22:true:false"},
	{"inittab", "::respawn:/usr/sbin/telnetd -F\nttyS0::askfirst:-/bin/sh\n::ctrlaltdel:/usr/sbin/telnetd\n",
		"telnetd:23:true:false shell:0:true:true telnetd:23:false:false"},
	{"inittab", "::sysinit:/etc/init.d/rcS\nttyS0::respawn:/sbin/getty -L ttyS0 115200\n", ""},
	{"inetd", "telnet stream tcp nowait root /usr/sbin/telnetd telnetd\nftp stream tcp nowait root /usr/sbin/tcpd in.ftpd\n",
		"telnetd:23:true:false ftpd:21:true:false"},
	{"systemd", "[Service]\nExecStart=/usr/sbin/sshd -D -p 2200\n[Install]\nWantedBy=multi-user.target\n", "sshd:2200:true:false"},
	{"systemd", "[Service]\nExecStart=-/usr/sbin/telnetd -F\n", "telnetd:23:false:false"},
	{"cron", "*/5 * * * * root nc -l -p 31337 -e /bin/sh\nSHELL=/bin/sh\n", "netcat:31337:false:true"},
	{"cron", "@reboot /usr/sbin/telnetd -p 9999\n", "telnetd:9999:true:false"},
}

func TestParseServices(t *testing.T) {
	for _, tc := range serviceCases {
		var got []string
		for _, s := range parseServices(tc.via, []byte(tc.in)) {
			got = append(got, strings.Join([]string{s.Name, strconv.Itoa(s.Port), btoa(s.Boot), btoa(s.Shell)}, ":"))
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("parseServices(%s, %q) = %q; want %q", tc.via, tc.in, g, tc.want)
		}
	}
}

func btoa(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func FuzzParseServices(f *testing.F) {
	for _, tc := range serviceCases {
		f.Add(tc.via, []byte(tc.in))
	}
	for _, p := range []string{"testdata/fw/etc/inittab", "testdata/fw/etc/init.d/rcS"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(map[bool]string{true: "inittab", false: "rc"}[strings.HasSuffix(p, "inittab")], b)
		}
	}
	f.Fuzz(func(t *testing.T, via string, data []byte) {
		for _, s := range parseServices(via, data) {
			if s.Line < 1 || s.Name == "" {
				t.Fatalf("bad service %+v", s)
			}
		}
	})
}

var endpointCases = []struct {
	in   string
	want string // value/scope/vendor, space separated, sorted
}{
	{"connect https://litedev.hik-connect.com/api now", "https://litedev.hik-connect.com/api/vendor-cloud/Hikvision"},
	{"pub-cfg.secu100.net", "pub-cfg.secu100.net/vendor-cloud/XiongMai"},
	{"dns 114.114.114.114 and 8.8.8.8", "114.114.114.114/vendor-cloud/XiongMai 8.8.8.8/public/"},
	{"gw 192.168.1.1", "192.168.1.1/private/"},
	{"Linux version 2.6.36.4 and 1.2.3.4", ""},
	{"http://www.w3.org/2001/XMLSchema-instance", ""},
	{"see http://example.com/x and www.onvif.org/ver10/schema", ""},
	{"libfoo.so.1 main.c config.ini readme.md", ""},
	{"org.freedesktop.DBus com.vendor.app com.xyz", ""},
	{"0www.entrust.net", ""},
	{"privdrop.group.id privdrop.user.name value.int", ""},
	{"X25519 1.3.101.110 CN 2.5.4.3", ""},
	{"update.mycamcloud.com:8443", "update.mycamcloud.com/public/"},
	{"rtsp://admin:admin@10.0.0.2:554/stream", "rtsp://admin:admin@10.0.0.2:554/stream/private/"},
	{"ip=45.33.2.1;", "45.33.2.1/public/"},
	{"user@mail.vendor.com", ""},
	// Bare names need a real ICANN top-level domain, a host's label
	// structure and to stand alone (see hostShape).
	{"s.ch", ""},
	{"%qtx.ke(", ""},
	{"x9Kz.Com", ""},
	{"server=cloud.tuya.de;", "cloud.tuya.de/public/"},
	{"ntp qq.com", "qq.com/public/"},
	{"host vendorcloud.de", "vendorcloud.de/public/"},
	{"host ab.de", ""},
	{"file.zzz foo.notatld", ""},
	{"99-default.link run.sh main.py", ""},
	{"\"P2P.XMEYE.NET\"", "p2p.xmeye.net/vendor-cloud/XiongMai"},
	{"http://host.notatld/x", ""},
}

func TestEndpoints(t *testing.T) {
	c := newCollector(&Options{Watchlist: watchlist.Default()})
	for _, tc := range endpointCases {
		sc := newStringChecks(c, "x")
		sc.check([]byte(tc.in))
		var got []string
		for _, e := range sc.endpoints {
			got = append(got, e.Value+"/"+e.Scope+"/"+e.Vendor)
		}
		sort.Strings(got)
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("endpoints in %q = %q; want %q", tc.in, g, tc.want)
		}
	}
}

func TestURLCredential(t *testing.T) {
	c := newCollector(&Options{Watchlist: watchlist.Default()})
	sc := newStringChecks(c, "x")
	sc.check([]byte("rtsp://admin:12345@192.168.1.10:554/h264 ftp://anonymous@files.vendor.com/ http://u:${PASS}@a.com/"))
	if len(sc.findings) != 1 || sc.findings[0].Rule != RuleURLCredential || sc.findings[0].Evidence != "rtsp://admin:12345@192.168.1.10:554" {
		t.Errorf("findings = %+v", sc.findings)
	}
}

func TestExtractStrings(t *testing.T) {
	in := []byte("\x00\x01hello world\x00ab\x7fsecond string\tx\xffend")
	var got []string
	if err := extractStrings(bytes.NewReader(in), 4, func(s []byte) { got = append(got, string(s)) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"hello world", "second string\tx"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("extractStrings = %q; want %q", got, want)
	}
	long := bytes.Repeat([]byte("a"), 3*maxStringLen+5)
	n := 0
	extractStrings(bytes.NewReader(long), 4, func(s []byte) {
		if len(s) > maxStringLen {
			t.Fatalf("string of %d bytes", len(s))
		}
		n += len(s)
	})
	if n != len(long) {
		t.Errorf("long run: got %d bytes of %d", n, len(long))
	}
}

// referenceStrings is the obvious byte-at-a-time strings(1).
func referenceStrings(data []byte, minLen int) []string {
	var out []string
	var cur []byte
	for _, b := range data {
		if b >= 0x20 && b < 0x7f || b == '\t' {
			cur = append(cur, b)
			if len(cur) == maxStringLen {
				out, cur = append(out, string(cur)), nil
			}
			continue
		}
		if len(cur) >= minLen {
			out = append(out, string(cur))
		}
		cur = nil
	}
	if len(cur) >= minLen {
		out = append(out, string(cur))
	}
	return out
}

// FuzzStrings fuzzes the string extraction and every string check
// (endpoints, components, credentials) on arbitrary bytes.
func FuzzStrings(f *testing.F) {
	for _, tc := range endpointCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("BusyBox v1.24.1 (2019) multi-call\x00OpenSSL 1.0.2k  26 Jan 2017\x00AKIA2E0A8F3B244C9986"))
	if b, err := os.ReadFile("testdata/fw/usr/bin/cloudd"); err == nil {
		f.Add(b)
	}
	c := newCollector(&Options{Watchlist: watchlist.Default()})
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []string
		extractStrings(iotest.OneByteReader(bytes.NewReader(data)), minStringLen, func(s []byte) { got = append(got, string(s)) })
		if want := referenceStrings(data, minStringLen); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("extractStrings = %q; want %q", got, want)
		}
		sc := newStringChecks(c, "x")
		if err := extractStrings(bytes.NewReader(data), minStringLen, sc.check); err != nil {
			t.Fatal(err)
		}
		for _, e := range sc.endpoints {
			if e.Kind != "url" && e.Kind != "domain" && e.Kind != "ip" || e.Value == "" {
				t.Fatalf("bad endpoint %+v", e)
			}
		}
		for _, comp := range sc.components {
			if comp.Version == "" || !strings.HasPrefix(comp.PURL, "pkg:generic/") {
				t.Fatalf("bad component %+v", comp)
			}
		}
	})
}

// FuzzFileParsers runs the whole-file parsers (PEM framing and OpenSSH key
// headers, ELF hardening, config passwords) on arbitrary content. Real RSA
// keys are left out of the seeds: with fuzzing instrumentation the bignum
// checks of crypto/x509 take seconds per input, and they are the standard
// library's to fuzz.
func FuzzFileParsers(f *testing.F) {
	f.Add("id_ed25519", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQ==\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add("k.pem", []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	for _, p := range []string{"testdata/fw/etc/ssl/private/cloud-key.der", "testdata/fw/usr/bin/cloudd", "testdata/fw/bin/busybox", "testdata/fw/etc/config/cloud.conf", "testdata/fw/report.json"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(filepath.Base(p), b)
		}
	}
	// The package databases, by the names checkPackageDB recognises.
	for name, p := range map[string]string{
		"opkg/status":              "testdata/fw/usr/lib/opkg/status",
		"opkg/info/uhttpd.control": "testdata/fw/usr/lib/opkg/info/uhttpd.control",
		"legal-info/manifest.csv":  "testdata/fw/usr/share/legal-info/manifest.csv",
		"buildroot/.config":        "testdata/fw/etc/buildroot/.config",
		"cam_sensor.ko":            "testdata/fw/lib/modules/4.9.37/kernel/cam_sensor.ko",
	} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(name, b)
		}
	}
	f.Add("dpkg/status", []byte("Package: a\nVersion: 1\nStatus: install ok installed\n\nPackage: b\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		c := newCollector(&Options{Watchlist: watchlist.Default()})
		c.o.setDefaults()
		c.parseFile(&fileView{path: "etc/" + name, data: data, size: int64(len(data))})
		for _, comp := range c.components {
			if comp.Name == "" || comp.FoundBy == "" || confidenceRank[comp.Confidence] == 0 && comp.Confidence != ConfidenceLow {
				t.Fatalf("bad component %+v", comp)
			}
		}
	})
}

// TestAWSKeyPair: an access key ID with a 40-character secret beside it (or
// in a string naming a secret) is one "AWS key pair" finding; alone, or
// beside a SHA-1 in hex, it stays an access key ID.
func TestAWSKeyPair(t *testing.T) {
	for _, tc := range []struct {
		strs []string
		want string
	}{
		{[]string{"id=AKIA2E0A8F3B244C9986", "Zk3vQ9rT2mLx8BwN4pYc7HsJ1dFg6KuE0aViWo5R"}, "AWS key pair: access key ID AKIA2E0A…9986 with secret access key Zk3vQ9rT…Wo5R"},
		{[]string{"SecretAccessKey: Zk3vQ9rT2mLx8BwN4pYc7HsJ1dFg6KuE0aViWo5R", "a", "b", "c", "d", "e", "AKIA2E0A8F3B244C9986"}, "AWS key pair"},
		{[]string{"AKIA2E0A8F3B244C9986", "a", "b", "c", "d", "e", "Zk3vQ9rT2mLx8BwN4pYc7HsJ1dFg6KuE0aViWo5R"}, "AWS access key ID AKIA2E0A…9986"},
		{[]string{"AKIA2E0A8F3B244C9986 da39a3ee5e6b4b0d3255bfef95601890afd80709"}, "AWS access key ID AKIA2E0A…9986"},
	} {
		c := newCollector(&Options{Watchlist: watchlist.Default()})
		sc := newStringChecks(c, "x")
		for _, s := range tc.strs {
			sc.check([]byte(s))
		}
		sc.flush()
		if len(c.findings) != 1 || !strings.HasPrefix(c.findings[0].Evidence, tc.want) {
			t.Errorf("%q: findings %+v, want %q", tc.strs, c.findings, tc.want)
		}
	}
}

package proxy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/internal/config"
)

const goodConfig = `
listen:
  rtsp: ":8554"
  admin: "127.0.0.1:9554"
camera_side:
  bind: 192.168.50.2
cameras:
  - name: lobby
    url: rtsp://user:pass@192.168.50.11:554/Streaming/Channels/101
    transport: tcp
    on_demand: false
    max_readers: 4
    mode: rebuild
    keep_sei: [recovery_point]
    audio: drop
readers:
  - user: nvr1
    password: "pw"
    cameras: ["*"]
    networks: ["10.0.0.0/24", "10.0.1.7"]
timeouts:
  camera: 5s
`

func TestConfigGood(t *testing.T) {
	var c Config
	if err := config.Decode("c.yml", []byte(goodConfig), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Cameras[0].URL.String() != "rtsp://user:xxxxx@192.168.50.11:554/Streaming/Channels/101" {
		t.Errorf("redacted URL = %s", c.Cameras[0].URL)
	}
	if c.Timeouts.Camera != 5*time.Second || c.Cameras[0].Audio != "drop" || c.Cameras[0].MaxReaders != 4 {
		t.Errorf("decoded %+v", c)
	}
	d := c.withDefaults()
	if d.Timeouts.BackoffMax != 30*time.Second || d.Timeouts.AuthFailureBackoff != 10*time.Minute || d.WriteQueueSize != 4096 || d.Listen.UDPRTP != ":8000" {
		t.Errorf("defaults: %+v", d)
	}
}

const (
	cfLis  = "listen:\n  rtsp: 127.0.0.1:8554\n" // lines 1-2
	cfAnon = "allow_anonymous: true\n"           // line 3
	cfCams = "cameras:\n  - name: a\n    url: rtsp://h/x\n"
	cfCam  = cfLis + cfAnon + cfCams // the camera's keys are lines 5-6; a key added to it is line 7
	cfCamR = cfLis + cfCams          // for readers: the camera's keys are lines 4-5
)

// testAdminHash is bcrypt (cost 4) of "console-pw".
const testAdminHash = "$2a$04$JMKRmb4vzix1fsqK2u6e1u6dpqe6gruJ/sHN5fCpOnJyEpVc/iIsK"

// confErrorCases map bad configurations to their exact messages; they also
// seed FuzzConfig.
var confErrorCases = []struct{ name, in, want string }{
	{"unknown key", cfCam + "    trasport: tcp\n", `c.yml:7: unknown key "trasport" (check its spelling and indentation)`},
	{"bad transport", cfCam + "    transport: tcpp\n", `c.yml:7: transport "tcpp" is not one of tcp, udp, auto`},
	{"bad mode", cfCam + "    mode: fast\n", `c.yml:7: mode "fast" is not one of rebuild, passthrough`},
	{"bad audio", cfCam + "    audio: mute\n", `c.yml:7: audio "mute" is not one of keep, drop`},
	{"bad scheme", cfLis + cfAnon + "cameras:\n  - name: a\n    url: http://h/x\n", `c.yml:6: url: scheme must be rtsp:// or rtsps://`},
	{"no host", cfLis + cfAnon + "cameras:\n  - name: a\n    url: rtsp:///x\n", `c.yml:6: url: the camera address (host) is missing`},
	{"camera port", cfLis + cfAnon + "cameras:\n  - name: a\n    url: rtsp://h:99999/x\n", `c.yml:6: url: port 99999 is not a port number (1-65535)`},
	{"url not string", cfLis + cfAnon + "cameras:\n  - name: a\n    url: [1]\n", `c.yml:6: url must be a string like rtsp://user:password@camera:554/path`},
	{"max_readers type", cfCam + "    max_readers: many\n", `c.yml:7: value "many" is not a valid whole number (it reads as a string)`},
	{"no cameras", cfLis + cfAnon, `cameras: none configured; add at least one camera with a name and a url`},
	{"no name", cfLis + cfAnon + "cameras:\n  - url: rtsp://h/x\n", `cameras[0]: name is missing; it is the path readers use (rtsp://proxy:8554/<name>)`},
	{"bad name", cfLis + cfAnon + "cameras:\n  - name: a/b\n    url: rtsp://h/x\n", `cameras[0] (a/b): name "a/b" may only hold letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)`},
	{"dup name", cfCam + "  - name: a\n    url: rtsp://h/y\n", `cameras[1] (a): name "a" is already used by cameras[0]; names must be unique`},
	{"no url", cfLis + cfAnon + "cameras:\n  - name: a\n", `cameras[0] (a): url is missing (rtsp://user:password@camera-address:554/path)`},
	{"negative max", cfCam + "    max_readers: -2\n", `cameras[0] (a): max_readers is -2; use -1 for no limit or a positive number`},
	{"limits", cfCam + "limits:\n  max_connections: 10\n  max_connections_per_source: 20\n", `limits.max_connections_per_source (20) is larger than limits.max_connections (10)`},
	{"queue over budget", cfCam + "limits:\n  output_buffer_bytes: 1000\n  reader_queue_bytes: 2000\n", `limits.reader_queue_bytes (2000) is larger than limits.output_buffer_bytes (1000)`},
	{"fingerprint on rtsp", cfCam + "    tls_fingerprint: " + strings.Repeat("ab", 32) + "\n",
		`cameras[0] (a): tls_fingerprint is set but the url is not rtsps://; a fingerprint pins the certificate of an RTSPS camera`},
	{"short fingerprint", cfLis + cfAnon + "cameras:\n  - name: a\n    url: rtsps://h/x\n    tls_fingerprint: \"AB:CD\"\n",
		`cameras[0] (a): tls_fingerprint "AB:CD": want the SHA-256 of the camera's certificate as 64 hex digits (colons allowed), as printed by: openssl s_client -connect CAMERA:322 </dev/null | openssl x509 -noout -fingerprint -sha256`},
	{"sei passthrough", cfCam + "    mode: passthrough\n    keep_sei: [x]\n", `cameras[0] (a): keep_sei only applies to mode rebuild (passthrough keeps every SEI)`},
	{"reader no password", cfCamR + "readers:\n  - user: u\n    cameras: ['*']\n", `readers[0] (u): set password or password_hash`},
	{"reader both", cfCamR + "readers:\n  - user: u\n    password: p\n    password_hash: h\n    cameras: ['*']\n", `readers[0] (u): set password or password_hash, not both`},
	{"reader bad hash", cfCamR + "readers:\n  - user: u\n    password_hash: md5stuff\n    cameras: ['*']\n", `readers[0] (u): password_hash: unknown format; use argon2id ($argon2id$v=19$m=...,t=...,p=...$salt$hash) or bcrypt ($2b$...) for Basic, or $digest-md5$realm=ipcam$<hex> for Digest and Basic`},
	{"reader no cameras", cfCamR + "readers:\n  - user: u\n    password: p\n", `readers[0] (u): cameras is empty, so this reader could read nothing; list camera names or "*"`},
	{"reader unknown camera", cfCamR + "readers:\n  - user: u\n    password: p\n    cameras: [b]\n", `readers[0] (u): camera "b" is not defined under cameras`},
	{"reader bad network", cfCamR + "readers:\n  - user: u\n    password: p\n    cameras: [a]\n    networks: [10.0.0.0/33]\n", `readers[0] (u): network "10.0.0.0/33" is not an address or CIDR prefix (like 10.0.0.0/24)`},
	{"reader dup", cfCamR + "readers:\n  - {user: u, password: p, cameras: [a]}\n  - {user: u, password: q, cameras: [a]}\n", `readers[1] (u): user "u" is already defined by readers[0]`},
	{"reader no user", cfCamR + "readers:\n  - {password: p, cameras: [a]}\n", `readers[0]: user is missing`},
	{"no readers", cfCamR,
		`readers: none configured, so anyone who reaches listen.rtsp could read every camera; add readers (each with user, password and cameras) so that recorders must log in, or set allow_anonymous: true to allow that on purpose`},
	{"anonymous and readers", cfCam + "readers:\n  - {user: u, password: p, cameras: [a]}\n",
		`allow_anonymous is true but readers are configured, and readers must log in; remove allow_anonymous (or the readers)`},
	{"no listen", cfAnon + cfCams, `listen.rtsp: required: the address recorders connect to on the core network, e.g. "10.0.0.5:8554"`},
	{"listen port", "listen:\n  rtsp: ':99999'\n" + cfAnon + cfCams, `listen.rtsp ":99999": port "99999" is not a port number (1-65535)`},
	{"listen not address", "listen:\n  rtsp: '8554'\n" + cfAnon + cfCams, `listen.rtsp "8554": not an address; write IP:port, e.g. "10.0.0.5:8554"`},
	{"listen host name", "listen:\n  rtsp: cordon.lan:8554\n" + cfAnon + cfCams, `listen.rtsp "cordon.lan:8554": "cordon.lan" is not an IP address; write an address of this host, e.g. "10.0.0.5:8554"`},
	{"admin nope", cfLis + "  admin: nope\n" + cfAnon + cfCams, `listen.admin "nope": not an address; write IP:port, e.g. "127.0.0.1:9554", or "off"`},
	{"same port", cfLis + "  admin: 127.0.0.1:8554\n" + cfAnon + cfCams, `listen.admin "127.0.0.1:8554" uses the port of listen.rtsp "127.0.0.1:8554"; give each listener its own port`},
	{"same port, every interface", "listen:\n  rtsp: :8554\n  rtsps: 127.0.0.1:8554\n" + cfAnon + cfCams + "tls: {cert: c, key: k}\n",
		`listen.rtsps "127.0.0.1:8554" uses the port of listen.rtsp ":8554"; give each listener its own port`},
	{"rtsps without tls", "listen:\n  rtsp: 127.0.0.1:8554\n  rtsps: ':8322'\n" + cfAnon + cfCams, `listen.rtsps is set: tls.cert and tls.key are needed too`},
	{"tls without rtsps", cfCam + "tls:\n  cert: c.pem\n  key: k.pem\n", `tls.cert/tls.key are set but listen.rtsps is empty; set listen.rtsps (e.g. ":8322") or remove tls`},
	{"udp half off", cfLis + "  udp_rtp: ':8000'\n  udp_rtcp: 'off'\n" + cfAnon + cfCams, `listen.udp_rtcp is "off" but listen.udp_rtp is not; set listen.udp_rtp: "off" to serve TCP only (udp_rtcp follows it)`},
	{"udp rtcp without rtp", cfLis + "  udp_rtcp: ':8001'\n" + cfAnon + cfCams, `listen.udp_rtcp is set without listen.udp_rtp; set listen.udp_rtp (udp_rtcp defaults to its port + 1)`},
	{"udp rtcp with off", cfLis + "  udp_rtp: 'off'\n  udp_rtcp: ':8001'\n" + cfAnon + cfCams, `listen.udp_rtp is "off" but listen.udp_rtcp is ":8001"; remove listen.udp_rtcp`},
	{"udp odd", cfLis + "  udp_rtp: ':8001'\n" + cfAnon + cfCams, `listen.udp_rtp ":8001": the RTP port must be even and not 0 (RTCP uses the next one; readers are told both)`},
	{"udp not next", cfLis + "  udp_rtp: ':8000'\n  udp_rtcp: ':9001'\n" + cfAnon + cfCams, `listen.udp_rtcp ":9001": the RTCP port must be listen.udp_rtp's port + 1 (8001)`},
	{"udp bad", cfLis + "  udp_rtp: 'yes'\n" + cfAnon + cfCams, `listen.udp_rtp "yes": not an address; write IP:port, e.g. "10.0.0.5:8000", or "off" to serve TCP only`},
	{"bad bind", cfCam + "camera_side:\n  bind: eth1\n", `camera_side.bind "eth1" is not an IP address (use the camera-network interface's address)`},
	{"negative read coalesce", cfCam + "camera_side:\n  read_coalesce: -2ms\n", `camera_side.read_coalesce -2ms is out of range: 0 (off) to 50ms`},
	{"read coalesce too long", cfCam + "camera_side:\n  read_coalesce: 1s\n", `camera_side.read_coalesce 1s is out of range: 0 (off) to 50ms`},
	{"read coalesce not a duration", cfCam + "camera_side:\n  read_coalesce: 2\n", `c.yml:8: value "2" is not a valid duration (like 10s or 1m30s) (it reads as a whole number)`},
	{"log level", cfCam + "log:\n  level: verbose\n", `log.level "verbose" is not one of debug, info, warn, error`},
	{"log format", cfCam + "log:\n  format: xml\n", `log.format "xml" is not one of text, json`},
	{"bad queue", cfCam + "write_queue_size: 1000\n", `write_queue_size 1000 must be a power of two, at least 64`},
	{"bad backoff", cfCam + "timeouts:\n  backoff_min: 1m\n  backoff_max: 10s\n", `timeouts.backoff_min (1m0s) is larger than timeouts.backoff_max (10s)`},
	{"negative auth backoff", cfCam + "timeouts:\n  auth_failure_backoff: -1m\n", `timeouts.auth_failure_backoff (-1m0s) is negative; it is the wait after a camera refused the credentials (default 10m)`},
	{"admin off loopback", cfLis + "  admin: 10.0.0.5:9554\n" + cfAnon + cfCams,
		`listen.admin "10.0.0.5:9554" is not a loopback address and admin_users is empty, so anyone who reaches it could read the console and API; add admin_users (user and password_hash, from cordon proxy hash), or listen on 127.0.0.1`},
	{"admin every interface", cfLis + "  admin: ':9554'\n" + cfAnon + cfCams,
		`listen.admin ":9554" is not a loopback address and admin_users is empty, so anyone who reaches it could read the console and API; add admin_users (user and password_hash, from cordon proxy hash), or listen on 127.0.0.1`},
	{"admin no user", cfCam + "admin_users:\n  - password_hash: '$2a$04$JMKRmb4vzix1fsqK2u6e1u6dpqe6gruJ/sHN5fCpOnJyEpVc/iIsK'\n", `admin_users[0]: user is missing`},
	{"admin bad user", cfCam + "admin_users:\n  - {user: 'a:b', password_hash: '$2a$04$JMKRmb4vzix1fsqK2u6e1u6dpqe6gruJ/sHN5fCpOnJyEpVc/iIsK'}\n", `admin_users[0] (a:b): user may not contain ':', '"' or control characters`},
	{"admin dup", cfCam + "admin_users:\n  - {user: ops, password_hash: '$2a$04$JMKRmb4vzix1fsqK2u6e1u6dpqe6gruJ/sHN5fCpOnJyEpVc/iIsK'}\n  - {user: ops, password_hash: '$2a$04$JMKRmb4vzix1fsqK2u6e1u6dpqe6gruJ/sHN5fCpOnJyEpVc/iIsK'}\n",
		`admin_users[1] (ops): user "ops" is already defined by admin_users[0]`},
	{"admin no hash", cfCam + "admin_users:\n  - user: ops\n", `admin_users[0] (ops): password_hash is missing; make one with: cordon proxy hash`},
	{"admin bad hash", cfCam + "admin_users:\n  - {user: ops, password_hash: '$argon2i$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA'}\n",
		`admin_users[0] (ops): password_hash: only argon2id is accepted (not argon2i or argon2d)`},
	{"admin clear password", cfCam + "admin_users:\n  - {user: ops, password: secret}\n", `c.yml:8: unknown key "password" (check its spelling and indentation)`},
	{"admin unknown camera", cfCam + "admin_users:\n  - {user: ops, password_hash: '$2a$04$JMKRmb4vzix1fsqK2u6e1u6dpqe6gruJ/sHN5fCpOnJyEpVc/iIsK', cameras: [b]}\n", `admin_users[0] (ops): camera "b" is not defined under cameras`},
	{"preview port range half", cfCam + "preview:\n  udp_port_min: 50000\n", `preview.udp_port_min and udp_port_max go together (a range of UDP ports)`},
	{"preview port range reversed", cfCam + "preview:\n  udp_port_min: 50010\n  udp_port_max: 50000\n", `preview.udp_port_min 50010 is above udp_port_max 50000`},
	{"preview port and range", cfCam + "preview:\n  udp_port: 8189\n  udp_port_min: 50000\n  udp_port_max: 50010\n", `preview.udp_port (one port for every preview) and udp_port_min/max (a range) exclude each other`},
	{"preview port", cfCam + "preview:\n  udp_port: 70000\n", `preview.udp_port 70000 is not a port (1-65535)`},
	{"preview idle", cfCam + "preview:\n  idle_timeout: 1s\n", `preview.idle_timeout 1s is out of range (2s to 5m)`},
	{"preview sessions", cfCam + "preview:\n  max_sessions: -1\n", `preview.max_sessions -1 is negative`},
	{"admin tls half", cfCam + "admin_tls:\n  cert: a.crt\n", `admin_tls needs both cert and key`},
	{"preview unknown", cfCam + "preview:\n  stun: stun.example:3478\n", `c.yml:8: unknown key "stun" (check its spelling and indentation)`},
	{"bad duration", cfCam + "timeouts:\n  camera: soon\n", `c.yml:8: value "soon" is not a valid duration (like 10s or 1m30s) (it reads as a string)`},
}

// TestConfErrors maps bad configurations to the exact message an
// administrator sees (after mediamtx's TestConfErrors).
func TestConfErrors(t *testing.T) { testConfErrors(t, confErrorCases) }

// testConfErrors decodes and validates each case's file and wants its
// exact message.
func testConfErrors(t *testing.T, cases []struct{ name, in, want string }) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := config.Decode("c.yml", []byte(tc.in), &c)
			if err == nil {
				err = c.Validate()
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}

// TestConfigDefaultsSafe: the listeners the proxy adds on its own follow
// listen.rtsp or stay on loopback; none takes every interface.
func TestConfigDefaultsSafe(t *testing.T) {
	for _, tc := range []struct {
		listen                 Listen
		admin, udpRTP, udpRTCP string
	}{
		{Listen{RTSP: "10.0.0.5:8554"}, "127.0.0.1:9554", "10.0.0.5:8000", "10.0.0.5:8001"},
		{Listen{RTSP: "127.0.0.1:8554", UDPRTP: "127.0.0.1:9000"}, "127.0.0.1:9554", "127.0.0.1:9000", "127.0.0.1:9001"},
		{Listen{RTSP: "[fd00::5]:8554", Admin: "off"}, "off", "[fd00::5]:8000", "[fd00::5]:8001"},
		{Listen{RTSP: "10.0.0.5:8554", UDPRTP: "off"}, "127.0.0.1:9554", "off", "off"},
	} {
		d := Config{Listen: tc.listen}.withDefaults()
		if d.Listen.Admin != tc.admin || d.Listen.UDPRTP != tc.udpRTP || d.Listen.UDPRTCP != tc.udpRTCP {
			t.Errorf("%+v: defaults %+v", tc.listen, d.Listen)
		}
	}
}

// TestCheckListsEveryProblemWithLines: one run of a file-based check
// reports every problem, each at its file and line, sorted by line;
// decoding problems (bad enum, bad URL) and whole-file ones together.
func TestCheckListsEveryProblemWithLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yml")
	os.WriteFile(p, []byte(`listen:
  rtsp: ":99999"
  admin: nope
camera_side:
  bind: 203.0.113.77
cameras:
  - name: a
    url: rtsp://u:secret@h:99999/x
    transport: tcpp
log:
  level: verbose
`), 0o600)
	c, err := DecodeConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		p + `:2: listen.rtsp ":99999": port "99999" is not a port number (1-65535)`,
		p + `:3: listen.admin "nope": not an address; write IP:port, e.g. "127.0.0.1:9554", or "off"`,
		p + `:5: camera_side.bind 203.0.113.77 is not an address of this host (it has `,
		p + `:8: url: port 99999 is not a port number (1-65535)`,
		p + `:9: transport "tcpp" is not one of tcp, udp, auto`,
		p + `:11: log.level "verbose" is not one of debug, info, warn, error`,
		p + `: readers: none configured`,
	}
	got := make([]string, len(ve.Problems))
	for i, pr := range ve.Problems {
		got[i] = pr.String()
	}
	// Problems without a line come first.
	want = append(want[len(want)-1:], want[:len(want)-1]...)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the message leaks the camera password: %s", err)
	}
	if !strings.HasPrefix(err.Error(), "7 problems:\n  "+p+": readers: none configured") {
		t.Errorf("error text: %s", err)
	}
}

// TestCheckHost checks addresses against this host's interfaces (loopback:
// 127.0.0.1 and 127.0.0.2 are both on lo), and the TLS files.
func TestCheckHost(t *testing.T) {
	h, err := loadHost()
	if err != nil {
		t.Skipf("cannot list interfaces: %v", err)
	}
	lo := h.iface(netip.MustParseAddr("127.0.0.1"))
	if lo == "" || h.iface(netip.MustParseAddr("127.0.0.2")) != lo {
		t.Fatalf("127.0.0.1 on %q, 127.0.0.2 on %q: want both on the loopback interface", lo, h.iface(netip.MustParseAddr("127.0.0.2")))
	}
	base := func() Config {
		return Config{
			Listen:         Listen{RTSP: "127.0.0.1:8554"},
			AllowAnonymous: true,
			Cameras:        []Camera{{Name: "a", URL: MustParseSecretURL("rtsp://192.0.2.1/x")}},
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		edit      func(*Config)
		err, warn string
	}{
		{"ok", func(*Config) {}, "", ""},
		{"same interface", func(c *Config) { c.CameraSide.Bind = "127.0.0.2" }, "",
			`listen.rtsp "127.0.0.1:8554" and camera_side.bind 127.0.0.2 are on the same interface (` + lo + `): the proxy would join the camera and core networks on one leg; put listen.rtsp on the core-network interface`},
		{"every interface", func(c *Config) { c.CameraSide.Bind = "127.0.0.2"; c.Listen.RTSP = ":8554" }, "",
			`listen.rtsp ":8554" listens on every interface, ` + lo + ` (camera_side.bind 127.0.0.2) included, so cameras could reach it; listen on the core-network interface's address instead`},
		{"admin on every interface", func(c *Config) {
			c.CameraSide.Bind = "127.0.0.2"
			c.Listen.RTSP = "203.0.113.79:8554"
			c.Listen.Admin = ":9554"
			c.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}}
		},
			`listen.rtsp "203.0.113.79:8554": 203.0.113.79 is not an address of this host`,
			`listen.admin ":9554" listens on every interface, ` + lo + ` (camera_side.bind 127.0.0.2) included, so cameras could reach it; listen on the core-network interface's address instead`},
		{"bind not local", func(c *Config) { c.CameraSide.Bind = "203.0.113.77" },
			`camera_side.bind 203.0.113.77 is not an address of this host (it has `, ""},
		{"listen not local", func(c *Config) { c.Listen.RTSP = "203.0.113.78:8554" },
			`listen.rtsp "203.0.113.78:8554": 203.0.113.78 is not an address of this host (it has `, ""},
		{"tls files", func(c *Config) {
			c.Listen.RTSPS = "127.0.0.1:8322"
			c.TLS = TLS{Cert: filepath.Join(dir, "none.pem"), Key: filepath.Join(dir, "none.key")}
		}, `2 problems:
  tls.cert "` + filepath.Join(dir, "none.pem") + `": no such file or directory
  tls.key "` + filepath.Join(dir, "none.key") + `": no such file or directory`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			warns, err := c.Check()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if tc.warn == "" {
				if len(warns) != 0 {
					t.Errorf("warnings %v, want none", warns)
				}
				return
			}
			if len(warns) != 1 || warns[0].String() != tc.warn {
				t.Errorf("warnings %v, want\n%s", warns, tc.warn)
			}
		})
	}
}

func TestConfigKeepSEIChecked(t *testing.T) {
	c := Config{Listen: Listen{RTSP: "127.0.0.1:8554"}, AllowAnonymous: true, Cameras: []Camera{{Name: "a", URL: MustParseSecretURL("rtsp://h/"), KeepSEI: []string{"bogus"}}}}
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), `cameras[0] (a): keep_sei "bogus": unknown SEI payload type`) {
		t.Fatalf("got %v", err)
	}
}

func TestValidationListsAllProblems(t *testing.T) {
	c := Config{Listen: Listen{RTSP: "127.0.0.1:8554"}, AllowAnonymous: true, Cameras: []Camera{{Name: "a"}, {Name: "a", URL: MustParseSecretURL("rtsp://h/")}}}
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "2 problems:\n  cameras[0] (a): url is missing") {
		t.Fatalf("got %v", err)
	}
}

// loadConfig reads and validates a configuration file, as the command does.
func loadConfig(path string) (Config, error) {
	c, err := DecodeConfigFile(path)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func TestLoadConfigNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cordon.yml")
	os.WriteFile(p, []byte("listen: {rtsp: 127.0.0.1:8554}\nallow_anonymous: true\ncameras:\n  - name: a\n"), 0o600)
	_, err := loadConfig(p)
	if err == nil || err.Error() != p+":4: cameras[0] (a): url is missing (rtsp://user:password@camera-address:554/path)" {
		t.Fatalf("got %v", err)
	}
}

func TestSecretURL(t *testing.T) {
	u := MustParseSecretURL("rtsp://admin:p%40ss@10.0.0.5:554/live")
	if s := u.String(); strings.Contains(s, "p%40ss") || strings.Contains(s, "p@ss") {
		t.Errorf("String leaks: %s", s)
	}
	if _, err := ParseSecretURL("rtsp://admin:secret@[::1"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("parse error leaks or is missing: %v", err)
	}
	e := redactError(errorString("dial rtsp://admin:p%40ss@10.0.0.5:554/live: refused p@ss"), u)
	if strings.Contains(e, "p@ss") || strings.Contains(e, "p%40ss") {
		t.Errorf("redactError leaks: %s", e)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestExampleConfig keeps the example configuration shipped with the docs valid.
func TestExampleConfig(t *testing.T) {
	c, err := loadConfig("../testdata/proxy/cordon.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Cameras) != 2 || len(c.Readers) != 2 || !c.Cameras[1].OnDemand {
		t.Errorf("decoded %+v", c)
	}
	if _, err := newAccounts(c.Readers); err != nil {
		t.Error(err)
	}
}

// FuzzConfig decodes and validates arbitrary files: no panic, and a
// configuration that validates is one New accepts.
func FuzzConfig(f *testing.F) {
	for _, tc := range confErrorCases {
		f.Add(tc.in)
	}
	f.Add(goodConfig)
	f.Fuzz(func(t *testing.T, in string) {
		var c Config
		if err := config.Decode("c.yml", []byte(in), &c); err != nil {
			return
		}
		var doc yaml.Node
		if config.Decode("c.yml", []byte(in), &doc) == nil {
			c.origin = &origin{file: "c.yml", lines: config.KeyLines(&doc)}
		}
		if c.Validate() != nil {
			return
		}
		if _, err := New(c, nil); err != nil {
			t.Fatalf("valid configuration refused by New: %v\n%s", err, in)
		}
	})
}

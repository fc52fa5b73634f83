package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/config"
)

const goodConfig = `
listen:
  rtsp: ":8554"
  admin: "127.0.0.1:9090"
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

// TestConfErrors maps bad configurations to the exact message an
// administrator sees (after mediamtx's TestConfErrors).
func TestConfErrors(t *testing.T) {
	const cam = "cameras:\n  - name: a\n    url: rtsp://h/x\n"
	for _, tc := range []struct{ name, in, want string }{
		{"unknown key", cam + "    trasport: tcp\n", `c.yml:4: unknown key "trasport" (check its spelling and indentation)`},
		{"bad transport", cam + "    transport: tcpp\n", `c.yml:4: transport "tcpp" is not one of tcp, udp, auto`},
		{"bad mode", cam + "    mode: fast\n", `c.yml:4: mode "fast" is not one of rebuild, passthrough`},
		{"bad audio", cam + "    audio: mute\n", `c.yml:4: audio "mute" is not one of keep, drop`},
		{"bad scheme", "cameras:\n  - name: a\n    url: http://h/x\n", `c.yml:3: url: scheme must be rtsp:// or rtsps://`},
		{"no host", "cameras:\n  - name: a\n    url: rtsp:///x\n", `c.yml:3: url: the camera address (host) is missing`},
		{"url not string", "cameras:\n  - name: a\n    url: [1]\n", `c.yml:3: url must be a string like rtsp://user:password@camera:554/path`},
		{"max_readers type", cam + "    max_readers: many\n", `c.yml:4: value "many" is not a valid whole number (it reads as a string)`},
		{"no cameras", "listen:\n  rtsp: ':8554'\n", `cameras: none configured; add at least one camera with a name and a url`},
		{"no name", "cameras:\n  - url: rtsp://h/x\n", `cameras[0]: name is missing; it is the path readers use (rtsp://proxy:8554/<name>)`},
		{"bad name", "cameras:\n  - name: a/b\n    url: rtsp://h/x\n", `cameras[0] (a/b): name "a/b" may only hold letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)`},
		{"dup name", cam + "  - name: a\n    url: rtsp://h/y\n", `cameras[1] (a): name "a" is already used by cameras[0]; names must be unique`},
		{"no url", "cameras:\n  - name: a\n", `cameras[0] (a): url is missing (rtsp://user:password@camera-address:554/path)`},
		{"negative max", cam + "    max_readers: -2\n", `cameras[0] (a): max_readers is -2; use -1 for no limit or a positive number`},
		{"limits", cam + "limits:\n  max_connections: 10\n  max_connections_per_source: 20\n", `limits.max_connections_per_source (20) is larger than limits.max_connections (10)`},
		{"queue over budget", cam + "limits:\n  output_buffer_bytes: 1000\n  reader_queue_bytes: 2000\n", `limits.reader_queue_bytes (2000) is larger than limits.output_buffer_bytes (1000)`},
		{"fingerprint on rtsp", cam + "    tls_fingerprint: " + strings.Repeat("ab", 32) + "\n",
			`cameras[0] (a): tls_fingerprint is set but the url is not rtsps://; a fingerprint pins the certificate of an RTSPS camera`},
		{"short fingerprint", "cameras:\n  - name: a\n    url: rtsps://h/x\n    tls_fingerprint: \"AB:CD\"\n",
			`cameras[0] (a): tls_fingerprint "AB:CD": want the SHA-256 of the camera's certificate as 64 hex digits (colons allowed), as printed by: openssl s_client -connect CAMERA:322 </dev/null | openssl x509 -noout -fingerprint -sha256`},
		{"sei passthrough", cam + "    mode: passthrough\n    keep_sei: [x]\n", `cameras[0] (a): keep_sei only applies to mode rebuild (passthrough keeps every SEI)`},
		{"reader no password", cam + "readers:\n  - user: u\n    cameras: ['*']\n", `readers[0] (u): set password or password_hash`},
		{"reader both", cam + "readers:\n  - user: u\n    password: p\n    password_hash: h\n    cameras: ['*']\n", `readers[0] (u): set password or password_hash, not both`},
		{"reader bad hash", cam + "readers:\n  - user: u\n    password_hash: md5stuff\n    cameras: ['*']\n", `readers[0] (u): password_hash: unknown format; use argon2id ($argon2id$v=19$m=...,t=...,p=...$salt$hash) or bcrypt ($2b$...)`},
		{"reader no cameras", cam + "readers:\n  - user: u\n    password: p\n", `readers[0] (u): cameras is empty, so this reader could read nothing; list camera names or "*"`},
		{"reader unknown camera", cam + "readers:\n  - user: u\n    password: p\n    cameras: [b]\n", `readers[0] (u): camera "b" is not defined under cameras`},
		{"reader bad network", cam + "readers:\n  - user: u\n    password: p\n    cameras: [a]\n    networks: [10.0.0.0/33]\n", `readers[0] (u): network "10.0.0.0/33" is not an address or CIDR prefix (like 10.0.0.0/24)`},
		{"reader dup", cam + "readers:\n  - {user: u, password: p, cameras: [a]}\n  - {user: u, password: q, cameras: [a]}\n", `readers[1] (u): user "u" is already defined by readers[0]`},
		{"reader no user", cam + "readers:\n  - {password: p, cameras: [a]}\n", `readers[0]: user is missing`},
		{"rtsps without tls", cam + "listen:\n  rtsps: ':8322'\n", `listen.rtsps is set: tls.cert and tls.key are needed too`},
		{"tls without rtsps", cam + "tls:\n  cert: c.pem\n  key: k.pem\n", `tls.cert/tls.key are set but listen.rtsps is empty; set listen.rtsps (e.g. ":8322") or remove tls`},
		{"udp half off", cam + "listen:\n  udp_rtp: 'off'\n", `listen.udp_rtp and listen.udp_rtcp must both be "off" or both be set`},
		{"bad bind", cam + "camera_side:\n  bind: eth1\n", `camera_side.bind "eth1" is not an IP address (use the camera-network interface's address)`},
		{"bad queue", cam + "write_queue_size: 1000\n", `write_queue_size 1000 must be a power of two, at least 64`},
		{"bad backoff", cam + "timeouts:\n  backoff_min: 1m\n  backoff_max: 10s\n", `timeouts.backoff_min (1m0s) is larger than timeouts.backoff_max (10s)`},
		{"negative auth backoff", cam + "timeouts:\n  auth_failure_backoff: -1m\n", `timeouts.auth_failure_backoff (-1m0s) is negative; it is the wait after a camera refused the credentials (default 10m)`},
		{"bad duration", cam + "timeouts:\n  camera: soon\n", `c.yml:5: value "soon" is not a valid duration (like 10s or 1m30s) (it reads as a string)`},
	} {
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

func TestConfigKeepSEIChecked(t *testing.T) {
	c := Config{Cameras: []Camera{{Name: "a", URL: MustParseSecretURL("rtsp://h/"), KeepSEI: []string{"bogus"}}}}
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), `cameras[0] (a): keep_sei "bogus": unknown SEI payload type`) {
		t.Fatalf("got %v", err)
	}
}

func TestValidationListsAllProblems(t *testing.T) {
	c := Config{Cameras: []Camera{{Name: "a"}, {Name: "a", URL: MustParseSecretURL("rtsp://h/")}}}
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "2 problems:\n  cameras[0] (a): url is missing") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cordon.yml")
	os.WriteFile(p, []byte("cameras:\n  - name: a\n"), 0o600)
	_, err := LoadConfig(p)
	if err == nil || err.Error() != p+": cameras[0] (a): url is missing (rtsp://user:password@camera-address:554/path)" {
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
	c, err := LoadConfig("../testdata/proxy/cordon.example.yml")
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

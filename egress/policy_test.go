package egress

import (
	"testing"
	"time"
)

func TestPolicyErrors(t *testing.T) {
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "cameras:\n  networks: [192.168.50.0/24]\n  netwrks: [10.0.0.0/8]\n",
			`p.yml:3: unknown key "netwrks" (check its spelling and indentation)`},
		{"no cameras", "allow:\n  - {host: 192.168.50.2}\n",
			"p.yml: cameras.networks is empty: list the camera networks, like [192.168.50.0/24]"},
		{"bad cidr", "cameras:\n  networks: [192.168.50.0/33]\n",
			`p.yml:2: "192.168.50.0/33" is not an IP address or network like 192.168.50.0/24`},
		{"bad exclude", "cameras:\n  networks: [192.168.50.0/24]\n  exclude: [gateway]\n",
			`p.yml:3: "gateway" is not an IP address or network like 192.168.50.0/24`},
		{"port without proto", "cameras: {networks: [192.168.50.0/24]}\nallow:\n  - {host: 192.168.50.1, port: 53}\n",
			"p.yml:3: allow entry for 192.168.50.1/32 has port 53 but no proto: add proto: tcp or proto: udp"},
		{"bad proto", "cameras: {networks: [192.168.50.0/24]}\nallow:\n  - {host: 192.168.50.1, proto: sctp, port: 53}\n",
			`p.yml:3: proto "sctp" is not one of tcp, udp, icmp, any`},
		{"bad port", "cameras: {networks: [192.168.50.0/24]}\nallow:\n  - {host: 192.168.50.1, proto: udp, port: 70000}\n",
			`p.yml:3: port "70000" is not a port number between 1 and 65535`},
		{"allow without host", "cameras: {networks: [192.168.50.0/24]}\nallow:\n  - {proto: udp, port: 53}\n",
			"p.yml:3: allow entry without host: say which address or network is allowed"},
		{"allow unknown key", "cameras: {networks: [192.168.50.0/24]}\nallow:\n  - {host: 192.168.50.1, prot: udp}\n",
			`p.yml:3: unknown key "prot" in allow entry (want host, proto, port, note)`},
		{"allow scalar", "cameras: {networks: [192.168.50.0/24]}\nallow:\n  - 192.168.50.1\n",
			"p.yml:3: an allow entry is a mapping like {host: 192.168.50.1, proto: udp, port: 53}"},
		{"bad duration", "cameras: {networks: [192.168.50.0/24]}\nthresholds:\n  volume: {window: 5 minutes}\n",
			`p.yml:3: value "5 minutes" is not a valid duration (like 10s or 1m30s) (it reads as a string)`},
		{"negative duration", "cameras: {networks: [192.168.50.0/24]}\nthresholds:\n  volume: {window: -5m}\n",
			"p.yml:3: thresholds.volume.window is -5m0s: must not be negative"},
		{"bad size", "cameras: {networks: [192.168.50.0/24]}\nthresholds:\n  volume: {bytes: lots}\n",
			`p.yml:3: "lots" is not a size like 500kB, 20MB, 100M or 1GiB`},
		{"beacon events", "cameras: {networks: [192.168.50.0/24]}\nthresholds:\n  beacon: {events: 2}\n",
			"p.yml:3: thresholds.beacon.events is 2: at least 3 contacts are needed to judge regularity"},
		{"jitter", "cameras: {networks: [192.168.50.0/24]}\nthresholds:\n  beacon: {max_jitter: 1.5}\n",
			"p.yml:3: thresholds.beacon.max_jitter is 1.5: want a fraction of the interval between 0 and 1, like 0.1"},
		{"tunnel", "cameras: {networks: [192.168.50.0/24]}\nthresholds:\n  dns_tunnel: {queries: 10, long_names: 20}\n",
			"p.yml:3: thresholds.dns_tunnel.long_names (20) is larger than queries (10): it could never trigger"},
		{"camera name", "cameras:\n  networks: [192.168.50.0/24]\n  names:\n    - {addr: 192.168.50.10}\n",
			"p.yml:4: cameras.names entry 1: set both addr and name"},
		{"camera addr", "cameras:\n  networks: [192.168.50.0/24]\n  names:\n    - {addr: front, name: front-door}\n",
			`p.yml:4: "front" is not an IP address like 192.168.50.10`},
		{"duplicate key", "cameras: {networks: [192.168.50.0/24]}\nthresholds: {}\nthresholds: {}\n",
			`p.yml:3: key "thresholds" appears twice (first at line 2)`},
		{"lateral port", "cameras: {networks: [192.168.50.0/24]}\nlateral: {ports: [ssh]}\n",
			`p.yml:2: value "ssh" is not a valid whole number (it reads as a string)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parsePolicy("p.yml", []byte(c.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if err.Error() != c.want {
				t.Fatalf("error:\n got %s\nwant %s", err, c.want)
			}
		})
	}
}

func TestPolicyIssueExampleAndDefaults(t *testing.T) {
	// The policy shape of issue 5, as is.
	p, err := parsePolicy("p.yml", []byte(`cameras:
  networks: [192.168.50.0/24]
  exclude: [192.168.50.1, 192.168.50.2, 192.168.50.3]   # gateway, cordon proxy, syslog
allow:
  - {host: 192.168.50.2}                     # any traffic with the proxy
  - {host: 192.168.50.1, proto: udp, port: 53}
  - {host: 192.168.50.1, proto: udp, port: 123}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Allow) != 3 || p.Allow[1].Port != 53 || p.Allow[1].Proto != "udp" {
		t.Fatalf("allow %+v", p.Allow)
	}
	if p.Flows.Max != 0 {
		t.Fatalf("LoadPolicy filled flows.max (%d): NewEngine fills the defaults", p.Flows.Max)
	}
	e, err := NewEngine(Config{Policy: p, Sink: &memSink{}})
	if err != nil {
		t.Fatal(err)
	}
	th := e.p.Thresholds
	if th.DNSTunnel.Queries != 25 || th.DNSTunnel.LongNames != 15 || th.DNSTunnel.Window != 5*time.Minute ||
		th.Aggregate != time.Minute || th.Volume.Bytes != 20<<20 || th.Beacon.Events != 6 || e.p.Flows.Max != 100000 {
		t.Fatalf("defaults not applied: %+v %+v", th, e.p.Flows)
	}
	if v, err := parseByteSize("1GiB"); err != nil || v != 1<<30 {
		t.Fatalf("1GiB = %v, %v", v, err)
	}
}

// TestPolicyAllProblems: one run lists every problem of a file, in line
// order, each at the line of the key it names; a value decoding rejected is
// not reported a second time by validation.
func TestPolicyAllProblems(t *testing.T) {
	_, err := parsePolicy("p.yml", []byte(`cameras:
  names:
    - {addr: 192.168.50.10}
    - {addr: front, name: door}
thresholds:
  beacon: {events: 2, max_jitter: 2}
  dns_tunnel:
    queries: 10
    long_names: 20
  volume: {bytes: lots}
flows:
  max: -1
  idel: 5m
`))
	want := `p.yml:1: cameras.networks is empty: list the camera networks, like [192.168.50.0/24]
p.yml:3: cameras.names entry 1: set both addr and name
p.yml:4: "front" is not an IP address like 192.168.50.10
p.yml:6: thresholds.beacon.events is 2: at least 3 contacts are needed to judge regularity
p.yml:6: thresholds.beacon.max_jitter is 2: want a fraction of the interval between 0 and 1, like 0.1
p.yml:9: thresholds.dns_tunnel.long_names (20) is larger than queries (10): it could never trigger
p.yml:10: "lots" is not a size like 500kB, 20MB, 100M or 1GiB
p.yml:12: flows.max is -1: must be positive
p.yml:13: unknown key "idel" (check its spelling and indentation)`
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

// TestNewEngineValidates: a policy built in code is validated by NewEngine.
func TestNewEngineValidates(t *testing.T) {
	_, err := NewEngine(Config{Policy: &Policy{}, Sink: &memSink{}})
	if err == nil || err.Error() != "egress: policy: cameras.networks is empty: list the camera networks, like [192.168.50.0/24]" {
		t.Fatalf("NewEngine(empty policy) = %v", err)
	}
}

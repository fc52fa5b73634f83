package proxy

import (
	"testing"

	"github.com/cordon-vms/cordon/internal/config"
)

const (
	cfFP      = "abababababababababababababababababababababababababababababababab"
	cfTrunkK  = "trunk:\n  cert: t.crt\n  key: t.key\n"
	cfTrunkTo = "trunks:\n  - name: site-a\n    address: edge.example:7443\n    fingerprint: " + cfFP + "\n    cameras: ['*']\n"
)

// trunkConfErrorCases map bad trunk configurations to their exact messages.
var trunkConfErrorCases = []struct{ name, in, want string }{
	{"listen without peers", cfCam + cfTrunkK + "  listen: ':7443'\n",
		"trunk.peers: none configured, so no core could connect; add the fingerprint `cordon trunk keygen` printed on each core"},
	{"peers without listen", cfCam + cfTrunkK + "  peers: [" + cfFP + "]\n",
		"trunk.peers is set but trunk.listen and trunk.dial are not; peers are the cores this edge serves (through trunk.listen or trunk.dial)"},
	{"bad peer", cfCam + cfTrunkK + "  listen: ':7443'\n  peers: [abc]\n",
		"trunk.peers[0]: fingerprint \"abc\": want the SHA-256 fingerprint `cordon trunk keygen` printed (64 hex digits, colons allowed)"},
	{"listen not address", cfCam + cfTrunkK + "  listen: '7443'\n  peers: [" + cfFP + "]\n",
		"trunk.listen \"7443\": not an address; write IP:port, e.g. \"203.0.113.10:7443\""},
	{"listen on the RTP port", cfLis + "  udp_rtp: 127.0.0.1:8000\n" + cfAnon + cfCams + cfTrunkK + "  listen: 127.0.0.1:8000\n  peers: [" + cfFP + "]\n",
		"trunk.listen \"127.0.0.1:8000\" uses the port of listen.udp_rtp \"127.0.0.1:8000\"; give each listener its own port"},
	{"no key pair", cfCam + cfTrunkTo,
		"trunk.cert and trunk.key are required with trunk.listen or trunks (make them with: cordon trunk keygen -o DIR)"},
	{"trunk name is a camera", cfCam + cfTrunkK + "trunks:\n  - name: a\n    address: e:1\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		"trunks[0] (a): name \"a\" is also a camera's name; a trunk's name must differ from every camera's"},
	{"trunk bad name", cfCam + cfTrunkK + "trunks:\n  - name: a/b\n    address: e:1\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		"trunks[0] (a/b): name \"a/b\" may only hold letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)"},
	{"trunk no address", cfCam + cfTrunkK + "trunks:\n  - name: s\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		"trunks[0] (s): address \"\": want the edge's trunk.listen as host:port"},
	{"trunk bad fingerprint", cfCam + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    fingerprint: zz\n    cameras: [x]\n",
		"trunks[0] (s): fingerprint \"zz\": want the SHA-256 fingerprint `cordon trunk keygen` printed (64 hex digits, colons allowed)"},
	{"trunk no cameras", cfCam + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    fingerprint: " + cfFP + "\n",
		"trunks[0] (s): cameras is empty; list the edge's camera names or \"*\""},
	{"trunk star and names", cfCam + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    fingerprint: " + cfFP + "\n    cameras: ['*', x]\n",
		"trunks[0] (s): \"*\" takes every camera; list names or \"*\" alone"},
	{"trunk camera url", cfCam + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    fingerprint: " + cfFP + "\n    cameras: ['rtsp://10.0.0.1/x']\n",
		"trunks[0] (s): camera \"rtsp://10.0.0.1/x\" is not a camera name (letters, digits, '.', '_' and '-')"},
	{"trunk dup", cfCam + cfTrunkK + cfTrunkTo + "  - name: site-a\n    address: e:1\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		"trunks[1] (site-a): name \"site-a\" is already used by trunks[0]"},
	{"reader of an unlisted trunk camera", cfCamR + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    fingerprint: " + cfFP + "\n    cameras: [x]\n" +
		"readers:\n  - {user: u, password: p, cameras: [s/y]}\n", "readers[0] (u): camera \"s/y\" is not defined under cameras"},
	{"dial without peers", cfCam + cfTrunkK + "  dial: [core.example:7443]\n",
		"trunk.peers: none configured, so the cores of trunk.dial would be refused; add the fingerprint `cordon trunk keygen` printed on each core"},
	{"dial not host:port", cfCam + cfTrunkK + "  dial: [core.example]\n  peers: [" + cfFP + "]\n",
		"trunk.dial[0]: \"core.example\": want a core's trunk.listen as host:port"},
	{"dial twice", cfCam + cfTrunkK + "  dial: [c:1, c:1]\n  peers: [" + cfFP + "]\n",
		"trunk.dial[1]: \"c:1\" is already trunk.dial[0]"},
	{"peer name without ca", cfCam + cfTrunkK + "  listen: ':7443'\n  peers: [core-1]\n",
		"trunk.peers[0]: fingerprint \"core-1\": want the SHA-256 fingerprint `cordon trunk keygen` printed (64 hex digits, colons allowed)"},
	{"peer neither", cfCam + cfTrunkK + "  ca: ca.pem\n  listen: ':7443'\n  peers: ['core 1']\n",
		"trunk.peers[0]: \"core 1\" is neither a fingerprint nor a certificate name (letters, digits, '.', '_' and '-') for trunk.ca to check"},
	{"bad dialer", cfCam + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    dialer: both\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		`c.yml:13: dialer "both" is not one of core, edge`},
	{"edge dials with address", cfCam + cfTrunkK + "  listen: ':7443'\ntrunks:\n  - name: s\n    address: e:1\n    dialer: edge\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		"trunks[0] (s): address \"e:1\" is not used with dialer \"edge\" (the edge dials this proxy's trunk.listen); remove it"},
	{"edge dials without listen", cfCam + cfTrunkK + "trunks:\n  - name: s\n    dialer: edge\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		"trunks[0] (s): dialer \"edge\" needs trunk.listen on this proxy: the address the edge dials (its trunk.dial)"},
	{"two edges dialing with one certificate", cfCam + cfTrunkK + "  listen: ':7443'\ntrunks:\n  - name: s\n    dialer: edge\n    fingerprint: " + cfFP + "\n    cameras: [x]\n" +
		"  - name: t\n    dialer: edge\n    fingerprint: " + cfFP + "\n    cameras: [x]\n",
		"trunks[1] (t): trunks[0] (s) has the same edge certificate; an edge that dials in could not be told apart"},
	{"no fingerprint nor ca", cfCam + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    cameras: [x]\n",
		"trunks[0] (s): fingerprint is missing: paste the edge's (`cordon trunk keygen` printed it on the edge), or set trunk.ca"},
	{"peer_name with fingerprint", cfCam + cfTrunkK + "  ca: ca.pem\ntrunks:\n  - name: s\n    address: e:1\n    fingerprint: " + cfFP + "\n    peer_name: s\n    cameras: [x]\n",
		"trunks[0] (s): peer_name is checked only without a fingerprint (the edge's certificate issued by trunk.ca); remove one of them"},
}

func TestTrunkConfErrors(t *testing.T) { testConfErrors(t, trunkConfErrorCases) }

// TestTrunkConfigGood: a core with only trunks needs no cameras, and its
// readers may name trunk cameras.
func TestTrunkConfigGood(t *testing.T) {
	in := cfLis + cfTrunkK + cfTrunkTo + "  - name: site-b\n    address: 10.1.0.2:7443\n    fingerprint: " + cfFP + "\n    cameras: [gate]\n" +
		"readers:\n  - {user: u, password: p, cameras: [site-a/door, site-b/gate]}\n"
	var c Config
	if err := config.Decode("c.yml", []byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// trunkMediaConfErrorCases map bad trunk media settings to their messages.
var trunkMediaConfErrorCases = []struct{ name, in, want string }{
	{"bad transport", cfCam + cfTrunkK + cfTrunkTo + "    transport: udp\n", `c.yml:15: transport "udp" is not one of stream, datagram`},
	{"bad bitrate", cfCam + cfTrunkK + cfTrunkTo + "    max_bitrate: fast\n", `c.yml:15: bad bitrate "fast" (want bits per second, e.g. 50M, 800k, 1.5G or 50Mbit/s)`},
	{"bitrate in bytes", cfCam + cfTrunkK + cfTrunkTo + "    max_bitrate: 50MiB\n", `c.yml:15: bad bitrate "50MiB" (want bits per second, e.g. 50M, 800k, 1.5G or 50Mbit/s)`},
	{"bitrate too low", cfCam + cfTrunkK + cfTrunkTo + "    max_bitrate: 9600\n",
		"trunks[0] (site-a): max_bitrate 9.6 kbit/s is below 64.0 kbit/s, too little for one video camera; leave it out for no cap"},
	{"override unknown key", cfCam + cfTrunkK + cfTrunkTo + "    overrides:\n      door: {transprt: datagram}\n", `c.yml:16: unknown key "transprt" (check its spelling and indentation)`},
	{"override not listed", cfCam + cfTrunkK + "trunks:\n  - name: s\n    address: e:1\n    fingerprint: " + cfFP + "\n    cameras: [x]\n    overrides:\n      y: {always_on: true}\n",
		`trunks[0] (s): overrides: camera "y" is not in this trunk's cameras`},
	{"override bad name", cfCam + cfTrunkK + cfTrunkTo + "    overrides:\n      'a/b': {always_on: true}\n",
		`trunks[0] (site-a): overrides: "a/b" is not a camera name (letters, digits, '.', '_' and '-')`},
	{"too many connections", cfCam + cfTrunkK + cfTrunkTo + "    connections: 129\n",
		"trunks[0] (site-a): connections 129 is out of range: 1 to 128 (or leave it out: one per camera, up to 128)"},
	{"negative connections", cfCam + cfTrunkK + cfTrunkTo + "    connections: -1\n",
		"trunks[0] (site-a): connections -1 is out of range: 1 to 128 (or leave it out: one per camera, up to 128)"},
	{"fec bad value", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: lots\n", `c.yml:16: fec: bad value "lots" (want off, a percentage such as "20%", or {data: 10, parity: 2})`},
	{"fec percent out of range", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: 90%\n", `c.yml:16: fec: 90% is out of range (5% to 80%)`},
	{"fec unknown key", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: {data: 10, repair: 2}\n", `c.yml:16: fec: unknown key "repair" (want data and parity)`},
	{"fec without parity", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: {data: 10}\n", `c.yml:16: fec: both data and parity are needed (want off, a percentage such as "20%", or {data: 10, parity: 2})`},
	{"fec data too large", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: {data: 40, parity: 2}\n", `c.yml:16: fec: data 40 is out of range (1 to 32 datagrams per group)`},
	{"fec parity over data", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: {data: 2, parity: 3}\n", `c.yml:16: fec: parity 3 is more than data 2 (more repair than data: use transport stream)`},
	{"fec zero parity", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: {data: 10, parity: 0}\n", `c.yml:16: fec: parity 0 is out of range (1 to 16 repair datagrams per group)`},
	{"fec bad number", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    fec: {data: ten, parity: 2}\n", `c.yml:16: fec: data: bad number "ten"`},
	{"fec on a stream trunk", cfCam + cfTrunkK + cfTrunkTo + "    fec: 20%\n", `trunks[0] (site-a): fec is set but no camera of this trunk has transport datagram (stream cameras are retransmitted by QUIC)`},
	{"fec on a stream override", cfCam + cfTrunkK + cfTrunkTo + "    transport: datagram\n    overrides:\n      door: {transport: stream, fec: 10%}\n", `trunks[0] (site-a): overrides: camera "door" sets fec but its transport is not datagram`},
	{"edge cap without listen", cfCam + cfTrunkK + "  max_bitrate: 50M\n" + cfTrunkTo,
		"trunk.max_bitrate is set but trunk.listen and trunk.dial are not; it caps what this edge sends to each core"},
}

func TestTrunkMediaConfErrors(t *testing.T) { testConfErrors(t, trunkMediaConfErrorCases) }

// TestTrunkMediaConfig: the media settings read, and each camera's
// transport and always_on come from the trunk unless overridden.
func TestTrunkMediaConfig(t *testing.T) {
	in := cfLis + cfAnon + cfTrunkK + "  listen: 127.0.0.1:7443\n  peers: [" + cfFP + "]\n  max_bitrate: 40M\n" + cfTrunkTo +
		"    transport: datagram\n    max_bitrate: 50Mbit/s\n    fec: 10%\n    overrides:\n      door: {transport: stream, always_on: true}\n      yard: {always_on: false, fec: {data: 8, parity: 3}}\n      gate: {fec: off}\n"
	var c Config
	if err := config.Decode("c.yml", []byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tr := c.Trunks[0]
	if c.Trunk.MaxBitrate != 40e6 || tr.MaxBitrate != 50e6 {
		t.Errorf("max_bitrate: edge %d, trunk %d", c.Trunk.MaxBitrate, tr.MaxBitrate)
	}
	for name, want := range map[string]struct {
		tr     TrunkTransport
		always bool
	}{"door": {TrunkStream, true}, "yard": {TrunkDatagram, false}, "gate": {TrunkDatagram, false}} {
		if tp, always := tr.cameraMedia(name); tp != want.tr || always != want.always {
			t.Errorf("%s: %s always_on=%v, want %s %v", name, tp, always, want.tr, want.always)
		}
	}
	for name, want := range map[string]TrunkFEC{"door": {Off: true}, "yard": {Data: 8, Parity: 3}, "gate": {Off: true}, "other": {Data: 20, Parity: 2}} {
		if f := tr.cameraFEC(name); f != want {
			t.Errorf("%s: fec %v, want %v", name, f, want)
		}
	}
	if f := (&Trunk{Transport: TrunkDatagram}).cameraFEC("x"); f != DefaultTrunkFEC {
		t.Errorf("default fec of a datagram camera: %v", f)
	}
	// An edge that only dials its cores (behind NAT) caps them too.
	dial := cfCam + cfTrunkK + "  dial: [core.example:7443]\n  peers: [" + cfFP + "]\n  max_bitrate: 20M\n"
	var d Config
	if err := config.Decode("d.yml", []byte(dial), &d); err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil || d.Trunk.MaxBitrate != 20e6 {
		t.Errorf("trunk.max_bitrate on an edge that dials: %v (max_bitrate %d)", err, d.Trunk.MaxBitrate)
	}
	if tp, always := (&Trunk{}).cameraMedia("x"); tp != TrunkStream || always {
		t.Errorf("defaults: %s %v", tp, always)
	}
	for _, tc := range []struct{ edge, core, want int64 }{{0, 0, 0}, {10, 0, 10}, {0, 20, 20}, {10, 20, 10}, {30, 20, 20}} {
		if got := trunkCap(tc.edge, tc.core); got != tc.want {
			t.Errorf("trunkCap(%d, %d) = %d, want %d", tc.edge, tc.core, got, tc.want)
		}
	}
}

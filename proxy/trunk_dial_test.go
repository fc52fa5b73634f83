package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// coreConn is the current connection 0 of the core's first trunk.
func coreConn(p *Proxy) *quic.Conn {
	return p.trunkList()[0].link(0).current()
}

// edgeDialsConfigs are a core that listens for edge "site-a" and an edge
// with camera cam1 (at camURL) that dials the core; the edge's config
// needs the core's address, so it is a function.
func edgeDialsCore(t *testing.T, edgeK, coreK trunkKeys, cameras ...string) (core Config, edge func(coreAddr, camURL string) Config) {
	t.Helper()
	core = testConfig()
	core.Trunk = TrunkEnd{Listen: "127.0.0.1:0", Cert: coreK.cert, Key: coreK.key}
	core.Trunks = []Trunk{{Name: "site-a", Dialer: TrunkDialerEdge, Fingerprint: edgeK.fp, Cameras: cameras}}
	return core, func(coreAddr, camURL string) Config {
		cfg := testConfig(Camera{Name: "cam1", URL: MustParseSecretURL(camURL)})
		cfg.Trunk = TrunkEnd{Dial: []string{coreAddr}, Cert: edgeK.cert, Key: edgeK.key, Peers: []string{coreK.fp}}
		return cfg
	}
}

// TestTrunkEdgeDials: with dialer "edge" the edge opens the connection
// (an edge behind NAT) and the roles stay the same: the core's reader
// plays the edge's camera, the camera sees the edge alone, and the
// reader stays attached while the edge restarts.
func TestTrunkEdgeDials(t *testing.T) {
	sim := startCamsim(t, "cam1")
	fwd := startForwarder(t, camsimHost(sim))
	camURL := fwd.url("cam1")
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	ccfg, ecfg := edgeDialsCore(t, edgeK, coreK, "*")
	clog, _ := newLog(t)
	core := startProxy(t, ccfg, clog)
	coreAddr := core.TrunkAddr().String()
	elog, ebuf := newLog(t)
	edge := startProxy(t, ecfg(coreAddr, camURL), elog)
	if edge.TrunkAddr() != nil {
		t.Errorf("an edge that dials listens on %s", edge.TrunkAddr())
	}

	r := waitReader(t, "a core reader of site-a/cam1", 10*time.Second, readerURL(core, "site-a/cam1"))
	waitFor(t, "packets at the core reader", 5*time.Second, func() bool { return r.packets.Load() > 20 })
	if !startsWithSPS(firstPacket(r)) {
		t.Error("the core reader did not start at a keyframe")
	}
	if est := edge.TrunksStatus().Edge; est == nil || len(est.Cores) != 1 || est.Cores[0].Fingerprint != coreK.fp || est.Cores[0].Cameras != 1 ||
		len(est.Dial) != 1 || est.Dial[0].Address != coreAddr || est.Dial[0].State != trunkUp || est.Listen != "" {
		t.Errorf("edge status: %+v", est)
	}

	// The roles did not swap with the dialer: the edge answers by name only.
	for _, name := range []string{"rtsp://10.0.0.1/stream", "../cam1"} {
		if ans := ask(t, coreConn(core), trunkRequest{Op: trunkOpPlay, Camera: name}); !strings.Contains(ans.Error, "is not listed by this edge") {
			t.Errorf("play %q through the connection the edge dialed: %+v", name, ans)
		}
	}

	// The edge's connection drops (the core restarts its side of it): the
	// edge dials again, resuming its TLS session.
	coreConn(core).CloseWithError(0, "test: drop")
	waitFor(t, "the edge to dial again with a resumed session", 10*time.Second, func() bool {
		return strings.Contains(ebuf.String(), `msg="connected to core"`) && strings.Contains(ebuf.String(), "resumed=true")
	})

	// The edge restarts: the reader stays attached and gets packets again.
	edge.Close()
	before := r.packets.Load()
	startProxy(t, ecfg(coreAddr, camURL), elog)
	waitFor(t, "packets after the edge restarted", 10*time.Second, func() bool { return r.packets.Load() > before+20 })
	if n := fwd.accepted.Load(); n != 2 {
		t.Errorf("the camera saw %d connections; want 2 (one per edge run)", n)
	}
}

// TestTrunkResumption: with three connections, each of the core's
// connections resumes the TLS session after the edge drops them all
// (without 0-RTT data: see trunkNet.dial), and /v1/trunks says so per
// connection.
func TestTrunkResumption(t *testing.T) {
	names, _, ecfg := multiCameraEdge(t, 3)
	edge, edgeK, coreK := startListeningEdge(t, ecfg)
	clog, _ := newLog(t)
	core := startProxy(t, coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, names...), clog)
	rs := readAll(t, core, names)
	if cs := coreConn(core).ConnectionState(); cs.TLS.DidResume {
		t.Fatal("the first connection resumed a session")
	}
	links := core.trunkList()[0].linkList()
	if len(links) != 3 {
		t.Fatalf("%d connections; want 3 (one per camera)", len(links))
	}
	first := make([]*quic.Conn, len(links))
	for i, l := range links {
		first[i] = l.current()
	}
	before := core.trunkList()[0].resumed.Load()
	// The edge drops the core (as an idle timeout or a NAT reset would).
	edge.trunkEdge.mu.Lock()
	for c := range edge.trunkEdge.peers {
		c.CloseWithError(0, "test: drop")
	}
	edge.trunkEdge.mu.Unlock()
	waitFor(t, "a new connection in each slot", 10*time.Second, func() bool {
		for i, l := range links {
			if c := l.current(); c == nil || c == first[i] {
				return false
			}
		}
		return true
	})
	for i, cs := range trunksStatus(t, core).Trunks[0].Connections {
		if !cs.Resumed || cs.State != trunkUp {
			t.Errorf("connection %d after the drop: %+v; want up and resumed", i, cs)
		}
	}
	if n := core.trunkList()[0].resumed.Load() - before; n != 3 {
		t.Errorf("%d resumed connections counted after the drop; want 3", n)
	}
	for i, r := range rs {
		n := r.packets.Load()
		waitFor(t, "packets of "+names[i]+" on its resumed connection", 10*time.Second, func() bool { return r.packets.Load() > n+10 })
	}
}

// natRelay is a UDP NAT between a client (an edge that dials, or a core)
// and a server, on loopback: one outside socket per client address (a
// flow, as a NAT maps each inside address and port), so each of a
// trunk's QUIC connections is its own flow; rebind gives every flow a
// new outside port, as a NAT that lost its mappings (or a new WAN
// address) would.
type natRelay struct {
	front   net.PacketConn
	delay   time.Duration // added each way
	loss    float64       // fraction of datagrams dropped, each way
	dropped atomic.Int64
	mu      sync.Mutex
	target  net.Addr // nil: datagrams from the clients are dropped
	flows   map[string]*natFlow
	closed  bool
}

// natFlow is one client's mapping: its outside socket.
type natFlow struct {
	client net.Addr
	back   net.PacketConn
}

// send writes b to addr on c after the relay's delay.
func (n *natRelay) send(c net.PacketConn, b []byte, addr net.Addr) {
	if n.loss > 0 && mrand.Float64() < n.loss {
		n.dropped.Add(1)
		return
	}
	if n.delay == 0 {
		c.WriteTo(b, addr)
		return
	}
	b = append([]byte(nil), b...)
	time.AfterFunc(n.delay, func() { c.WriteTo(b, addr) })
}

func startNAT(t *testing.T, target string, delay time.Duration) *natRelay {
	return startLossyNAT(t, target, delay, 0)
}

// startLossyNAT is startNAT that also drops a fraction loss of the
// datagrams in each direction.
func startLossyNAT(t *testing.T, target string, delay time.Duration, loss float64) *natRelay {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &natRelay{front: front, delay: delay, loss: loss, flows: map[string]*natFlow{}}
	if target != "" {
		n.setTarget(t, target)
	}
	t.Cleanup(func() {
		front.Close()
		n.mu.Lock()
		n.closed = true
		for _, f := range n.flows {
			f.back.Close()
		}
		n.mu.Unlock()
	})
	go func() {
		buf := make([]byte, 65536)
		for {
			k, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			back, target := n.flowFor(from)
			if back != nil && target != nil {
				n.send(back, buf[:k], target)
			}
		}
	}()
	return n
}

// flowFor is the outside socket of client from (a new flow for a new
// client) and where it sends; nil once the relay is closed.
func (n *natRelay) flowFor(from net.Addr) (net.PacketConn, net.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, nil
	}
	f := n.flows[from.String()]
	if f == nil {
		back, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil
		}
		f = &natFlow{client: from}
		n.flows[from.String()] = f
		n.bind(f, back)
	}
	return f.back, n.target
}

// bind makes back flow f's outside socket and relays what it receives
// to the client (n.mu held).
func (n *natRelay) bind(f *natFlow, back net.PacketConn) {
	f.back = back
	go func() {
		buf := make([]byte, 65536)
		for {
			k, _, err := back.ReadFrom(buf)
			if err != nil {
				return
			}
			n.send(n.front, buf[:k], f.client)
		}
	}()
}

// setTarget sets where the relay sends.
func (n *natRelay) setTarget(t *testing.T, target string) {
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.target = ta
	n.mu.Unlock()
}

// rebind moves every flow to a new outside socket.
func (n *natRelay) rebind(t *testing.T) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.flows {
		back, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		old := f.back
		n.bind(f, back)
		old.Close()
	}
}

// outsides is the flows' outside addresses.
func (n *natRelay) outsides() map[string]bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]bool{}
	for _, f := range n.flows {
		out[f.back.LocalAddr().String()] = true
	}
	return out
}

// TestTrunkMigration: an edge that dials through a NAT whose mappings
// change (its connections' addresses as the core sees them change) keeps
// each of its three QUIC connections: the core validates each new path
// and goes on, with no reconnect, and every camera's reader gets packets
// throughout.
func TestTrunkMigration(t *testing.T) {
	names, _, ecfg := multiCameraEdge(t, 3)
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	ccfg, _ := edgeDialsCore(t, edgeK, coreK, names...)
	clog, _ := newLog(t)
	core := startProxy(t, ccfg, clog)
	nat := startNAT(t, core.TrunkAddr().String(), 0)
	elog, _ := newLog(t)
	startProxy(t, ecfg(TrunkEnd{Dial: []string{nat.front.LocalAddr().String()}, Cert: edgeK.cert, Key: edgeK.key, Peers: []string{coreK.fp}}), elog)
	rs := readAll(t, core, names)
	links := core.trunkList()[0].linkList()
	if len(links) != 3 {
		t.Fatalf("%d connections; want 3 (one per camera)", len(links))
	}
	conns := make([]*quic.Conn, len(links))
	for i, l := range links {
		conns[i] = l.current()
	}
	// remotes is true when the core sees each connection at one of the
	// NAT's current outside addresses, each at its own.
	remotes := func() bool {
		out, seen := nat.outsides(), map[string]bool{}
		for _, c := range conns {
			a := c.RemoteAddr().String()
			if !out[a] || seen[a] {
				return false
			}
			seen[a] = true
		}
		return true
	}
	if !remotes() {
		t.Fatalf("core sees the edge's connections at %v; want the NAT's %v, one each", remoteAddrs(conns), nat.outsides())
	}
	for range 3 {
		nat.rebind(t)
		waitFor(t, "each connection to move to its new address", 10*time.Second, remotes)
		for i, r := range rs {
			before := r.packets.Load()
			waitFor(t, "packets of "+names[i]+" after the move", 5*time.Second, func() bool { return r.packets.Load() > before+10 })
		}
	}
	for i, cs := range trunksStatus(t, core).Trunks[0].Connections {
		if links[i].current() != conns[i] || cs.Reconnects != 0 {
			t.Errorf("connection %d reconnected instead of migrating: %+v", i, cs)
		}
	}
}

func remoteAddrs(conns []*quic.Conn) []string {
	var out []string
	for _, c := range conns {
		out = append(out, c.RemoteAddr().String())
	}
	return out
}

// TestTrunkActiveStandby: two cores pull the same camera from one edge,
// one dialing the edge and one dialed by it; the camera sees the edge's
// one session.
func TestTrunkActiveStandby(t *testing.T) {
	sim := startCamsim(t, "cam1")
	fwd := startForwarder(t, camsimHost(sim))
	camURL := fwd.url("cam1")
	edgeK, aK, bK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core-a"), newTrunkKeys(t, "core-b")
	// Core b waits for the edge to dial it.
	bcfg, _ := edgeDialsCore(t, edgeK, bK, "cam1")
	blog, _ := newLog(t)
	coreB := startProxy(t, bcfg, blog)
	ecfg := edgeConfig(camURL, "127.0.0.1:0", edgeK, aK.fp)
	ecfg.Trunk.Peers = append(ecfg.Trunk.Peers, bK.fp)
	ecfg.Trunk.Dial = []string{coreB.TrunkAddr().String()}
	elog, _ := newLog(t)
	edge := startProxy(t, ecfg, elog)
	alog, _ := newLog(t)
	coreA := startProxy(t, coreConfig(edge.TrunkAddr().String(), aK, edgeK.fp, "cam1"), alog)

	ra := waitReader(t, "a reader of core a", 10*time.Second, readerURL(coreA, "site-a/cam1"))
	rb := waitReader(t, "a reader of core b", 10*time.Second, readerURL(coreB, "site-a/cam1"))
	waitFor(t, "packets at both cores", 5*time.Second, func() bool { return ra.packets.Load() > 20 && rb.packets.Load() > 20 })
	if n := fwd.accepted.Load(); n != 1 {
		t.Errorf("the camera saw %d connections for two cores; want 1", n)
	}
	users := map[string]bool{}
	for _, rs := range edge.Status()[0].Readers {
		users[rs.User] = true
	}
	if !users["trunk:"+aK.fp] || !users["trunk:"+bK.fp] || len(users) != 2 {
		t.Errorf("edge readers of cam1: %v; want the two cores' trunks", users)
	}
}

// testCA is a CA that issues trunk certificates for names.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key, file}
}

// issue writes a key pair for dnsName signed by the CA.
func (ca *testCA) issue(t *testing.T, dnsName string) trunkKeys {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	k := trunkKeys{cert: filepath.Join(dir, "t.crt"), key: filepath.Join(dir, "t.key"), fp: formatFingerprint(sha256Sum(der))}
	if err := os.WriteFile(k.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTrunkCA: with trunk.ca, certificates issued by the CA for the
// expected names are accepted without fingerprints; one for another
// name, or from another CA, is refused and logged with its fingerprint.
func TestTrunkCA(t *testing.T) {
	sim := startCamsim(t, "cam1")
	ca, other := newTestCA(t, "trunk CA"), newTestCA(t, "another CA")
	edgeK, coreK := ca.issue(t, "site-a"), ca.issue(t, "core-1")
	ecfg := edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, "core-1")
	ecfg.Trunk.CA = ca.file
	elog, ebuf := newLog(t)
	edge := startProxy(t, ecfg, elog)
	addr := edge.TrunkAddr().String()
	core := func(k trunkKeys, peerName string) (*Proxy, *logBuf) {
		cfg := coreConfig(addr, k, "", "cam1")
		cfg.Trunk.CA = ca.file
		cfg.Trunks[0].PeerName = peerName
		log, buf := newLog(t)
		return startProxy(t, cfg, log), buf
	}

	t.Run("issued for the names", func(t *testing.T) {
		c, _ := core(coreK, "")
		r := waitReader(t, "a core reader", 10*time.Second, readerURL(c, "site-a/cam1"))
		waitFor(t, "packets", 5*time.Second, func() bool { return r.packets.Load() > 10 })
	})
	t.Run("edge certificate for another name", func(t *testing.T) {
		c, buf := core(coreK, "site-b")
		waitFor(t, "the core to refuse the edge", 5*time.Second, func() bool {
			return strings.Contains(buf.String(), "trunk peer refused") && strings.Contains(buf.String(), edgeK.fp) && strings.Contains(buf.String(), "site-b")
		})
		if st := c.TrunksStatus().Trunks[0]; st.State == trunkUp {
			t.Errorf("trunk up: %+v", st)
		}
	})
	t.Run("core certificate from another CA", func(t *testing.T) {
		bad := other.issue(t, "core-1")
		core(bad, "")
		waitFor(t, "the edge to refuse the core", 5*time.Second, func() bool {
			return strings.Contains(ebuf.String(), "trunk peer refused") && strings.Contains(ebuf.String(), bad.fp) &&
				strings.Contains(ebuf.String(), "not issued by trunk.ca")
		})
	})
	t.Run("core certificate for a name not in peers", func(t *testing.T) {
		bad := ca.issue(t, "core-2")
		core(bad, "")
		waitFor(t, "the edge to refuse the core", 5*time.Second, func() bool {
			return strings.Contains(ebuf.String(), bad.fp) && strings.Contains(ebuf.String(), `not for an allowed name`)
		})
	})
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// TestTrunkKeepAlive: a trunk that carries nothing stays up past the
// idle timeout: keep-alives hold it. (The edge's one camera is down, and
// the core asks for it again only after 10 s.)
func TestTrunkKeepAlive(t *testing.T) {
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	ecfg := edgeConfig("rtsp://127.0.0.1:1/x", "127.0.0.1:0", edgeK, coreK.fp)
	ecfg.Timeouts.Camera = time.Second // idle timeout 1 s, keep-alives every 333 ms
	elog, _ := newLog(t)
	edge := startProxy(t, ecfg, elog)
	ccfg := coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, "cam1")
	ccfg.Timeouts.Camera = time.Second
	ccfg.Trunks[0].AlwaysOn = true // (on demand, the core would ask only for a reader)
	ccfg.Timeouts.BackoffMin, ccfg.Timeouts.BackoffMax = 10*time.Second, 10*time.Second
	clog, _ := newLog(t)
	core := startProxy(t, ccfg, clog)
	waitFor(t, "the trunk up", 5*time.Second, func() bool { return coreConn(core) != nil })
	waitFor(t, "the core's request for the down camera refused", 5*time.Second, func() bool {
		c := core.camera("site-a/cam1")
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.state == stateDown
	})
	conn := coreConn(core)
	time.Sleep(3 * time.Second) // three idle timeouts with nothing but keep-alives
	if c := coreConn(core); c != conn || core.TrunksStatus().Trunks[0].Reconnects != 0 {
		t.Errorf("the idle trunk did not stay up: %+v", core.TrunksStatus().Trunks[0])
	}
}

// TestTrunkEdgeDialsBackoff: an edge whose core is not there yet dials
// again with backoff, and connects once the core is up: through a NAT,
// all three of its connections (one per camera).
func TestTrunkEdgeDialsBackoff(t *testing.T) {
	names, _, ecfg := multiCameraEdge(t, 3)
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	ccfg, _ := edgeDialsCore(t, edgeK, coreK, names...)
	nat := startNAT(t, "", 0) // the core's address, with no core behind it yet
	cfg := ecfg(TrunkEnd{Dial: []string{nat.front.LocalAddr().String()}, Cert: edgeK.cert, Key: edgeK.key, Peers: []string{coreK.fp}})
	// Each dial gives up after 1.5 s. (The camera's reads have the same
	// time-out: at 0.5 s a loaded machine timed the camera out too.)
	cfg.Timeouts.Camera = 1500 * time.Millisecond
	elog, _ := newLog(t)
	edge := startProxy(t, cfg, elog)
	waitFor(t, "the edge to dial three times", 20*time.Second, func() bool {
		d := edge.TrunksStatus().Edge.Dial
		return len(d) == 1 && d[0].Dials >= 3 && d[0].State == trunkDown && d[0].LastError != ""
	})
	clog, _ := newLog(t)
	core := startProxy(t, ccfg, clog)
	nat.setTarget(t, core.TrunkAddr().String())
	readAll(t, core, names)
	if d := edge.TrunksStatus().Edge.Dial[0]; d.State != trunkUp {
		t.Errorf("edge dial status: %+v", d)
	}
	if got := edgeStreams(edge); !slices.Equal(got, []int64{1, 1, 1}) {
		t.Errorf("edge streams per connection: %v; want 1 on each of 3", got)
	}
	if n := len(nat.outsides()); n < 3 {
		t.Errorf("%d flows through the NAT; want at least 3", n)
	}
}

// TestTrunkLossyLink: through a relay that adds 20 ms and drops 2 % of
// the datagrams each way, the trunk's three connections (one per camera,
// each its own flow) stay up and each core reader gets its camera
// without a long stall (QUIC retransmits on the stream).
func TestTrunkLossyLink(t *testing.T) {
	names, _, ecfg := multiCameraEdge(t, 3)
	edge, edgeK, coreK := startListeningEdge(t, ecfg)
	nat := startLossyNAT(t, edge.TrunkAddr().String(), 20*time.Millisecond, 0.02)
	clog, _ := newLog(t)
	core := startProxy(t, coreConfig(nat.front.LocalAddr().String(), coreK, edgeK.fp, names...), clog)
	rs := readAll(t, core, names)
	start := time.Now()
	before := make([]int64, len(rs))
	for i, r := range rs {
		before[i] = r.packets.Load()
	}
	time.Sleep(4 * time.Second)
	st := core.TrunksStatus().Trunks[0]
	if st.Reconnects != 0 || st.State != trunkUp || len(st.Connections) != 3 {
		t.Errorf("the trunk did not stay up on 3 connections: %+v", st)
	}
	for i, r := range rs {
		got := r.packets.Load() - before[i]
		var cs TrunkConnectionStatus
		if i < len(st.Connections) {
			cs = st.Connections[i]
		}
		t.Logf("%s, 4 s across 40 ms RTT and 2 %% loss each way: %d packets at the reader, QUIC lost %d, largest gap %s, RTT %s",
			names[i], got, cs.PacketsLost, r.gaps().Round(time.Millisecond), cs.RTT.Round(time.Millisecond))
		if cs.State != trunkUp || cs.Reconnects != 0 {
			t.Errorf("connection %d: %+v", i, cs)
		}
		if got < 50 {
			t.Errorf("%s: %d packets in %s; camsim sends 25 frames a second", names[i], got, time.Since(start).Round(time.Millisecond))
		}
		// (Loose: a shared 2-core machine running -race stalls everything at
		// times; on an idle one the largest gap is 110-160 ms.)
		if g := r.gaps(); g > 3*time.Second {
			t.Errorf("%s: a %s stall at the reader", names[i], g)
		}
	}
	if n := len(nat.outsides()); n != 3 {
		t.Errorf("%d flows through the relay; want 3", n)
	}
	if nat.dropped.Load() == 0 {
		t.Error("the relay dropped nothing: the test did not test loss")
	}
}

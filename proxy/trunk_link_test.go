package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// edgeStreams lists, sorted, the cameras a core reads now on each of its
// connections to edge p (the edge's count of streams per connection).
func edgeStreams(p *Proxy) []int64 {
	e := p.trunkEdge
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []int64
	for _, peer := range e.peers {
		out = append(out, peer.streams.Load())
	}
	slices.Sort(out)
	return out
}

// multiCameraEdge is an edge with cameras cam1..camN behind a counting
// forwarder (the cameras' view of the sessions opened to them).
func multiCameraEdge(t *testing.T, n int) (names []string, fwd *countingForwarder, edge func(cfg TrunkEnd) Config) {
	t.Helper()
	for i := 1; i <= n; i++ {
		names = append(names, fmt.Sprintf("cam%d", i))
	}
	sim := startCamsim(t, names...)
	fwd = startForwarder(t, camsimHost(sim))
	return names, fwd, func(te TrunkEnd) Config {
		var cams []Camera
		for _, n := range names {
			cams = append(cams, Camera{Name: n, URL: MustParseSecretURL(fwd.url(n))})
		}
		cfg := testConfig(cams...)
		cfg.Trunk = te
		return cfg
	}
}

// startListeningEdge generates the edge's and the core's keys and starts
// the edge of ecfg, its trunk listening on loopback for the core.
func startListeningEdge(t *testing.T, ecfg func(TrunkEnd) Config) (edge *Proxy, edgeK, coreK trunkKeys) {
	t.Helper()
	edgeK, coreK = newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	elog, _ := newLog(t)
	edge = startProxy(t, ecfg(TrunkEnd{Listen: "127.0.0.1:0", Cert: edgeK.cert, Key: edgeK.key, Peers: []string{coreK.fp}}), elog)
	return edge, edgeK, coreK
}

// readAll opens a core reader of each camera and waits for packets.
func readAll(t *testing.T, core *Proxy, names []string) []*rtspReader {
	t.Helper()
	var rs []*rtspReader
	for _, n := range names {
		rs = append(rs, waitReader(t, "a core reader of "+n, 15*time.Second, readerURL(core, "site-a/"+n)))
	}
	for i, r := range rs {
		waitFor(t, "packets of "+names[i], 10*time.Second, func() bool { return r.packets.Load() > 10 })
	}
	return rs
}

// TestTrunkConnections: a trunk of 3 connections spreads 6 cameras 2 by
// 2 (each camera on its own connection, the catalogue on the first);
// each camera is still pulled once by the edge; /v1/trunks and the
// metrics show the connections; one connection killed stalls only its
// cameras, while the others keep streaming, and comes back.
func TestTrunkConnections(t *testing.T) {
	names, fwd, ecfg := multiCameraEdge(t, 6)
	edge, edgeK, coreK := startListeningEdge(t, ecfg)
	ccfg := coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, names...)
	ccfg.Trunks[0].Connections = 3
	ccfg.Timeouts.BackoffMin, ccfg.Timeouts.BackoffMax = 3*time.Second, 3*time.Second // (a killed connection stays down a while)
	clog, _ := newLog(t)
	core := startProxy(t, ccfg, clog)
	rs := readAll(t, core, names)

	tr := core.trunkList()[0]
	for i, n := range names {
		if l := tr.linkFor(n); l.i != i%3 {
			t.Errorf("camera %s is on connection %d; want %d (in turn)", n, l.i, i%3)
		}
	}
	waitFor(t, "the edge to serve 2 cameras on each of 3 connections", 5*time.Second, func() bool {
		return slices.Equal(edgeStreams(edge), []int64{2, 2, 2})
	})
	st := trunksStatus(t, core).Trunks[0]
	if st.ConnectionsUp != 3 || len(st.Connections) != 3 || st.Cameras != 6 {
		t.Errorf("core status: %+v", st)
	}
	for i, c := range st.Connections {
		if c.State != trunkUp || c.Cameras != 2 || c.BytesReceived == 0 {
			t.Errorf("connection %d: %+v", i, c)
		}
	}
	if est := trunksStatus(t, edge).Edge; len(est.Cores) != 1 || est.Cores[0].Connections != 3 || est.Cores[0].Cameras != 6 || len(est.Cores[0].CameraStats) != 6 {
		t.Errorf("edge status (one core over 3 connections): %+v", est)
	}
	if m := httpGet(t, fmt.Sprintf("http://%s/metrics", core.AdminAddr())); !strings.Contains(m, `cordon_trunk_connections_up{trunk="site-a"} 3`) {
		t.Error("core metrics: no cordon_trunk_connections_up 3")
	}
	if m := httpGet(t, fmt.Sprintf("http://%s/metrics", edge.AdminAddr())); !strings.Contains(m, `cordon_trunk_edge_connections{core="`+coreK.fp+`"} 3`) {
		t.Error("edge metrics: no cordon_trunk_edge_connections 3")
	}
	if n := fwd.accepted.Load(); n != 6 {
		t.Errorf("the cameras saw %d connections; want 6 (each pulled once)", n)
	}

	// Connection 1 is killed (cam2 and cam5): the others go on.
	killed := tr.link(1).current()
	killed.CloseWithError(0, "test: kill one connection")
	time.Sleep(500 * time.Millisecond)
	before := make([]int64, len(rs))
	for i, r := range rs {
		before[i] = r.packets.Load()
	}
	time.Sleep(1500 * time.Millisecond) // (the connection stays down for the 3 s backoff)
	for i, r := range rs {
		got := r.packets.Load() - before[i]
		switch onKilled := i%3 == 1; {
		case onKilled && got != 0:
			t.Errorf("%s (on the killed connection) got %d packets while it was down", names[i], got)
		case !onKilled && got < 10:
			t.Errorf("%s got %d packets while another connection was down", names[i], got)
		}
	}
	if st := core.TrunksStatus().Trunks[0]; st.ConnectionsUp != 2 || st.State != trunkUp || st.Connections[0].Reconnects != 0 {
		t.Errorf("with connection 1 down: %+v", st)
	}
	waitFor(t, "connection 1 back", 10*time.Second, func() bool {
		c := tr.link(1).current()
		return c != nil && c != killed
	})
	for i, r := range rs {
		if i%3 == 1 {
			b := r.packets.Load()
			waitFor(t, names[i]+" packets again", 10*time.Second, func() bool { return r.packets.Load() > b+10 })
		}
	}
	if n := fwd.accepted.Load(); n != 6 {
		t.Errorf("the cameras saw %d connections; want still 6", n)
	}
}

// TestTrunkConnectionsEdgeDials: an edge that dials opens as many
// connections as the core's trunk asks (a "*" trunk, by default one per
// camera of the catalogue), each naming its slot, and follows reloads of
// the core that change the number.
func TestTrunkConnectionsEdgeDials(t *testing.T) {
	names, fwd, ecfg := multiCameraEdge(t, 4)
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	ccfg, _ := edgeDialsCore(t, edgeK, coreK, "*")
	clog, _ := newLog(t)
	core := startProxy(t, ccfg, clog)
	elog, _ := newLog(t)
	edge := startProxy(t, ecfg(TrunkEnd{Dial: []string{core.TrunkAddr().String()}, Cert: edgeK.cert, Key: edgeK.key, Peers: []string{coreK.fp}}), elog)
	readAll(t, core, names)
	waitFor(t, "the edge to serve one camera on each of 4 connections", 5*time.Second, func() bool {
		return slices.Equal(edgeStreams(edge), []int64{1, 1, 1, 1})
	})

	// The core's trunk changes to 3 connections: the trunk restarts with
	// 3, the edge opens a third, the readers get packets again.
	ccfg.Trunks = slices.Clone(ccfg.Trunks) // (the proxy holds the old slice)
	ccfg.Trunks[0].Connections = 3
	if err := core.Reload(ccfg); err != nil {
		t.Fatal(err)
	}
	readAll(t, core, names)
	waitFor(t, "3 connections up after the reload", 10*time.Second, func() bool {
		st := core.TrunksStatus().Trunks[0]
		return st.ConnectionsUp == 3 && len(st.Connections) == 3
	})
	waitFor(t, "the edge to serve the cameras on 3 connections", 10*time.Second, func() bool {
		return slices.Equal(edgeStreams(edge), []int64{1, 1, 2})
	})
	// And down to 1: the edge stops its extra connections.
	ccfg.Trunks = slices.Clone(ccfg.Trunks)
	ccfg.Trunks[0].Connections = 1
	if err := core.Reload(ccfg); err != nil {
		t.Fatal(err)
	}
	readAll(t, core, names)
	waitFor(t, "the edge back to one connection", 10*time.Second, func() bool {
		return slices.Equal(edgeStreams(edge), []int64{4})
	})
	if n := fwd.accepted.Load(); n != 4 {
		t.Errorf("the cameras saw %d connections; want 4 (each pulled once, across the reloads)", n)
	}
}

// TestTrunkConnectionsReload: a core that dials changes a trunk's
// connections by a reload: the trunk restarts with the new number and
// the other trunk keeps its connection.
func TestTrunkConnectionsReload(t *testing.T) {
	names, _, ecfg := multiCameraEdge(t, 2)
	edge, edgeK, coreK := startListeningEdge(t, ecfg)
	ccfg := coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, names...)
	ccfg.Trunks[0].Connections = 1
	other := ccfg.Trunks[0]
	other.Name, other.Connections = "site-b", 0
	ccfg.Trunks = append(ccfg.Trunks, other)
	clog, _ := newLog(t)
	core := startProxy(t, ccfg, clog)
	readAll(t, core, names)
	b := trunkNamed(core, "site-b")
	if n := len(b.linkList()); n != 2 {
		t.Errorf("site-b has %d connections; want the default, one per camera: 2", n)
	}
	waitFor(t, "site-b up", 10*time.Second, func() bool { return b.link(0).current() != nil })
	bConn := b.link(0).current()

	ccfg.Trunks = slices.Clone(ccfg.Trunks) // (the proxy holds the old slice)
	ccfg.Trunks[0].Connections = 2
	if err := core.Reload(ccfg); err != nil {
		t.Fatal(err)
	}
	readAll(t, core, names)
	a := trunkNamed(core, "site-a")
	if n := len(a.linkList()); n != 2 {
		t.Fatalf("site-a has %d connections after the reload; want 2", n)
	}
	waitFor(t, "site-a's 2 connections up, one camera each", 10*time.Second, func() bool {
		st := a.link(0).status()
		return slices.ContainsFunc(core.TrunksStatus().Trunks, func(s TrunkStatus) bool { return s.Name == "site-a" && s.ConnectionsUp == 2 }) &&
			st.Cameras == 1 && a.link(1).status().Cameras == 1
	})
	if trunkNamed(core, "site-b") != b || b.link(0).current() != bConn {
		t.Error("site-b was disturbed by site-a's reload")
	}
}

func trunkNamed(p *Proxy, name string) *trunkCore {
	for _, t := range p.trunkList() {
		if t.cfg.Name == name {
			return t
		}
	}
	return nil
}

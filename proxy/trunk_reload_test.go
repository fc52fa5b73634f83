package proxy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestTrunkReloadCore: a reload adds and removes trunks; the trunk it
// does not change keeps its connection, its camera and its reader.
func TestTrunkReloadCore(t *testing.T) {
	sim := startCamsim(t, "cam1")
	aK, bK, coreK := newTrunkKeys(t, "edge-a"), newTrunkKeys(t, "edge-b"), newTrunkKeys(t, "core")
	elog, _ := newLog(t)
	edgeA := startProxy(t, edgeConfig(sim.URL("cam1"), "127.0.0.1:0", aK, coreK.fp), elog)
	edgeB := startProxy(t, edgeConfig(sim.URL("cam1"), "127.0.0.1:0", bK, coreK.fp), elog)
	cfgA := coreConfig(edgeA.TrunkAddr().String(), coreK, aK.fp, "cam1")
	siteB := Trunk{Name: "site-b", Address: edgeB.TrunkAddr().String(), Fingerprint: bK.fp, Cameras: []string{"cam1"}}
	cfgAB := cfgA
	cfgAB.Trunks = append([]Trunk{cfgA.Trunks[0]}, siteB)
	clog, cbuf := newLog(t)
	core := startProxy(t, cfgA, clog)
	ra := waitReader(t, "a reader of site-a/cam1", 10*time.Second, readerURL(core, "site-a/cam1"))
	trunkA, connA := core.trunkList()[0], coreConn(core)

	// Added: site-b starts, site-a is untouched.
	if err := core.Reload(cfgAB); err != nil {
		t.Fatal(err)
	}
	rb := waitReader(t, "a reader of the added site-b/cam1", 10*time.Second, readerURL(core, "site-b/cam1"))
	waitFor(t, "packets at both readers", 5*time.Second, func() bool { return ra.packets.Load() > 20 && rb.packets.Load() > 20 })

	// Removed: site-b's camera and reader go, site-a goes on.
	if err := core.Reload(cfgA); err != nil {
		t.Fatal(err)
	}
	if core.camera("site-b/cam1") != nil {
		t.Error("site-b/cam1 is still there after its trunk was removed")
	}
	waitFor(t, "edge b to see the core go", 5*time.Second, func() bool { return len(edgeB.TrunksStatus().Edge.Cores) == 0 })
	before := ra.packets.Load()
	waitFor(t, "packets at site-a's reader after the reloads", 5*time.Second, func() bool { return ra.packets.Load() > before+20 })
	if l := core.trunkList(); len(l) != 1 || l[0] != trunkA || coreConn(core) != connA || trunkA.reconnects.Load() != 0 {
		t.Errorf("site-a was disturbed by the reloads (reconnects %d)", trunkA.reconnects.Load())
	}
	if !strings.Contains(cbuf.String(), `msg="trunks reloaded" component=proxy added=0 removed=1`) {
		t.Error("the log does not say that a trunk was removed")
	}

	// A key pair change needs a restart: the trunk is kept as it is and
	// the log says so.
	other := newTrunkKeys(t, "core-2")
	cfgK := cfgA
	cfgK.Trunk.Cert, cfgK.Trunk.Key = other.cert, other.key
	if err := core.Reload(cfgK); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cbuf.String(), "the trunk settings apply after a restart") {
		t.Error("the log does not say that the key pair change needs a restart")
	}
	if l := core.trunkList(); len(l) != 1 || l[0] != trunkA || coreConn(core) != connA {
		t.Error("site-a was disturbed by a restart-only change")
	}
}

// TestTrunkReloadEdge: an edge's reload that removes a core from
// trunk.peers disconnects that core alone; one that adds a core to
// trunk.dial connects to it; the other core is untouched.
func TestTrunkReloadEdge(t *testing.T) {
	sim := startCamsim(t, "cam1")
	edgeK, aK, bK, cK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core-a"), newTrunkKeys(t, "core-b"), newTrunkKeys(t, "core-c")
	ecfg := edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, aK.fp)
	ecfg.Trunk.Peers = append(ecfg.Trunk.Peers, bK.fp, cK.fp)
	elog, ebuf := newLog(t)
	edge := startProxy(t, ecfg, elog)
	addr := edge.TrunkAddr().String()
	alog, _ := newLog(t)
	coreA := startProxy(t, coreConfig(addr, aK, edgeK.fp, "cam1"), alog)
	blog, _ := newLog(t)
	coreB := startProxy(t, coreConfig(addr, bK, edgeK.fp, "cam1"), blog)
	ra := waitReader(t, "a reader of core a", 10*time.Second, readerURL(coreA, "site-a/cam1"))
	waitReader(t, "a reader of core b", 10*time.Second, readerURL(coreB, "site-a/cam1"))
	connA := coreConn(coreA)

	// Core c waits for the edge to dial it.
	ccfg, _ := edgeDialsCore(t, edgeK, cK, "cam1")
	clog, _ := newLog(t)
	coreC := startProxy(t, ccfg, clog)

	// Core b leaves trunk.peers, core c joins trunk.dial.
	ecfg2 := ecfg
	ecfg2.Trunk.Peers = []string{aK.fp, cK.fp}
	ecfg2.Trunk.Dial = []string{coreC.TrunkAddr().String()}
	if err := edge.Reload(ecfg2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "core b disconnected and refused", 10*time.Second, func() bool {
		return coreB.TrunksStatus().Trunks[0].State != trunkUp && strings.Contains(ebuf.String(), bK.fp) &&
			strings.Contains(ebuf.String(), "certificate not pinned")
	})
	if !strings.Contains(ebuf.String(), "session ticket of a peer no longer trusted") {
		t.Error("core b's session ticket was not refused (it could resume past the reload)")
	}
	rc := waitReader(t, "a reader of core c (dialed after the reload)", 10*time.Second, readerURL(coreC, "site-a/cam1"))
	before := ra.packets.Load()
	waitFor(t, "packets at cores a and c", 5*time.Second, func() bool { return ra.packets.Load() > before+20 && rc.packets.Load() > 20 })
	if coreConn(coreA) != connA || coreA.trunkList()[0].reconnects.Load() != 0 {
		t.Error("core a was disturbed by the edge's reload")
	}

	// trunk.dial emptied: core c is let go.
	ecfg3 := ecfg2
	ecfg3.Trunk.Dial = nil
	if err := edge.Reload(ecfg3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "core c to lose the edge", 10*time.Second, func() bool { return coreC.TrunksStatus().Trunks[0].State != trunkUp })
}

// TestTrunkReloadMedia: a reload that changes a trunk's transport,
// max_bitrate, overrides or always_on restarts that trunk with the new
// settings, seen on the wire (the camera's transport, the cap the edge
// applies, a camera pulled with no reader); a changed trunk.max_bitrate
// on the edge needs a restart, and the log says so.
func TestTrunkReloadMedia(t *testing.T) {
	sim := startCamsim(t, "cam1")
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	ecfg := edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, coreK.fp)
	elog, ebuf := newLog(t)
	edge := startProxy(t, ecfg, elog)
	cfg := coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, "cam1")
	clog, cbuf := newLog(t)
	core := startProxy(t, cfg, clog)
	waitReader(t, "a reader of site-a/cam1", 10*time.Second, readerURL(core, "site-a/cam1"))
	var reloaded time.Time // the edge's core connected after it: the restarted trunk
	edgeCore := func() (TrunkPeerStatus, bool) {
		cores := edge.TrunksStatus().Edge.Cores
		if len(cores) != 1 || !cores[0].Since.After(reloaded) {
			return TrunkPeerStatus{}, false
		}
		return cores[0], true
	}
	reload := func(what string, tc Trunk) {
		t.Helper()
		c := cfg
		c.Trunks = []Trunk{tc}
		old := core.trunkList()[0]
		reloaded = time.Now()
		if err := core.Reload(c); err != nil {
			t.Fatal(err)
		}
		if l := core.trunkList(); len(l) != 1 || l[0] == old || !reflect.DeepEqual(l[0].cfg, tc) {
			t.Fatalf("%s: the trunk was not restarted with the new settings", what)
		}
	}

	// Transport and max_bitrate: the camera crosses in datagrams, under
	// the new cap.
	tc := cfg.Trunks[0]
	tc.Transport, tc.MaxBitrate = TrunkDatagram, 100_000_000
	reload("transport and max_bitrate", tc)
	waitReader(t, "a reader of site-a/cam1 after the reload", 10*time.Second, readerURL(core, "site-a/cam1"))
	waitFor(t, "the edge to send cam1 in datagrams under a 100M cap", 10*time.Second, func() bool {
		c, ok := edgeCore()
		return ok && c.MaxBitrate == 100_000_000 && len(c.CameraStats) == 1 && c.CameraStats[0].Transport == TrunkDatagram
	})

	// Overrides, then the trunk's always_on: cam1 is pulled with no
	// reader (a trunk restart closes the readers it had).
	on := true
	tc.Overrides = map[string]TrunkCamera{"cam1": {AlwaysOn: &on}}
	reload("overrides", tc)
	waitFor(t, "the edge to serve cam1 with no core reader (overrides)", 10*time.Second, func() bool {
		c, ok := edgeCore()
		return ok && c.Cameras == 1 && noReaders(core, "site-a/cam1")
	})
	tc.Overrides, tc.AlwaysOn = nil, true
	reload("always_on", tc)
	waitFor(t, "the edge to serve cam1 with no core reader (always_on)", 10*time.Second, func() bool {
		c, ok := edgeCore()
		return ok && c.Cameras == 1
	})
	if n := strings.Count(cbuf.String(), `msg="trunks reloaded" component=proxy added=0 removed=0 changed=1`); n != 3 {
		t.Errorf("the log says %d times that a trunk changed; want 3", n)
	}

	// The edge's own cap: kept until a restart, and the log says so.
	ecfg2 := ecfg
	ecfg2.Trunk.MaxBitrate = 1_000_000
	if err := edge.Reload(ecfg2); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ebuf.String(), "trunk.max_bitrate changed") || !strings.Contains(ebuf.String(), "after a restart") {
		t.Error("the edge's log does not say that its trunk.max_bitrate change needs a restart")
	}
	edge.mu.Lock()
	kept := edge.cfg.Trunk.MaxBitrate
	edge.mu.Unlock()
	if kept != 0 {
		t.Errorf("the edge's configuration has trunk.max_bitrate %s; the running edge applies none until a restart", kept)
	}
}

// noReaders reports whether camera name of p has no reader attached.
func noReaders(p *Proxy, name string) bool {
	for _, s := range p.Status() {
		if s.Name == name {
			return len(s.Readers) == 0
		}
	}
	return true
}

package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
)

// startEdge starts an edge proxy with cfg; hook, when set, loses the
// datagrams it returns true for.
func startEdge(t *testing.T, cfg Config, log *slog.Logger, loss func([]byte) bool) *Proxy {
	t.Helper()
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p.testDatagramLoss = loss
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestTrunkDatagram: a camera carried in datagrams reaches the core's
// reader from a keyframe; a lost packet is counted at the core and makes
// its readers skip to the next keyframe; /v1/trunks and the metrics show
// the transport and the counts at both ends.
func TestTrunkDatagram(t *testing.T) {
	sim := startCamsim(t, "cam1")
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	elog, _ := newLog(t)
	// Lose every fragment of one packet in 150.
	edge := startEdge(t, edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, coreK.fp), elog, func(b []byte) bool {
		return binary.BigEndian.Uint32(b[4:])%150 == 149
	})
	clog, _ := newLog(t)
	ccfg := coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, "cam1")
	ccfg.Trunks[0].Transport = TrunkDatagram
	ccfg.Trunks[0].FEC = TrunkFEC{Off: true} // (every loss a keyframe wait; TestTrunkFECLossyLink has FEC)
	core := startProxy(t, ccfg, clog)

	r := waitReader(t, "a core reader of a datagram camera", 10*time.Second, readerURL(core, "site-a/cam1"))
	waitFor(t, "packets at the core reader", 5*time.Second, func() bool { return r.packets.Load() > 20 })
	if first := firstPacket(r); !startsWithSPS(first) {
		t.Errorf("the core reader's first packet is not a keyframe's SPS: % x", first[:min(8, len(first))])
	}
	var cs TrunkCameraStatus
	waitFor(t, "a lost datagram counted at the core", 15*time.Second, func() bool {
		st := trunksStatus(t, core).Trunks[0].CameraStats
		if len(st) == 1 {
			cs = st[0]
		}
		return cs.Lost > 0 && cs.KeyWaits > 0
	})
	if cs.Transport != TrunkDatagram || cs.Datagrams == 0 || cs.Packets == 0 || cs.Bytes == 0 || cs.Malformed != 0 {
		t.Errorf("core camera status: %+v", cs)
	}
	t.Logf("core: %+v", cs)
	waitFor(t, "the core reader to skip packets up to the next keyframe", 5*time.Second, func() bool {
		rs := core.Status()[0].Readers
		return len(rs) == 1 && rs[0].DroppedPackets > 0
	})
	es := trunksStatus(t, edge).Edge
	if es == nil || len(es.Cores) != 1 || len(es.Cores[0].CameraStats) != 1 {
		t.Fatalf("edge /v1/trunks: %+v", es)
	}
	if ec := es.Cores[0].CameraStats[0]; ec.Transport != TrunkDatagram || ec.Datagrams == 0 || ec.Active != 1 || ec.Packets == 0 {
		t.Errorf("edge camera status: %+v", ec)
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", core.AdminAddr()))
	for _, want := range []string{`cordon_trunk_datagram_packets_lost_total{camera="cam1",trunk="site-a"}`, `cordon_trunk_camera_bytes_total{camera="cam1",transport="datagram",trunk="site-a"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("core metrics lack %s", want)
		}
	}
	em := httpGet(t, fmt.Sprintf("http://%s/metrics", edge.AdminAddr()))
	if want := `cordon_trunk_edge_datagrams_total{camera="cam1",core="` + coreK.fp + `"}`; !strings.Contains(em, want) {
		t.Errorf("edge metrics lack %s", want)
	}
}

// TestTrunkCap: a core's max_bitrate below the camera's rate makes the
// edge drop whole GOPs (the reader still starts each at a keyframe), logs
// the episode once, and shows it in /v1/trunks and the metrics.
func TestTrunkCap(t *testing.T) {
	sim := startCamsim(t, "cam1") // about 0.5 Mbit/s
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	elog, ebuf := newLog(t)
	edge := startProxy(t, edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, coreK.fp), elog)
	clog, _ := newLog(t)
	ccfg := coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, "cam1")
	ccfg.Trunks[0].MaxBitrate = 150_000
	core := startProxy(t, ccfg, clog)
	r := waitReader(t, "a core reader", 10*time.Second, readerURL(core, "site-a/cam1"))
	var pc TrunkPeerStatus
	waitFor(t, "GOPs dropped for the cap", 15*time.Second, func() bool {
		if es := trunksStatus(t, edge).Edge; es != nil && len(es.Cores) == 1 {
			pc = es.Cores[0]
		}
		return len(pc.CameraStats) == 1 && pc.CameraStats[0].GOPsCap > 1
	})
	if pc.MaxBitrate != 150_000 || pc.CapEpisodes == 0 || !pc.CapOver {
		t.Errorf("edge core status: %+v", pc)
	}
	if n := strings.Count(ebuf.String(), "trunk over its max_bitrate"); n != 1 {
		t.Errorf("the episode was logged %d times, want once", n)
	}
	if r.packets.Load() == 0 || !startsWithSPS(firstPacket(r)) {
		t.Errorf("the reader got %d packets, first a keyframe: %v", r.packets.Load(), r.packets.Load() > 0 && startsWithSPS(firstPacket(r)))
	}
	em := httpGet(t, fmt.Sprintf("http://%s/metrics", edge.AdminAddr()))
	for _, want := range []string{
		`cordon_trunk_edge_gops_dropped_total{camera="cam1",core="` + coreK.fp + `",reason="cap"}`,
		`cordon_trunk_edge_cap_over{core="` + coreK.fp + `"} 1`,
		`cordon_trunk_edge_max_bitrate{core="` + coreK.fp + `"} 150000`,
	} {
		if !strings.Contains(em, want) {
			t.Errorf("edge metrics lack %s", want)
		}
	}
}

// TestTrunkLimiter: the token bucket refuses what does not fit, a skipped
// camera resumes only with half a bucket, and an episode is logged once
// when it starts and once when it ends.
func TestTrunkLimiter(t *testing.T) {
	var buf bytes.Buffer
	l := newTrunkLimiter(800_000, slog.New(slog.NewTextHandler(&buf, nil))) // 100,000 B/s, 100,000 B burst
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	step := func(d time.Duration) { now = now.Add(d) }
	if !l.admit("a", 60_000, false) {
		t.Fatal("60 kB of a full 100 kB bucket refused")
	}
	if l.admit("b", 60_000, false) || l.admit("a", 1000, true) {
		t.Fatal("over the bucket admitted")
	}
	step(50 * time.Millisecond) // 45,000 B: a packet fits, a new GOP does not
	if !l.admit("c", 1000, false) {
		t.Error("a packet inside a GOP refused with room for it")
	}
	if l.admit("b", 1000, true) {
		t.Error("a skipped camera resumed with less than half a bucket")
	}
	step(100 * time.Millisecond)
	if !l.admit("b", 1000, true) {
		t.Error("a skipped camera did not resume with half a bucket")
	}
	if !l.overNow() || l.episodeCount() != 1 {
		t.Errorf("over %v, episodes %d", l.overNow(), l.episodeCount())
	}
	step(trunkCapQuiet)
	if !l.admit("a", 1000, false) || l.overNow() {
		t.Error("still over after a quiet period")
	}
	log := buf.String()
	if strings.Count(log, "trunk over its max_bitrate") != 1 || !strings.Contains(log, "trunk back under its max_bitrate") ||
		!strings.Contains(log, "gops_dropped=3") || !strings.Contains(log, "cameras=\"[b a]\"") {
		t.Errorf("log:\n%s", log)
	}
	if newTrunkLimiter(0, nil) != nil || !(*trunkLimiter)(nil).admit("x", 1<<30, true) {
		t.Error("no cap refused a packet")
	}
}

// TestTrunkOnDemand: with a core reader nowhere, the camera sees no
// connection (the core does not pull from the edge, the on-demand edge
// camera does not pull from the camera); a core reader starts the chain
// within a bound, and when it leaves the camera connection closes again.
func TestTrunkOnDemand(t *testing.T) {
	sim := startCamsim(t, "cam1")
	fwd := startForwarder(t, camsimHost(sim))
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	elog, _ := newLog(t)
	ecfg := edgeConfig("rtsp://"+fwd.ln.Addr().String()+"/cam1", "127.0.0.1:0", edgeK, coreK.fp)
	ecfg.Cameras[0].OnDemand = true
	edge := startProxy(t, ecfg, elog)
	clog, _ := newLog(t)
	core := startProxy(t, coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, "*"), clog)
	waitFor(t, "the trunk up with the edge's catalogue", 5*time.Second, func() bool {
		st := core.TrunksStatus().Trunks[0]
		return st.State == trunkUp && len(st.EdgeCameras) == 1 && core.camera("site-a/cam1") != nil
	})
	time.Sleep(time.Second) // (what would have started has had time to)
	if n := fwd.accepted.Load(); n != 0 {
		t.Fatalf("the camera saw %d connections with no core reader", n)
	}
	if s := cameraState(core, "site-a/cam1"); s != stateIdle {
		t.Errorf("core camera %s with no reader", s)
	}
	if es := edge.TrunksStatus().Edge; len(es.Cores) != 1 || es.Cores[0].Cameras != 0 {
		t.Errorf("edge: %+v; want one core reading nothing", es)
	}

	const bound = 5 * time.Second
	start := time.Now()
	r, err := dialReader(t, readerURL(core, "site-a/cam1"), gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "packets at the first core reader", bound, func() bool { return r.packets.Load() > 0 })
	t.Logf("first packet %s after the reader connected (camera, edge and trunk camera all idle)", time.Since(start).Round(time.Millisecond))
	if n := fwd.accepted.Load(); n != 1 {
		t.Errorf("the camera saw %d connections; want 1", n)
	}
	r.cl.Close()
	// The core's camera idles after on_demand_close, the edge's reader
	// leaves, and the edge's camera idles after its own.
	waitFor(t, "the edge camera idle again", 10*time.Second, func() bool { return edge.Status()[0].State == stateIdle })
	if s := cameraState(core, "site-a/cam1"); s != stateIdle {
		t.Errorf("core camera %s after its reader left", s)
	}
}

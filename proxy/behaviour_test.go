package proxy

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/cordon-vms/cordon/proxy/camsim"
	"github.com/cordon-vms/cordon/proxy/rebuild"
)

func cameraState(p *Proxy, name string) string {
	for _, s := range p.Status() {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}

// waitAllUp waits (up to within) until every camera of p is up.
func waitAllUp(t *testing.T, p *Proxy, within time.Duration) {
	t.Helper()
	waitFor(t, "every camera up", within, func() bool {
		for _, s := range p.Status() {
			if s.State != stateUp {
				return false
			}
		}
		return true
	})
}

// TestReloadKeepsUntouchedCameras adds and removes cameras while a reader of
// an untouched camera keeps playing without a gap.
func TestReloadKeepsUntouchedCameras(t *testing.T) {
	sim := startCamsim(t, "c1", "c2", "c3")
	log, _ := newLog(t)
	camA := Camera{Name: "a", URL: MustParseSecretURL(sim.URL("c1"))}
	camC := Camera{Name: "c", URL: MustParseSecretURL(sim.URL("c3"))}
	cfg := testConfig(camA, camC)
	p := startProxy(t, cfg, log)

	var ra, rc *rtspReader
	ra = waitReader(t, "readers", 10*time.Second, readerURL(p, "a"))
	rc = waitReader(t, "reader c", 10*time.Second, readerURL(p, "c"))
	waitFor(t, "packets", 5*time.Second, func() bool { return ra.packets.Load() > 25 && rc.packets.Load() > 25 })

	cfg2 := testConfig(camA, Camera{Name: "b", URL: MustParseSecretURL(sim.URL("c2"))})
	start := time.Now()
	if err := p.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reader of the removed camera closed", 5*time.Second, func() bool { return rc.cl.Wait() != nil })
	rb := waitReader(t, "added camera readable", 10*time.Second, readerURL(p, "b"))
	waitFor(t, "added camera packets", 5*time.Second, func() bool { return rb.packets.Load() > 10 })
	time.Sleep(max(0, time.Second-time.Since(start)))

	// The untouched camera was not restarted and its reader not closed: an
	// interruption would show there first. A gap bound catches a stall
	// without a restart; it allows for a loaded 2-core machine running the
	// race detector (scheduling pauses of over a second were seen there),
	// well under what a restart takes (teardown, backoff, RTSP handshake).
	for _, st := range p.Status() {
		if st.Name == "a" && (st.Reconnects != 0 || st.Since.After(start)) {
			t.Errorf("the untouched camera was restarted by the reload: %+v", st)
		}
	}
	before := ra.packets.Load()
	waitFor(t, "packets of the untouched camera after the reload", 5*time.Second, func() bool { return ra.packets.Load() > before+10 })
	if g := ra.gaps(); g > 2*time.Second {
		t.Errorf("reader of the untouched camera saw a %v gap", g)
	}
	if res, err := rawRequest(p.RTSPAddr().String(), base.Describe, readerURL(p, "c"), nil); err != nil || res.StatusCode != base.StatusNotFound {
		t.Errorf("removed camera: %v %v, want 404", res, err)
	}
	if st := p.Status(); len(st) != 2 || st[0].Name != "a" || st[1].Name != "b" || len(st[0].Readers) != 1 {
		t.Errorf("status after reload: %+v", st)
	}
}

// TestOnDemand pulls an on-demand camera only while it has readers.
func TestOnDemand(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	sim := startCamsim(t, "c1")
	log, _ := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "od", URL: MustParseSecretURL(sim.URL("c1")), OnDemand: true}), log)
	time.Sleep(300 * time.Millisecond)
	if s := cameraState(p, "od"); s != stateIdle {
		t.Fatalf("on-demand camera without readers is %s, want idle", s)
	}
	r, err := dialReader(t, readerURL(p, "od"), gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "packets", 5*time.Second, func() bool { return r.packets.Load() > 10 })
	if s := cameraState(p, "od"); s != stateUp {
		t.Errorf("with a reader: %s, want up", s)
	}
	r.cl.Close()
	// OnDemandClose is 500 ms in testConfig.
	waitFor(t, "camera idle again", 5*time.Second, func() bool { return cameraState(p, "od") == stateIdle })
}

// TestMediaChanged restarts the camera with another codec: readers are
// closed (with a logged reason) instead of receiving H.265 as H.264.
func TestMediaChanged(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	gst := startGstCamera(t, 0, "cam", "", "", "h264")
	port := gst.port
	log, lb := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "m", URL: MustParseSecretURL(gst.url("", "", "cam"))}), log)
	r := waitReader(t, "reader", 10*time.Second, readerURL(p, "m"))
	waitFor(t, "packets", 5*time.Second, func() bool { return r.packets.Load() > 5 })
	gst.kill()
	startGstCamera(t, port, "cam", "", "", "h265")
	waitFor(t, "reader closed", 15*time.Second, func() bool {
		return strings.Contains(lb.String(), "camera media changed after reconnecting; closing its readers")
	})
	done := make(chan error, 1)
	go func() { done <- r.cl.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reader still attached after the camera's media changed")
	}
	// New readers get the new media.
	waitFor(t, "new reader", 10*time.Second, func() bool {
		r2, err := dialReader(t, readerURL(p, "m"), gortsplib.ProtocolTCP)
		if err != nil {
			return false
		}
		_, h265 := r2.desc.Medias[0].Formats[0].(*format.H265)
		return h265
	})
}

// TestSlowReader: a reader that stops reading never stalls the camera or the
// other readers; its packets are skipped up to keyframes and counted.
func TestSlowReader(t *testing.T) {
	for _, perPacket := range []bool{false, true} {
		t.Run(fmt.Sprintf("per_packet_writes=%v", perPacket), func(t *testing.T) { testSlowReader(t, perPacket) })
	}
}

func testSlowReader(t *testing.T, perPacket bool) {
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "big", FPS: 25, Bitrate: 16_000_000}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	log, _ := newLog(t)
	// passthrough: rebuild would drop camsim's filler NAL units, which make the bitrate.
	cfg := testConfig(Camera{Name: "big", URL: MustParseSecretURL(sim.URL("big")), Mode: Mode(rebuild.ModePassthrough)})
	cfg.WriteQueueSize = 512 // a few frames at 16 Mbit/s
	cfg.Limits.ReaderQueueBytes = 512 * 1500
	cfg.PerPacketWrites = perPacket
	cfg.Timeouts.Reader = 30 * time.Second
	p := startProxy(t, cfg, log)

	fast := waitReader(t, "fast reader", 10*time.Second, readerURL(p, "big"))

	// The slow reader plays over TCP, then never reads again.
	nc := playRawTCP(t, p, "big")
	fastBefore := fast.packets.Load()
	waitFor(t, "slow reader dropping", 20*time.Second, func() bool {
		for _, rs := range p.Status()[0].Readers {
			if rs.Remote == nc.LocalAddr().String() && rs.DroppedPackets > 100 {
				return true
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond)
	if fast.packets.Load() <= fastBefore+50 {
		t.Errorf("fast reader stalled: %d packets while the slow one filled up", fast.packets.Load()-fastBefore)
	}
	// A camera held up by the slow reader would stall every reader until
	// the write timeout (30 s); the bound allows for scheduling pauses on a
	// loaded machine under the race detector (over a second was seen).
	if g := fast.gaps(); g > 3*time.Second {
		t.Errorf("fast reader saw a %v gap", g)
	}
	for _, rs := range p.Status()[0].Readers {
		if rs.Remote != nc.LocalAddr().String() && rs.DroppedPackets != 0 {
			t.Errorf("fast reader lost %d packets because of the slow one", rs.DroppedPackets)
		}
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	if !strings.Contains(metrics, "cordon_reader_dropped_packets_total") {
		t.Error("/metrics lacks cordon_reader_dropped_packets_total")
	}
}

// playRawTCP plays camera name over interleaved TCP with a 4 KiB receive
// buffer, by hand, and returns the connection for the caller to (not) read;
// it is closed when the test ends.
func playRawTCP(t *testing.T, p *Proxy, name string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", p.RTSPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.(*net.TCPConn).SetReadBuffer(4096)
	br := bufio.NewReader(nc)
	session := ""
	for i, req := range []struct {
		method base.Method
		url    string
		h      base.Header
	}{
		{base.Describe, readerURL(p, name), nil},
		{base.Setup, readerURL(p, name) + "/trackID=0", base.Header{"Transport": base.HeaderValue{"RTP/AVP/TCP;unicast;interleaved=0-1"}}},
		{base.Play, readerURL(p, name), nil},
	} {
		u, _ := base.ParseURL(req.url)
		h := base.Header{"CSeq": base.HeaderValue{fmt.Sprint(i + 1)}}
		for k, v := range req.h {
			h[k] = v
		}
		if session != "" {
			h["Session"] = base.HeaderValue{session}
		}
		b, _ := (&base.Request{Method: req.method, URL: u, Header: h}).Marshal()
		nc.Write(b)
		var res base.Response
		if err := res.Unmarshal(br); err != nil || res.StatusCode != base.StatusOK {
			t.Fatalf("%s: %v %v", req.method, res.StatusCode, err)
		}
		if s, ok := res.Header["Session"]; ok {
			session, _, _ = strings.Cut(s[0], ";")
		}
	}
	return nc
}

// TestReloadReaders replaces the reader accounts: a removed account can no
// longer log in, while its attached session keeps playing.
func TestReloadReaders(t *testing.T) {
	sim := startCamsim(t, "c1")
	log, _ := newLog(t)
	cam := Camera{Name: "a", URL: MustParseSecretURL(sim.URL("c1"))}
	cfg := testConfig(cam)
	cfg.Readers, cfg.AllowAnonymous = []Reader{{User: "old", Password: "pw", Cameras: []string{"*"}}}, false
	p := startProxy(t, cfg, log)
	url := "rtsp://old:pw@" + p.RTSPAddr().String() + "/a"
	r := waitReader(t, "reader", 10*time.Second, url)
	cfg.Readers = []Reader{{User: "new", Password: "pw2", Cameras: []string{"a"}}}
	if err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := dialReader(t, url, gortsplib.ProtocolTCP); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("removed account: %v, want 401", err)
	}
	if _, err := dialReader(t, "rtsp://new:pw2@"+p.RTSPAddr().String()+"/a", gortsplib.ProtocolTCP); err != nil {
		t.Errorf("added account: %v", err)
	}
	n := r.packets.Load()
	waitFor(t, "attached reader still playing", 5*time.Second, func() bool { return r.packets.Load() > n+10 })
}

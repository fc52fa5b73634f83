package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/config"
	"github.com/cordon-vms/cordon/proxy"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// TestTrunkConfigs: the configurations bench trunk writes for its edges
// and core are valid proxy configurations, for every system, on loopback
// and in namespaces, and the core's paths are those the readers use.
func TestTrunkConfigs(t *testing.T) {
	dir := t.TempDir()
	var keys trunkKeys
	for _, d := range []struct {
		dir *string
		fp  *string
		sub string
	}{{&keys.edgeDir, &keys.edgeFP, "edge"}, {&keys.coreDir, &keys.coreFP, "core"}} {
		*d.dir = filepath.Join(dir, d.sub)
		if err := os.Mkdir(*d.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		fp, err := proxy.GenerateTrunkKey(*d.dir, d.sub)
		if err != nil {
			t.Fatal(err)
		}
		*d.fp = fp
	}
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "e1-cam1"}, {Name: "e1-cam2"}, {Name: "e2-cam1"}, {Name: "e2-cam2"}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	cams := []trunkCam{{1, "cam1"}, {1, "cam2"}, {2, "cam1"}, {2, "cam2"}}
	for _, nw := range []*trunkNet{
		{cameraHost: "127.0.0.1", edgeWAN: "127.0.0.1", coreHost: "127.0.0.1"},
		{edgeNS: "e", coreNS: "c", cameraHost: "10.213.1.1", edgeWAN: "10.213.3.1", coreHost: "10.213.2.2"},
	} {
		ports, err := nw.ports(8)
		if err != nil {
			t.Fatal(err)
		}
		for _, sys := range []string{TrunkRTSP, TrunkStream, TrunkDatagram} {
			check := func(what string, b []byte, wantPaths ...string) {
				t.Helper()
				var c proxy.Config
				if err := config.Decode(what, b, &c); err != nil {
					t.Fatalf("%s %s:\n%s\n%v", sys, what, b, err)
				}
				if err := c.Validate(); err != nil {
					t.Fatalf("%s %s:\n%s\n%v", sys, what, b, err)
				}
				for _, p := range wantPaths {
					if !strings.Contains(string(b), p) {
						t.Errorf("%s %s lacks %q:\n%s", sys, what, p, b)
					}
				}
			}
			check("edge1.yml", trunkEdgeConfig(nw, ports[0], ports[1], ports[2], sys != TrunkRTSP, keys, sim, cams, 1), "name: cam1", sim.URL("e1-cam2"))
			core := trunkCoreConfig(nw, nw.coreHost+":1", ports[6], ports, sys, keys, cams, 2)
			if sys == TrunkRTSP {
				check("core.yml", core, "name: e2-cam1", "transport: tcp")
				if p := trunkReaderPath(sys, cams[2]); p != "e2-cam1" {
					t.Errorf("reader path %q", p)
				}
			} else {
				check("core.yml", core, "name: e2\n", "transport: "+sys, "always_on: true")
				if p := trunkReaderPath(sys, cams[2]); p != "e2/cam1" {
					t.Errorf("reader path %q", p)
				}
			}
		}
	}
}

// TestFrameGaps: frames are counted once per timestamp while the window
// is open, and a gap over the stall threshold is one stall.
func TestFrameGaps(t *testing.T) {
	g := &frameGaps{stallGap: 50 * time.Millisecond}
	g.packet(1, false)
	g.packet(1, true) // same frame
	g.packet(2, true)
	g.packet(2, true)
	time.Sleep(80 * time.Millisecond)
	g.packet(3, true) // after a stall
	g.packet(4, true)
	if f, s := g.result(); f != 3 || s != 1 {
		t.Errorf("frames %d, stalls %d; want 3 and 1", f, s)
	}
}

// TestTrunkOptions: bad systems and netem with several edges are refused.
func TestTrunkOptions(t *testing.T) {
	for _, o := range []TrunkOptions{{Systems: []string{"tcp"}}, {Netem: "delay 1ms", Edges: 2}} {
		if err := o.setDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	o := TrunkOptions{}
	if err := o.setDefaults(); err != nil || len(o.Systems) != 3 || o.CamerasPerEdge != 100 || o.StallGap != 500*time.Millisecond {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

// TestParseNetem: the netem settings the emulated link understands.
func TestParseNetem(t *testing.T) {
	for in, want := range map[string]impairment{
		"delay 20ms loss 1%": {20 * time.Millisecond, 0.01},
		"loss 0.5%":          {0, 0.005},
		"delay 5ms":          {5 * time.Millisecond, 0},
		"":                   {},
	} {
		if got, err := parseNetem(in); err != nil || got != want {
			t.Errorf("parseNetem(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"delay", "delay 20", "loss 101%", "rate 1mbit", "delay 20ms 5ms", "loss x%"} {
		if _, err := parseNetem(in); err == nil {
			t.Errorf("parseNetem(%q) accepted", in)
		}
	}
}

// TestTrunkSystem: system names with a number of QUIC connections.
func TestTrunkSystem(t *testing.T) {
	for _, c := range []struct {
		in        string
		transport string
		conns     int
		variant   string
		bad       bool
	}{
		{in: "rtsp", transport: "rtsp"}, {in: "stream", transport: "stream"}, {in: "stream:4", transport: "stream", conns: 4},
		{in: "datagram:128", transport: "datagram", conns: 128}, {in: "stream:0", bad: true}, {in: "stream:129", bad: true},
		{in: "rtsp:2", bad: true}, {in: "quic", bad: true}, {in: "stream:x", bad: true},
		{in: "stream:4+alt", transport: "stream", conns: 4, variant: "alt"}, {in: "stream+nogso", transport: "stream", variant: "nogso"},
		{in: "rtsp+noecn", transport: "rtsp", variant: "noecn"}, {in: "stream+fast", bad: true},
	} {
		ts, err := trunkSystem(c.in)
		if (err != nil) != c.bad || ts.transport != c.transport && !c.bad || ts.conns != c.conns && !c.bad || ts.variant != c.variant && !c.bad {
			t.Errorf("%q: %+v %v", c.in, ts, err)
		}
	}
}

// TestDelayLine: packets come out in order, each no earlier than its
// delay less wanSlack; a full line refuses; stop ends it.
func TestDelayLine(t *testing.T) {
	const delay = 20 * time.Millisecond
	type out struct {
		id  byte
		at  time.Time
		len int
	}
	got := make(chan out, 1000)
	d := newDelayLine(delay, 300, func(b []byte) { got <- out{b[0], time.Now(), len(b)} })
	done := make(chan struct{})
	go func() { defer close(done); d.run() }()
	sent := map[byte]time.Time{}
	for i := range 200 {
		b := wanBufs.Get().(*[wanBuf]byte)
		b[0] = byte(i)
		now := time.Now()
		sent[byte(i)] = now
		if !d.push(b, 1+i, now) {
			t.Fatalf("packet %d refused", i)
		}
		if i%20 == 0 {
			time.Sleep(3 * time.Millisecond) // some gaps: the line empties and waits
		}
	}
	for i := range 200 {
		select {
		case o := <-got:
			if o.id != byte(i) || o.len != 1+i {
				t.Fatalf("packet %d: got id %d, %d bytes", i, o.id, o.len)
			}
			if early := sent[o.id].Add(delay - wanSlack).Sub(o.at); early > 0 {
				t.Errorf("packet %d written %s before its delay less the slack", i, early)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d not written", i)
		}
	}
	// A full line refuses; stop ends run with packets still queued.
	full := newDelayLine(time.Hour, 2, func([]byte) {})
	fullDone := make(chan struct{})
	go func() { defer close(fullDone); full.run() }()
	for i := range 3 {
		if ok := full.push(new([wanBuf]byte), 1, time.Now()); ok != (i < 2) {
			t.Errorf("push %d into a line of 2: %v", i, ok)
		}
	}
	full.stop()
	d.stop()
	for _, c := range []chan struct{}{done, fullDone} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("run did not end after stop")
		}
	}
}

// TestFreeBlock: a bench's subnets avoid those another bench put on the
// host.
func TestFreeBlock(t *testing.T) {
	addrs := "1: lo    inet 127.0.0.1/8 scope host lo\n" +
		"245: cbhe31402    inet 10.213.1.1/30 scope global cbhe31402\n" +
		"246: cbhc31402    inet 10.213.2.1/30 scope global cbhc31402\n" +
		"247: cbhe7    inet 10.213.5.1/30 scope global cbhe7\n"
	for _, tc := range []struct{ pid, want int }{{0, 6}, {1, 6}, {2, 6}, {3, 9}, {80, 6}, {79, 237}} {
		if got, err := freeBlock(addrs, tc.pid); err != nil || got != tc.want {
			t.Errorf("freeBlock(pid %d) = %d, %v; want %d", tc.pid, got, err, tc.want)
		}
	}
	var all strings.Builder
	for b := 1; b <= 240; b++ {
		fmt.Fprintf(&all, "9: x    inet 10.213.%d.1/30 scope global x\n", b)
	}
	if _, err := freeBlock(all.String(), 5); err == nil {
		t.Error("freeBlock found a block on a host using all of 10.213/16")
	}
}

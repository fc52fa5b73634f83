package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// TestFrameMatching plays one simulated camera with two direct readers: every
// frame both receive must match, with a small difference, and the byte and
// loss counters must see the camera's traffic.
func TestFrameMatching(t *testing.T) {
	sim := startSim(t)
	a := &reader{url: sim.URL("c1"), frames: newFrameLog()}
	b := &reader{url: sim.URL("c1"), frames: newFrameLog()}
	l := playAndMatch(t, context.Background(), a, b)
	if len(l.added) < 20 || len(l.e2e) != len(l.added) {
		t.Fatalf("matched %d frames (%d end to end) in 2 s at 25 fps; want at least 20 (a saw %d, b saw %d)", len(l.added), len(l.e2e), len(a.frames.seen), len(b.frames.seen))
	}
	if stampsSupported && len(l.late) < 20 {
		t.Fatalf("%d frames of a had a kernel receive time; want every frame's", len(l.late))
	}
	if a.bytes.Load() < 100_000 || a.lost.Load() != 0 {
		t.Fatalf("reader a: %d bytes, %d lost; want ≥ 100 kB in 2 s at 1 Mbit/s and no loss", a.bytes.Load(), a.lost.Load())
	}
}

// playAndMatch plays both readers, counting, for 2 s and returns how much
// later b completed each frame than a.
func playAndMatch(t *testing.T, ctx context.Context, a, b *reader) latencies {
	t.Helper()
	for _, r := range []*reader{a, b} {
		if err := r.start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.close)
		r.counting.Store(true)
	}
	since := time.Now()
	time.Sleep(2 * time.Second)
	return matchFrames(a.frames, b.frames, since)
}

// startSim serves one simulated 640x360 H.264 camera "c1" at 1 Mbit/s.
func startSim(t *testing.T) *camsim.Server {
	t.Helper()
	sim := &camsim.Server{Addr: "127.0.0.1:0", Logger: testutil.Logger(t), Cameras: []camsim.Camera{
		{Name: "c1", Codec: "h264", Width: 640, Height: 360, FPS: 25, Bitrate: 1_000_000},
	}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

func TestWriteSummary(t *testing.T) {
	run := func(baseCPU, passCPU time.Duration, p99 time.Duration, rss int64) []*Result {
		base := &Result{System: SystemBaseline, Cameras: 2, CPU: baseCPU, InBytes: 1e9, RSS: rss, Latency: []time.Duration{p99}}
		pass := &Result{System: SystemPassthrough, Cameras: 2, CPU: passCPU, InBytes: 1e9, RSS: rss * 2, Latency: []time.Duration{p99 / 2}, Lost: 1, Baseline: base}
		return []*Result{base, pass}
	}
	var b strings.Builder
	err := WriteSummary(&b, [][]*Result{
		run(10*time.Second, 4*time.Second, 4*time.Millisecond, 1<<20),
		run(10*time.Second, 5*time.Second, 2*time.Millisecond, 1<<20),
		run(10*time.Second, 6*time.Second, 6*time.Millisecond, 2<<20),
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"0.40x / 0.50x / 0.60x", "1.00 / 2.00 / 3.00", "2048", "3"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(strings.Split(out, "\n")[1], "baseline") || !strings.Contains(strings.Split(out, "\n")[1], "   -") {
		t.Errorf("baseline row should have no ratio:\n%s", out)
	}
}

// TestProxyConfigValid: the configuration the benchmark gives cordon passes
// the proxy's own checks (an explicit listener, anonymous on purpose, the
// connection caps lifted for its readers).
func TestProxyConfigValid(t *testing.T) {
	sim := &camsim.Server{Addr: "127.0.0.1:1"}
	cams := []camsim.Camera{{Name: "cam0"}, {Name: "cam1"}}
	p := filepath.Join(t.TempDir(), "cordon.yml")
	if err := os.WriteFile(p, proxyConfig("127.0.0.1:0", "127.0.0.1:0", SystemRebuild, 2*time.Millisecond, sim, cams), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := proxy.DecodeConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Cameras) != 2 || !c.AllowAnonymous || c.Listen.RTSP != "127.0.0.1:0" || c.CameraSide.ReadCoalesce != 2*time.Millisecond {
		t.Errorf("decoded %+v", c)
	}
	// All of the bench's readers come from one address: the per-source
	// cap must not turn them away (it did, at 64).
	if c.Limits.MaxConnectionsPerSource < 500*20 || c.Limits.MaxConnections < 500*20 {
		t.Errorf("limits %+v: the bench's readers would be refused", c.Limits)
	}
}

func TestClipFits(t *testing.T) {
	for _, tc := range []struct {
		w, h, rate int
		want       bool
	}{{640, 360, 500_000, true}, {640, 360, 490_000, true}, {640, 360, 100_000, false}, {320, 180, 500_000, false}, {640, 360, 2_000_000, false}} {
		s := camsim.StreamInfo{Width: 640, Height: 360, Bitrate: 510_000}
		if got := clipFits(s, tc.w, tc.h, tc.rate); got != tc.want {
			t.Errorf("clipFits(640x360 at 510k, %dx%d at %d) = %v, want %v", tc.w, tc.h, tc.rate, got, tc.want)
		}
	}
}

// TestWaitReadyEach: every path served; a missing one is named, with how
// many were served, once the timeout is over.
func TestWaitReadyEach(t *testing.T) {
	var cams []camsim.Camera
	for i := range 5 {
		cams = append(cams, camsim.Camera{Name: fmt.Sprintf("c%d", i)})
	}
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: cams}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	addr := strings.TrimSuffix(strings.TrimPrefix(sim.URL("c0"), "rtsp://"), "/c0")
	if err := waitReadyEach(t.Context(), addr, cams, 10*time.Second, 3); err != nil {
		t.Fatal(err)
	}
	err := waitReadyEach(t.Context(), addr, append(cams, camsim.Camera{Name: "missing"}), time.Second, 3)
	if err == nil || !strings.Contains(err.Error(), "5 of 6 paths served") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("with a missing path: %v", err)
	}
}

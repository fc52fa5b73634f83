package proxy

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/pion/rtp"
)

// TestPanicContained: a panic while one camera's packets are processed (here
// forced by a test hook on every packet of camera "bad", as a cleaner bug
// would) is contained to that camera: it is logged with a stack, counted in
// cordon_camera_panics_total, the camera is refused and retried with
// backoff, and the other camera's reader never stops. Once the fault is
// gone, the camera plays again with a fresh stream.
func TestPanicContained(t *testing.T) {
	sim := startCamsim(t, "bad", "good")
	log, lb := newLog(t)
	cfg := testConfig(
		Camera{Name: "bad", URL: MustParseSecretURL(sim.URL("bad"))},
		Camera{Name: "good", URL: MustParseSecretURL(sim.URL("good"))},
	)
	var faulty atomic.Bool
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p.testPacketHook = func(camera string, _ *rtp.Packet) {
		if camera == "bad" && faulty.Load() {
			panic("simulated cleaner bug")
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)

	good := waitReader(t, "a reader of the good camera", 10*time.Second, readerURL(p, "good"))
	waitReader(t, "a reader of the bad camera", 10*time.Second, readerURL(p, "bad"))
	faulty.Store(true)
	waitFor(t, "two contained panics", 10*time.Second, func() bool {
		for _, s := range p.Status() {
			if s.Name == "bad" {
				return s.Panics >= 2 // refused, retried, refused again
			}
		}
		return false
	})
	out := lb.String()
	for _, want := range []string{"camera goroutine panicked", "simulated cleaner bug", "contain_test.go", "camera stream refused after an internal error"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	if !strings.Contains(metrics, `cordon_camera_panics_total{camera="bad"}`) || strings.Contains(metrics, `cordon_camera_panics_total{camera="bad"} 0`) {
		t.Errorf("metrics do not count the panics:\n%s", grepLines(metrics, "panics"))
	}
	if !strings.Contains(metrics, `cordon_camera_panics_total{camera="good"} 0`) {
		t.Errorf("the good camera's panic count is not 0:\n%s", grepLines(metrics, "panics"))
	}
	// The good reader kept playing all along: no gap longer than a
	// camera's keyframe interval.
	before := good.packets.Load()
	time.Sleep(time.Second)
	if good.packets.Load() <= before {
		t.Fatal("the good camera's reader stopped receiving")
	}
	if g := good.gaps(); g > 2*time.Second {
		t.Errorf("the good camera's reader had a %s gap", g)
	}
	faulty.Store(false)
	// Readers attached to the refused stream were closed when it was
	// rebuilt; a new reader gets packets once the camera plays again.
	waitFor(t, "the bad camera playing again once the fault is gone", 20*time.Second, func() bool {
		r, err := dialReaderNoCleanup(readerURL(p, "bad"), gortsplib.ProtocolTCP)
		if err != nil {
			return false
		}
		defer r.cl.Close()
		deadline := time.Now().Add(2 * time.Second)
		for r.packets.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		return r.packets.Load() > 0
	})
}

package bench

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// TestBaselineForwards runs the baseline pass-through in-process: a reader
// through it must get the same frames as a direct reader, a little later.
func TestBaselineForwards(t *testing.T) {
	sim := startSim(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	b := &Baseline{Listen: addr, Sources: map[string]string{"c1": sim.URL("c1")}, Logger: testutil.Logger(t)}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	if err := waitReady(ctx, addr, []camsim.Camera{{Name: "c1"}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	d := &reader{url: sim.URL("c1"), frames: newFrameLog()}
	p := &reader{url: "rtsp://" + addr + "/c1", frames: newFrameLog()}
	lat := playAndMatch(t, ctx, d, p).added
	if len(lat) < 20 {
		t.Fatalf("matched %d frames; direct saw %d, proxied saw %d (proxied bytes %d)", len(lat), len(d.frames.seen), len(p.frames.seen), p.bytes.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

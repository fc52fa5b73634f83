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
	ctx, addr, stop := runRelay(t, func(ctx context.Context, addr string) error {
		b := &Baseline{Listen: addr, Sources: map[string]string{"c1": sim.URL("c1")}, Logger: testutil.Logger(t)}
		return b.Run(ctx)
	})
	d := &reader{url: sim.URL("c1"), frames: newFrameLog()}
	p := &reader{url: "rtsp://" + addr + "/c1", frames: newFrameLog()}
	lat := playAndMatch(t, ctx, d, p).added
	if len(lat) < 20 {
		t.Fatalf("matched %d frames; direct saw %d, proxied saw %d (proxied bytes %d)", len(lat), len(d.frames.seen), len(p.frames.seen), p.bytes.Load())
	}
	stop()
}

// TestFloorForwards runs the floor relay in-process with two readers of
// one camera: each must get the same frames as a direct reader, a little
// later, with no sequence gap, and both the same RTP bytes.
func TestFloorForwards(t *testing.T) {
	sim := startSim(t)
	ctx, addr, stop := runRelay(t, func(ctx context.Context, addr string) error {
		f := &Floor{Listen: addr, Sources: map[string]string{"c1": sim.URL("c1")}, Logger: testutil.Logger(t)}
		return f.Run(ctx)
	})
	second := &reader{url: "rtsp://" + addr + "/c1"}
	if err := second.start(ctx); err != nil {
		t.Fatal(err)
	}
	d := &reader{url: sim.URL("c1"), frames: newFrameLog()}
	p := &reader{url: "rtsp://" + addr + "/c1", frames: newFrameLog()}
	second.counting.Store(true)
	lat := playAndMatch(t, ctx, d, p).added
	second.counting.Store(false)
	if len(lat) < 20 {
		t.Fatalf("matched %d frames; direct saw %d, proxied saw %d (proxied bytes %d)", len(lat), len(d.frames.seen), len(p.frames.seen), p.bytes.Load())
	}
	for _, r := range []*reader{p, second} {
		if r.lost.Load() != 0 || r.bytes.Load() < 100_000 {
			t.Fatalf("reader through the floor: %d bytes, %d lost; want ≥ 100 kB in 2 s at 1 Mbit/s and no loss", r.bytes.Load(), r.lost.Load())
		}
	}
	second.close()
	stop()
}

// runRelay runs a relay (the baseline or the floor) in-process on a free
// loopback port until stop, and waits until it serves camera c1.
func runRelay(t *testing.T, run func(ctx context.Context, addr string) error) (ctx context.Context, addr string, stop func()) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	done := make(chan error, 1)
	go func() { done <- run(ctx, addr) }()
	if err := waitReady(ctx, addr, []camsim.Camera{{Name: "c1"}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return ctx, addr, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestWalkFrames checks the floor's framing: whole interleaved frames are
// sent, a partial one is kept, and RTSP answers between frames are cut out.
func TestWalkFrames(t *testing.T) {
	frame := func(ch byte, n int) []byte {
		b := []byte{'$', ch, byte(n >> 8), byte(n)}
		for i := range n {
			b = append(b, byte(i))
		}
		return b
	}
	answer := []byte("RTSP/1.0 200 OK\r\nCSeq: 4\r\n\r\n")
	var in []byte
	in = append(in, frame(0, 10)...)
	in = append(in, answer...)
	in = append(in, frame(1, 3)...)
	partial := frame(0, 20)[:9]
	in = append(in, partial...)
	buf := make([]byte, 256)
	w := copy(buf, in)
	p, w, err := walkFrames(buf, 0, w)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, frame(0, 10)...), frame(1, 3)...)
	if got := buf[:p]; string(got) != string(want) {
		t.Fatalf("whole frames %q, want %q", got, want)
	}
	if rest := buf[p:w]; string(rest) != string(partial) {
		t.Fatalf("kept %q, want the partial frame %q", rest, partial)
	}
	if _, _, err := walkFrames([]byte("HTTP/1.1 200 OK\r\n\r\n"), 0, 19); err == nil {
		t.Fatal("a message that is not RTSP: no error")
	}
}

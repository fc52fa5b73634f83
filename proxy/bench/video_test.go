package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// slice264 returns an H.264 slice NAL unit of n bytes (type 5 or 1).
func slice264(idr bool, n int) []byte {
	b := make([]byte, n)
	b[0] = 0x41
	if idr {
		b[0] = 0x65
	}
	return b
}

func TestVCLBytes(t *testing.T) {
	idr := slice264(true, 3000)
	fuA := func(nal []byte, start bool) []byte { // the first or a middle fragment of 1000 bytes
		h := byte(0)
		if start {
			h = 0x80
		}
		return append([]byte{nal[0]&0xe0 | 28, h | nal[0]&0x1f}, nal[1:1001]...)
	}
	stap := []byte{24, 0, 4, 0x67, 1, 2, 3, 0, 2, 0x68, 1, 0, 2, 0x09, 0xf0, 0, 5, 0x41, 1, 2, 3, 4}
	h265 := func(typ byte, n int) []byte { b := make([]byte, n); b[0], b[1] = typ<<1, 1; return b }
	for _, tc := range []struct {
		name string
		p    []byte
		h265 bool
		want int64
	}{
		{"h264 IDR", idr, false, 3000},
		{"h264 P", slice264(false, 700), false, 700},
		{"h264 SEI", []byte{6, 5, 1, 0x80}, false, 0},
		{"h264 filler", []byte{12, 0xff, 0x80}, false, 0},
		{"h264 AUD", []byte{9, 0xf0}, false, 0},
		{"h264 FU-A start", fuA(idr, true), false, 1001}, // 1000 bytes of body and the header byte
		{"h264 FU-A middle", fuA(idr, false), false, 1000},
		{"h264 FU-A of filler", []byte{28, 0x80 | 12, 0xff, 0xff}, false, 0},
		{"h264 STAP-A", stap, false, 5},
		{"h264 STAP-A truncated", stap[:len(stap)-2], false, 0},
		{"h265 TRAIL", h265(1, 900), true, 900},
		{"h265 IDR", h265(19, 900), true, 900},
		{"h265 AUD", h265(35, 3), true, 0},
		{"h265 filler", h265(38, 30), true, 0},
		{"h265 AP", []byte{48 << 1, 1, 0, 3, 35 << 1, 1, 0x50, 0, 4, 1 << 1, 1, 9, 9}, true, 4},
		{"h265 FU start", append([]byte{49 << 1, 1, 0x80 | 19}, make([]byte, 500)...), true, 502},
		{"h265 FU end", append([]byte{49 << 1, 1, 0x40 | 19}, make([]byte, 500)...), true, 500},
		{"short", []byte{0x65}, false, 0},
	} {
		if got := vclBytes(tc.p, tc.h265); got != tc.want {
			t.Errorf("%s: %d coded-slice bytes, want %d", tc.name, got, tc.want)
		}
	}
}

// TestVideoCountSkips feeds a frame clock by hand: frames before the window
// and the one in progress at its edges are not counted, and a skipped or
// cut frame is missing from what was delivered, not from what was sent.
func TestVideoCountSkips(t *testing.T) {
	const loop = 4
	sizes := []int{4000, 1000, 1100, 1200} // one loop: an IDR and three P frames
	var loopBytes int64
	for _, s := range sizes {
		loopBytes += int64(s)
	}
	run := func(skip, cut int) (int64, int64, error) {
		v := &videoCount{step: 3600}
		ts := uint32(1 << 31)
		for n := range 20 {
			counting := n >= 3 && n < 17 // the window opens during frame 3 and closes during frame 16
			size := sizes[n%loop]
			if n == skip {
				ts += 3600
				continue
			}
			if n == cut {
				size /= 2
			}
			for k := 0; k < size; k += 500 { // 500-byte single NAL slices
				v.packet(ts, slice264(n%loop == 0, min(500, size-k)), counting)
			}
			ts += 3600
		}
		return v.forwarded(loop, loopBytes)
	}
	// Counted: frames 4..15 (12 frames, 3 whole loops).
	if d, s, err := run(-1, -1); err != nil || d != s || s != 3*loopBytes {
		t.Errorf("all delivered: %d of %d, %v; want %d of %d", d, s, err, 3*loopBytes, 3*loopBytes)
	}
	if d, s, err := run(8, -1); err != nil || s != 3*loopBytes || d != s-int64(sizes[0]) {
		t.Errorf("IDR 8 skipped: %d of %d, %v; want %d of %d", d, s, err, s-int64(sizes[0]), 3*loopBytes)
	}
	if d, s, err := run(-1, 9); err != nil || s != 3*loopBytes || d != s-int64(sizes[1]/2) {
		t.Errorf("frame 9 cut: %d of %d, %v", d, s, err)
	}
	v := &videoCount{step: 3600}
	v.packet(0, slice264(true, 100), true)
	v.packet(3600, slice264(false, 100), true)
	v.packet(7200, slice264(false, 100), true)
	if _, _, err := v.forwarded(50, 1000); err == nil {
		t.Error("a window shorter than a loop was measured")
	}
}

// TestVideoCountCamsim: a direct reader of camsim cameras (both codecs) gets
// exactly the video bytes camsim says it sends per loop.
func TestVideoCountCamsim(t *testing.T) {
	sim := &camsim.Server{Addr: "127.0.0.1:0", Logger: testutil.Logger(t), Cameras: []camsim.Camera{
		{Name: "a", Codec: "h264", Width: 640, Height: 360, FPS: 100},
		{Name: "b", Codec: "h265", Width: 640, Height: 360, FPS: 100},
	}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	for i, info := range sim.Streams() {
		r := &reader{url: sim.URL(info.Name), fps: info.FPS}
		if err := r.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.close)
		r.counting.Store(true)
		time.Sleep(1200 * time.Millisecond) // two loops of 50 frames at 100 fps, and some
		r.counting.Store(false)
		d, s, err := r.video.forwarded(info.LoopFrames, info.LoopVideoBytes)
		if err != nil || d != s || s < 2*info.LoopVideoBytes {
			t.Errorf("camera %d (%s): %d of %d video bytes, %v; want all of at least two loops (%d)", i, info.Clip, d, s, err, 2*info.LoopVideoBytes)
		}
	}
}

// TestMediaMTXConfig: the generated configuration turns every protocol but
// RTSP off and pulls each camera at once over TCP.
func TestMediaMTXConfig(t *testing.T) {
	sim := &camsim.Server{Addr: "127.0.0.1:9"}
	cfg := string(mediamtxConfig("127.0.0.1:1234", sim, []camsim.Camera{{Name: "cam1"}, {Name: "cam2"}}))
	for _, want := range []string{
		"rtspAddress: \"127.0.0.1:1234\"\n", "rtspTransports: [tcp]\n", "rtmp: false\n", "hls: false\n",
		"webrtc: false\n", "srt: false\n", "moq: false\n", "api: false\n",
		"  cam2:\n    source: rtsp://127.0.0.1:9/cam2\n    rtspTransport: tcp\n    sourceOnDemand: false\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}

// TestMediaMTX runs MediaMTX, when CORDON_MEDIAMTX names a binary of it (the
// project neither builds nor ships MediaMTX), as the bench does, for a short
// window: it must load the generated configuration and forward the video whole.
func TestMediaMTX(t *testing.T) {
	bin := os.Getenv("CORDON_MEDIAMTX")
	if bin == "" {
		t.Skip("set CORDON_MEDIAMTX to a MediaMTX binary to run the bench against it")
	}
	res, err := Run(t.Context(), Options{Cameras: 2, Systems: []string{SystemMediaMTX}, MediaMTX: bin,
		Duration: 5 * time.Second, Warmup: 2 * time.Second, Progress: t.Output(), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := res[0].Forwarded(); !ok || f < MinForwarded || res[0].CPU <= 0 {
		t.Errorf("mediamtx: forwarded %v (%v), CPU %v", f, ok, res[0].CPU)
	}
}

// TestCheck: a system fails the run below 99 % of the video or with readers
// that did not play; pull (no reader) is not checked.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{System: SystemRebuild, Readers: 2, Wanted: 2, VideoSent: 1000, VideoDelivered: 990}, ""},
		{Result{System: SystemRebuild, Readers: 2, Wanted: 2, VideoSent: 1000, VideoDelivered: 989}, "delivered 98.90 % of the video bytes"},
		{Result{System: SystemMediaMTX, Readers: 1, Wanted: 2, VideoSent: 1000, VideoDelivered: 1000}, "only 1 of 2 readers played"},
		{Result{System: SystemBaseline, Readers: 2, Wanted: 2}, "no video counted"},
		{Result{System: SystemPull}, ""},
	} {
		err := tc.r.check()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s check() = %v, want %q", tc.r.System, err, tc.want)
		}
	}
}

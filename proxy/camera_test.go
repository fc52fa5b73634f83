package proxy

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// TestGarbageInterleavedFrames: a camera that sends interleaved frames of
// 65,535 bytes of garbage after PLAY, with RTP headers that route them to
// its H.264 track, while a reader is attached. The frames used to panic
// the process in rebuild mode (rebuildAU indexed an empty NAL unit, fixed
// in package rebuild); now they are dropped and counted, nothing panics
// (not even a contained panic), and the good packets that follow reach the
// reader.
func TestGarbageInterleavedFrames(t *testing.T) {
	for _, mode := range []rebuild.Mode{rebuild.ModeRebuild, rebuild.ModePassthrough} {
		t.Run(string(mode), func(t *testing.T) {
			cam := &scriptCam{afterPlay: func(ctx context.Context, w *camWriter) {
				rng := rand.New(rand.NewPCG(1, 2))
				junk := make([]byte, 65535)
				time.Sleep(300 * time.Millisecond) // a reader attaches
				w.h264(ctx, 100*time.Millisecond)
				for range 64 {
					for i := range junk {
						junk[i] = byte(rng.Uint32())
					}
					// An RTP header that gortsplib routes to the H.264 track
					// (version 2, payload type 96), random flags and body.
					junk[0] = 0x80 | junk[0]&0x3f
					junk[1] = junk[1]&0x80 | 96
					if ctx.Err() != nil || w.frame(0, junk) != nil {
						return
					}
				}
				w.h264(ctx, time.Second)
			}}
			addr := cam.listen(t)
			log, _ := newLog(t)
			p := startProxy(t, testConfig(Camera{Name: "g", URL: MustParseSecretURL("rtsp://" + addr + "/cam"), Mode: Mode(mode)}), log)
			r := waitReader(t, "a reader", 10*time.Second, readerURL(p, "g"))
			waitFor(t, "a second session", 20*time.Second, func() bool { return cam.conns.Load() >= 2 })
			st := p.Status()
			if len(st) != 1 || st[0].PacketsIn == 0 {
				t.Fatalf("status: %+v", st)
			}
			if st[0].Panics != 0 {
				t.Errorf("%d panics contained, want none", st[0].Panics)
			}
			if r.packets.Load() == 0 {
				t.Error("the reader received nothing")
			}
		})
	}
}

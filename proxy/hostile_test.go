package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/internal/playonly"
	"github.com/cordon-vms/cordon/proxy/internal/rtpseq"
)

// startStreamServer serves one stream of the given medias on loopback,
// whatever the path (playonly's handler: DESCRIBE, SETUP, PLAY), as the
// camera side of the proxy's tests. It returns the stream to write packets
// to and the camera's URL; both close with the test.
func startStreamServer(t *testing.T, medias ...*description.Media) (*gortsplib.ServerStream, string) {
	t.Helper()
	var st *gortsplib.ServerStream
	srv := &gortsplib.Server{Handler: &playonly.Handler{Lookup: func(string) *gortsplib.ServerStream { return st }},
		RTSPAddress: "127.0.0.1:0"}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	st = &gortsplib.ServerStream{Server: srv, Desc: &description.Session{Medias: medias}}
	if err := st.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, "rtsp://" + srv.NetListener().Addr().String() + "/cam"
}

// scriptedCamera is an RTSP camera that sends whatever packet sequences a
// test gives it, one after the other, with nothing checked: a hostile or
// broken camera.
type scriptedCamera struct {
	stream *gortsplib.ServerStream
	media  *description.Media
}

// startScriptedCamera serves one video media of format f on loopback and
// returns the camera and its URL.
func startScriptedCamera(t *testing.T, f format.Format) (*scriptedCamera, string) {
	t.Helper()
	c := &scriptedCamera{media: &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{f}}}
	st, url := startStreamServer(t, c.media)
	c.stream = st
	return c, url
}

// play sends each sequence's packets, pausing between sequences, over and
// over until ctx is done.
func (c *scriptedCamera) play(ctx context.Context, seqs [][]byte) {
	ts := uint32(0)
	for {
		for _, s := range seqs {
			pkts := rtpseq.Decode(s, 96)
			for _, p := range pkts {
				p.Timestamp += ts
				_ = c.stream.WritePacketRTP(c.media, p)
			}
			if len(pkts) > 0 {
				ts = pkts[len(pkts)-1].Timestamp + 3000
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
}

func corpus(t *testing.T, dirs ...string) [][]byte {
	t.Helper()
	var all [][]byte
	for _, d := range dirs {
		in, err := rtpseq.ReadCorpus(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(in) == 0 {
			t.Fatalf("%s: empty corpus", d)
		}
		all = append(all, in...)
	}
	return all
}

// TestHostileCameras replays the stream cleaner's fuzz corpus (every
// sequence the fuzzer found interesting, and the crashes it found) through
// a real proxy from an H.264 and an H.265 camera, in both modes, while a
// well-behaved camera and its reader run beside them: the good reader never
// stops, and no panic happens (none is even contained).
func TestHostileCameras(t *testing.T) {
	h264 := corpus(t, "rebuild/testdata/fuzz/FuzzRebuildH264")
	h265 := corpus(t, "rebuild/testdata/fuzz/FuzzRebuildH265")
	// The two-packet crash and the lost marker packet, by hand as well.
	h264 = append(h264,
		rtpseq.Encode([]*rtp.Packet{
			{Header: rtp.Header{SequenceNumber: 1, Timestamp: 0}, Payload: append([]byte{0x65}, make21(20)...)},
			{Header: rtp.Header{SequenceNumber: 2, Timestamp: 3000, Marker: true}, Payload: append([]byte{0x41}, make21(20)...)},
		}),
		[]byte{0, 3, rtpseq.FlagLost, 0x7c, 0x85, 0x88, 0, 2, rtpseq.FlagNewFrame | rtpseq.FlagMarker, 0x41, 0x9a})

	cam264, url264 := startScriptedCamera(t, &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: goodSPS, PPS: goodPPS})
	cam265, url265 := startScriptedCamera(t, &format.H265{PayloadTyp: 96})
	sim := startCamsim(t, "good")
	log, _ := newLog(t)
	cfg := testConfig(
		Camera{Name: "good", URL: MustParseSecretURL(sim.URL("good"))},
		Camera{Name: "h264", URL: MustParseSecretURL(url264)},
		Camera{Name: "h265", URL: MustParseSecretURL(url265)},
		Camera{Name: "h264pass", URL: MustParseSecretURL(url264), Mode: "passthrough"},
	)
	p := startProxy(t, cfg, log)
	good := waitReader(t, "a reader of the good camera", 10*time.Second, readerURL(p, "good"))
	for _, name := range []string{"h264", "h265", "h264pass"} {
		waitFor(t, name+" up", 10*time.Second, func() bool { return cameraState(p, name) == stateUp })
	}
	// Readers of the hostile cameras too: the fan-out path sees whatever
	// the cleaner lets through.
	for _, name := range []string{"h264", "h265", "h264pass"} {
		if _, err := dialReader(t, readerURL(p, name), gortsplib.ProtocolTCP); err != nil {
			t.Logf("reader of %s: %v (no keyframe yet is fine)", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { cam264.play(ctx, h264); done <- struct{}{} }()
	go func() { cam265.play(ctx, h265); done <- struct{}{} }()
	start := good.packets.Load()
	<-done
	<-done
	// 4 s of 25 fps: the good reader got most of 100 frames' packets.
	if n := good.packets.Load() - start; n < 50 {
		t.Fatalf("the good camera's reader got %d packets while the hostile cameras played", n)
	}
	if g := good.gaps(); g > 2*time.Second {
		t.Errorf("the good camera's reader had a %s gap", g)
	}
	for _, s := range p.Status() {
		if s.Panics != 0 {
			t.Errorf("camera %s: %d contained panics (a cleaner bug)", s.Name, s.Panics)
		}
		if s.Name != "good" && s.PacketsIn == 0 {
			t.Errorf("camera %s received nothing: the replay did not reach the proxy", s.Name)
		}
	}
}

// make21 returns n bytes that hold no start-code emulation.
func make21(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0x80 + i)
	}
	return b
}

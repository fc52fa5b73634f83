package proxy

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmjpeg"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/internal/rtpseq"
	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// TestMJPEGReaders: a GStreamer camera sending MJPEG (jpegenc ! rtpjpegpay)
// reaches ffprobe, ffmpeg, GStreamer's rtspsrc and an in-process reader
// through the proxy, in rebuild and passthrough modes, over TCP and UDP;
// ffmpeg decodes every frame without an error, and the cleaner refuses no
// frame of a real camera.
func TestMJPEGReaders(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	testutil.NeedTool(t, "ffmpeg", "ffprobe", "gst-launch-1.0")
	gst := startGstCamera(t, 0, "live", "", "", "mjpeg")
	log, _ := newLog(t)
	cfg := withUDP(t, testConfig(
		Camera{Name: "mj", URL: MustParseSecretURL(gst.url("", "", "live"))},
		Camera{Name: "mjpass", URL: MustParseSecretURL(gst.url("", "", "live")), Mode: Mode(rebuild.ModePassthrough)},
	))
	p := startProxy(t, cfg, log)
	for _, cam := range []string{"mj", "mjpass"} {
		t.Run(cam, func(t *testing.T) {
			url := readerURL(p, cam)
			r := waitReader(t, cam+" plays", 10*time.Second, url)
			waitFor(t, "MJPEG packets at an in-process reader", 15*time.Second, func() bool { return r.packets.Load() > 50 })
			if got := r.desc.Medias[0].Formats[0].RTPMap(); got != "JPEG/90000" {
				t.Errorf("reader's format %s, want JPEG/90000", got)
			}
			for _, tr := range []string{"tcp", "udp"} {
				out, err := runTool(t, 10*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", tr,
					"-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", url)
				if err != nil || strings.TrimSpace(out) != "mjpeg,320,240" {
					t.Fatalf("ffprobe over %s: %v\n%s", tr, err, out)
				}
				out, err = runTool(t, 10*time.Second, "ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", tr, "-i", url,
					"-frames:v", "25", "-f", "null", "-")
				if err != nil || strings.TrimSpace(out) != "" {
					t.Fatalf("ffmpeg decoding 25 frames over %s: %v\n%s", tr, err, out)
				}
				out, err = runTool(t, 10*time.Second, "gst-launch-1.0", "-q", "rtspsrc", "location="+url, "protocols="+tr, "latency=0",
					"!", "rtpjpegdepay", "!", "jpegdec", "!", "identity", "eos-after=10", "!", "fakesink")
				if err != nil {
					t.Fatalf("gst-launch rtspsrc decoding 10 frames over %s: %v\n%s", tr, err, out)
				}
			}
			for _, s := range p.Status() {
				if s.Name != cam {
					continue
				}
				for _, reason := range []string{"jpeg_invalid", "malformed", "au_size", "oversized", "payload_type"} {
					if d := s.Dropped[reason]; d.Units > 0 {
						t.Errorf("%s: %d frames/packets dropped as %s", cam, d.Units, reason)
					}
				}
			}
		})
	}
}

// startMJPEGCamera publishes JPEG frames the way MediaMTX does (gortsplib's
// server and its RTP/JPEG encoder), 25 frames a second in a loop, and
// returns the camera's URL.
func startMJPEGCamera(t *testing.T, frames [][]byte) string {
	t.Helper()
	media := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.MJPEG{}}}
	stream, url := startStreamServer(t, media)
	enc := &rtpmjpeg.Encoder{}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	var pkts [][]*rtp.Packet
	for _, f := range frames {
		ps, err := enc.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, ps)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		var ts uint32
		for i := 0; ; i++ {
			for _, p := range pkts[i%len(pkts)] {
				q := *p
				q.Timestamp = ts
				if err := stream.WritePacketRTP(media, &q); err != nil {
					return
				}
			}
			ts += 3600
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return url
}

// covertFrames are the rebuild fixture's JPEG frames (ffmpeg, 64x48), the
// first one with a COM segment holding secret after its scan and
// "more-"+secret after its EOI.
func covertFrames(t *testing.T, secret string) [][]byte {
	t.Helper()
	b, err := os.ReadFile("rebuild/testdata/frames.mjpeg")
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for _, f := range bytes.Split(b, []byte{0xff, 0xd8}) {
		if len(f) > 0 {
			frames = append(frames, append([]byte{0xff, 0xd8}, f...))
		}
	}
	f := frames[0]
	com := append([]byte{0xff, 0xfe, 0, byte(len(secret) + 2)}, secret...)
	frames[0] = append(append(append(append([]byte(nil), f[:len(f)-2]...), com...), 0xff, 0xd9), "more-"+secret...)
	return frames
}

// TestMJPEGCovertData: a MediaMTX-style MJPEG camera (gortsplib's encoder)
// hides a COM segment after the scan of one frame in five, and bytes after
// its EOI. Through a rebuild-mode proxy ffmpeg decodes every frame, the
// hidden bytes never reach a reader, and their removal is counted.
func TestMJPEGCovertData(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "ffmpeg")
	const secret = "cordon-leak-test"
	url := startMJPEGCamera(t, covertFrames(t, secret))
	log, _ := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "mtx", URL: MustParseSecretURL(url)}), log)
	r := waitReader(t, "the MJPEG camera plays", 10*time.Second, readerURL(p, "mtx"))
	waitFor(t, "frames at the in-process reader", 5*time.Second, func() bool { return r.packets.Load() > 20 })
	out, err := runTool(t, 10*time.Second, "ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", readerURL(p, "mtx"),
		"-frames:v", "15", "-f", "null", "-")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("ffmpeg decoding 15 frames: %v\n%s", err, out)
	}
	r.mu.Lock()
	for _, pkt := range r.first {
		if bytes.Contains(pkt.Payload, []byte(secret)) {
			t.Error("the hidden data reached a reader")
		}
	}
	r.mu.Unlock()
	st := p.Status()[0]
	if st.Dropped["jpeg_segment"].Units == 0 || st.Dropped["jpeg_trailing"].Units == 0 {
		t.Errorf("removal not counted: %v", st.Dropped)
	}
	if d := st.Dropped["jpeg_invalid"]; d.Units > 0 {
		t.Errorf("%d frames refused", d.Units)
	}
}

// TestHostileMJPEGCamera replays the MJPEG fuzz corpus (and frames with
// covert segments) through a real proxy from a scripted MJPEG camera, in
// both modes, beside a good camera: its reader never stops, nothing panics,
// and the hostile camera's packets reach the cleaner.
func TestHostileMJPEGCamera(t *testing.T) {
	seqs := corpus(t, "rebuild/testdata/fuzz/FuzzRebuildMJPEG")
	enc := &rtpmjpeg.Encoder{PayloadMaxSize: 400}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	for _, f := range covertFrames(t, "x") {
		pkts, err := enc.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, rtpseq.Encode(pkts))
	}
	cam, url := startScriptedCamera(t, &format.MJPEG{})
	sim := startCamsim(t, "good")
	log, _ := newLog(t)
	p := startProxy(t, testConfig(
		Camera{Name: "good", URL: MustParseSecretURL(sim.URL("good"))},
		Camera{Name: "mj", URL: MustParseSecretURL(url)},
		Camera{Name: "mjpass", URL: MustParseSecretURL(url), Mode: Mode(rebuild.ModePassthrough)},
	), log)
	good := waitReader(t, "a reader of the good camera", 10*time.Second, readerURL(p, "good"))
	for _, name := range []string{"mj", "mjpass"} {
		waitFor(t, name+" up", 10*time.Second, func() bool { return cameraState(p, name) == stateUp })
		if _, err := dialReader(t, readerURL(p, name), gortsplib.ProtocolTCP); err != nil {
			t.Fatalf("reader of %s: %v", name, err)
		}
	}
	start := good.packets.Load()
	deadline := time.Now().Add(3 * time.Second)
	var ts uint32
	for time.Now().Before(deadline) {
		for _, s := range seqs {
			pkts := rtpseq.Decode(s, 26)
			for _, pk := range pkts {
				pk.Timestamp += ts
				_ = cam.stream.WritePacketRTP(cam.media, pk)
			}
			if len(pkts) > 0 {
				ts = pkts[len(pkts)-1].Timestamp + 3000
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	if n := good.packets.Load() - start; n < 30 {
		t.Fatalf("the good camera's reader got %d packets while the hostile camera played", n)
	}
	for _, s := range p.Status() {
		if s.Panics != 0 {
			t.Errorf("camera %s: %d contained panics", s.Name, s.Panics)
		}
		if s.Name != "good" && s.PacketsIn == 0 {
			t.Errorf("camera %s received nothing", s.Name)
		}
		if s.Name == "mj" && s.Dropped["jpeg_segment"].Units == 0 {
			t.Errorf("no covert segment removed: %v", s.Dropped)
		}
	}
}

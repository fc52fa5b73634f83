package camsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/internal/testutil"
)

func TestClips(t *testing.T) {
	all, err := clips()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("got %d clips, want 6 (h264 and h265 at 3 sizes)", len(all))
	}
	for _, c := range all {
		if len(c.aus) != 50 {
			t.Errorf("%s: %d access units, want 50", c.name, len(c.aus))
		}
		for i, r := range c.random {
			if want := i%50 == 0; r != want {
				t.Errorf("%s: frame %d random access %v, want %v (one 2 s GOP)", c.name, i, r, want)
			}
		}
		// Real video at the ladder's rate for its size (x264/x265 in ABR
		// mode land within a few percent over 2 s), every frame an AUD
		// then no SEI and no filler: all of it is what a proxy must forward.
		nominal := map[int]int{640: 500_000, 1280: 2_000_000, 1920: 4_000_000}[c.width]
		if r := float64(c.ownRate(25)) / float64(nominal); r < 0.9 || r > 1.1 {
			t.Errorf("%s: %d bit/s at 25 fps, %.2f of the ladder's %d", c.name, c.ownRate(25), r, nominal)
		}
		vcl := 0
		for i, au := range c.aus {
			if !isAUD(c.codec, au[0]) {
				t.Errorf("%s: frame %d does not start with an AUD", c.name, i)
			}
			for _, n := range au {
				switch typ := nalType(c.codec, n); {
				case isVCL(c.codec, n):
					vcl += len(n)
				case c.codec == "h264" && (typ == 6 || typ == 12), c.codec == "h265" && (typ == 38 || typ == 39 || typ == 40):
					t.Errorf("%s: frame %d has a NAL unit of type %d (SEI or filler)", c.name, i, typ)
				}
			}
		}
		if vcl < c.bytes*98/100 {
			t.Errorf("%s: %d of %d bytes are coded slices, want at least 98 %%", c.name, vcl, c.bytes)
		}
		// The parameter sets in the clip match the size in its name.
		for _, n := range c.aus[0] {
			switch {
			case c.codec == "h264" && nalType("h264", n) == 7:
				var sps h264.SPS
				if err := sps.Unmarshal(n); err != nil {
					t.Fatalf("%s: SPS: %v", c.name, err)
				}
				if sps.Width() != c.width || sps.Height() != c.height {
					t.Errorf("%s: SPS says %dx%d", c.name, sps.Width(), sps.Height())
				}
			case c.codec == "h265" && nalType("h265", n) == 33:
				var sps h265.SPS
				if err := sps.Unmarshal(n); err != nil {
					t.Fatalf("%s: SPS: %v", c.name, err)
				}
				if sps.Width() != c.width || sps.Height() != c.height {
					t.Errorf("%s: SPS says %dx%d", c.name, sps.Width(), sps.Height())
				}
			}
		}
	}
}

func TestPickClip(t *testing.T) {
	for _, tc := range []struct {
		codec string
		w, h  int
		want  string
	}{
		{"h264", 640, 360, "h264-640x360.h264"},
		{"h264", 320, 240, "h264-640x360.h264"},
		{"h265", 1280, 720, "h265-1280x720.h265"},
		{"h265", 3840, 2160, "h265-1920x1080.h265"},
		{"h264", 1600, 900, "h264-1280x720.h264"},
	} {
		c, err := pickClip(nil, tc.codec, tc.w, tc.h, 0)
		if err != nil || c.name != tc.want {
			t.Errorf("pickClip(%s, %dx%d) = %v, %v; want %s", tc.codec, tc.w, tc.h, c, err, tc.want)
		}
	}
	// With more clips of a size, the bit rate chooses among them.
	emb, err := clips()
	if err != nil {
		t.Fatal(err)
	}
	more := append(slices.Clone(emb), &clip{name: "h264-1280x720-8M.h264", codec: "h264", width: 1280, height: 720, rate: 8_000_000})
	for _, tc := range []struct {
		bitrate int
		want    string
	}{{0, "h264-1280x720.h264"}, {2_500_000, "h264-1280x720.h264"}, {6_000_000, "h264-1280x720-8M.h264"}} {
		if c, err := pickClip(more, "h264", 1280, 720, tc.bitrate); err != nil || c.name != tc.want {
			t.Errorf("pickClip(1280x720, %d) = %v, %v; want %s", tc.bitrate, c, err, tc.want)
		}
	}
	// At 5 fps the 8M clip sends 1.6 Mbit/s: the nearest for 1.5M.
	for _, tc := range []struct {
		fps, bitrate int
		want         string
	}{{25, 1_500_000, "h264-1280x720.h264"}, {5, 1_500_000, "h264-1280x720-8M.h264"}, {5, 400_000, "h264-1280x720.h264"}} {
		cam := Camera{Codec: "h264", Width: 1280, Height: 720, FPS: tc.fps, Bitrate: tc.bitrate}
		if c, err := clipFor(more, cam); err != nil || c.name != tc.want {
			t.Errorf("clipFor(1280x720 at %d fps, %d) = %v, %v; want %s", tc.fps, tc.bitrate, c, err, tc.want)
		}
	}
	if _, err := pickClip(more, "vp8", 1, 1, 0); err == nil {
		t.Error("pickClip found a vp8 clip")
	}
}

func TestParseClipName(t *testing.T) {
	for _, bad := range []string{"h264.h264", "h264-1280x720-2M.h265", "vp8-1x1-1M.h264", "h264-big-2M.h264", "h264-1280x720-0.h264", "h264-1280x720-2M-x.h264"} {
		if _, err := parseClip(bad, nil); err == nil || !strings.Contains(err.Error(), "name is not") {
			t.Errorf("parseClip(%q) = %v, want a name error", bad, err)
		}
	}
	if got := ClipName("h265", 1920, 1080, 4_000_000); got != "h265-1920x1080-4M.h265" {
		t.Errorf("ClipName = %q", got)
	}
	for in, want := range map[int]string{500_000: "500k", 2_000_000: "2M", 1_500_000: "1500k", 123: "123"} {
		if got := FormatBitrate(in); got != want {
			t.Errorf("FormatBitrate(%d) = %q, want %q", in, got, want)
		}
		if back, err := ParseBitrate(FormatBitrate(in)); err != nil || back != in {
			t.Errorf("ParseBitrate(FormatBitrate(%d)) = %d, %v", in, back, err)
		}
	}
}

func TestProgramBitrate(t *testing.T) {
	for _, tc := range []struct {
		codec   string
		fps     int
		bitrate int
		filler  bool
	}{
		{"h264", 25, 2_000_000, false}, // the clip's own rate: no filler
		{"h265", 25, 2_000_000, false},
		{"h265", 10, 1_000_000, true}, // 2 Mbit/s at 25 fps is 0.8 at 10
		{"h264", 30, 8_000_000, true},
	} {
		cl, err := pickClip(nil, tc.codec, 1280, 720, tc.bitrate)
		if err != nil {
			t.Fatal(err)
		}
		p, err := newProgram(cl, tc.fps, tc.bitrate, "")
		if err != nil {
			t.Fatal(err)
		}
		// Padded, the rate is met: RTP payload overhead (FU headers) adds
		// well under 1 %. Not padded, the clip's real rate is within 10 %.
		lo, hi := 0.99, 1.02
		if !tc.filler {
			lo, hi = 0.9, 1.1
		}
		if r := float64(p.bitrate) / float64(tc.bitrate); r < lo || r > hi {
			t.Errorf("%s at %d fps, %d bit/s: got %d bit/s", tc.codec, tc.fps, tc.bitrate, p.bitrate)
		}
		if (p.fillerRate > 0) != tc.filler {
			t.Errorf("%s at %d fps, %d bit/s: filler %d bit/s, want filler %v", tc.codec, tc.fps, tc.bitrate, p.fillerRate, tc.filler)
		}
		var vcl int64
		for _, au := range cl.aus {
			for _, n := range au {
				if isVCL(cl.codec, n) {
					vcl += int64(len(n))
				}
			}
		}
		if p.videoBytes != vcl || vcl == 0 {
			t.Errorf("%s: videoBytes %d, want %d", cl.name, p.videoBytes, vcl)
		}
		for i, fr := range p.frames {
			for _, pl := range fr.payloads {
				if len(pl) > 1450 {
					t.Fatalf("frame %d: payload of %d bytes", i, len(pl))
				}
			}
		}
	}
	// Below the clip's own rate, the clip's rate is kept (a floor).
	cl, _ := pickClip(nil, "h264", 640, 360, 0)
	p, _ := newProgram(cl, 25, 1000, "")
	if own := cl.ownRate(25); p.bitrate < own || p.fillerRate != 0 {
		t.Errorf("bitrate %d (filler %d) below the clip's own %d", p.bitrate, p.fillerRate, own)
	}
}

var specCases = []struct {
	spec string
	want Camera
	err  string
}{
	{"cam1", Camera{Name: "cam1"}, ""},
	{"lobby:h265:1920x1080:15:2M", Camera{Name: "lobby", Codec: "h265", Width: 1920, Height: 1080, FPS: 15, Bitrate: 2_000_000}, ""},
	{"d:hevc::30", Camera{Name: "d", Codec: "h265", FPS: 30}, ""},
	{"x:h264:640x360:25:500k", Camera{Name: "x", Codec: "h264", Width: 640, Height: 360, FPS: 25, Bitrate: 500_000}, ""},
	{"x::::1.5M", Camera{Name: "x", Bitrate: 1_500_000}, ""},
	{"", Camera{}, "name"},
	{"a/b", Camera{}, "name"},
	{"a:vp8", Camera{}, "codec"},
	{"a:h264:big", Camera{}, "size"},
	{"a:h264:0x10", Camera{}, "size"},
	{"a:h264:640x360:0", Camera{}, "fps"},
	{"a:h264:640x360:500", Camera{}, "fps"},
	{"a:h264:640x360:25:lots", Camera{}, "bitrate"},
	{"a:h264:640x360:25:NaN", Camera{}, "bitrate"},
	{"a:h264:640x360:25:300M", Camera{}, "bitrate"},
	{"a:h264:640x360:25:1M:x", Camera{}, "want name"},
}

func TestParseCamera(t *testing.T) {
	for _, tc := range specCases {
		got, err := ParseCamera(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCamera(%q) error = %v, want one mentioning %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCamera(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}

func FuzzParseCamera(f *testing.F) {
	for _, tc := range specCases {
		f.Add(tc.spec)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := ParseCamera(spec)
		if err != nil {
			return
		}
		if err := c.normalize(0); err != nil {
			t.Fatalf("ParseCamera(%q) accepted %+v, which does not validate: %v", spec, c, err)
		}
	})
}

func TestStartErrors(t *testing.T) {
	for _, tc := range []struct {
		cams []Camera
		err  string
	}{
		{nil, "Cameras: no camera"},
		{[]Camera{{Name: ""}}, "Cameras[0].Name"},
		{[]Camera{{Name: "a", Codec: "mjpeg"}}, "camera a: Codec"},
		{[]Camera{{Name: "a", FPS: 500}}, "camera a: FPS"},
		{[]Camera{{Name: "a"}, {Name: "a"}}, "camera a: name used twice"},
	} {
		s := &Server{Addr: "127.0.0.1:0", Cameras: tc.cams, Logger: testutil.Logger(t)}
		err := s.Start()
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Start(%+v) = %v, want an error with %q", tc.cams, err, tc.err)
		}
	}
}

func startServer(t *testing.T, cams ...Camera) *Server {
	t.Helper()
	s := &Server{Addr: "127.0.0.1:0", Cameras: cams, Logger: testutil.Logger(t)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestFFprobe: ffprobe reads each camera over TCP and UDP and reports the
// codec and resolution of the clip chosen for it.
func TestFFprobe(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "ffprobe")
	s := startServer(t,
		Camera{Name: "a", Codec: "h264", Width: 1280, Height: 720},
		Camera{Name: "b", Codec: "h265", Width: 1920, Height: 1080, FPS: 10, Bitrate: 1_000_000},
		Camera{Name: "c", Codec: "h265", Width: 640, Height: 360},
	)
	for _, tc := range []struct{ cam, transport, want string }{
		{"a", "tcp", "h264 1280x720"},
		{"b", "udp", "hevc 1920x1080"},
		{"c", "tcp", "hevc 640x360"},
		{"a", "udp", "h264 1280x720"},
	} {
		t.Run(tc.cam+"-"+tc.transport, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			// Decoding errors on stderr are expected: ffprobe joins a live
			// stream mid-GOP, before its first keyframe.
			var stderr strings.Builder
			cmd := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-rtsp_transport", tc.transport,
				"-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0:s=x", s.URL(tc.cam))
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			got := strings.Replace(strings.TrimSpace(string(out)), "x", " ", 1)
			if err != nil || got != tc.want {
				t.Errorf("ffprobe %s over %s: %q, %v; want %q\n%s", tc.cam, tc.transport, out, err, tc.want, stderr.String())
			}
		})
	}
}

// TestGStreamer: GStreamer's rtspsrc plays and decodes N frames of each codec.
func TestGStreamer(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "gst-launch-1.0")
	s := startServer(t,
		Camera{Name: "a", Codec: "h264", FPS: 50},
		Camera{Name: "b", Codec: "h265", FPS: 50},
	)
	for _, tc := range []struct{ cam, proto, depay string }{
		{"a", "tcp", "rtph264depay ! h264parse ! avdec_h264"},
		{"b", "udp", "rtph265depay ! h265parse ! avdec_h265"},
	} {
		t.Run(tc.cam, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			pipeline := fmt.Sprintf("rtspsrc location=%s protocols=%s latency=0 ! %s ! fakesink num-buffers=60",
				s.URL(tc.cam), tc.proto, tc.depay)
			cmd := exec.CommandContext(ctx, "gst-launch-1.0", append([]string{"-q"}, strings.Fields(pipeline)...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("gst-launch %s: %v\n%s", pipeline, err, out)
			}
		})
	}
}

// TestTimestampsContinuous reads a camera through more than one loop of its
// clip and checks sequence numbers and timestamps never jump, and that
// keyframes come every 50 frames (the clips' 2 s GOP).
func TestTimestampsContinuous(t *testing.T) {
	t.Parallel()
	const fps = 120 // the 50-frame clip loops every 0.42 s
	s := startServer(t, Camera{Name: "fast", Codec: "h264", FPS: fps, Bitrate: 500_000})
	u, err := base.ParseURL(s.URL("fast"))
	if err != nil {
		t.Fatal(err)
	}
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: ptr(gortsplib.ProtocolTCP)}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	var forma *format.H264
	medi := desc.FindFormat(&forma)
	if medi == nil || forma.SPS == nil || forma.PPS == nil {
		t.Fatalf("no H.264 media with parameter sets in %+v", desc)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	dec, err := forma.CreateDecoder()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		units   []frameUnit
		lastSeq = -1
		errs    []error
		done    = make(chan struct{})
	)
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if len(units) >= 150 {
			return
		}
		if lastSeq >= 0 && pkt.SequenceNumber != uint16(lastSeq+1) {
			errs = append(errs, fmt.Errorf("sequence %d after %d", pkt.SequenceNumber, lastSeq))
		}
		lastSeq = int(pkt.SequenceNumber)
		au, err := dec.Decode(pkt)
		if err != nil {
			return
		}
		units = append(units, frameUnit{pkt.Timestamp, h264.IsRandomAccess(au)})
		if len(units) == 150 {
			close(done)
		}
	})
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for 150 frames")
	}
	mu.Lock()
	defer mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkFrameUnits(t, units, fps)
}

// frameUnit is one access unit as read: its RTP timestamp and whether it
// is a random access point.
type frameUnit struct {
	ts     uint32
	random bool
}

// checkFrameUnits checks that the timestamps step by 750 (one frame at 120
// fps; fps is for the message) and that keyframes come every 50 frames
// from the first one.
func checkFrameUnits(t *testing.T, units []frameUnit, fps int) {
	t.Helper()
	firstKey := -1
	for i, u := range units {
		if i > 0 {
			step := u.ts - units[i-1].ts
			if step < 749 || step > 751 {
				t.Fatalf("frame %d: timestamp step %d, want 750 (90 kHz / %d fps)", i, step, fps)
			}
		}
		if u.random && firstKey < 0 {
			firstKey = i
		}
		if firstKey >= 0 && u.random != ((i-firstKey)%50 == 0) {
			t.Fatalf("frame %d: random access %v, keyframes every 50 frames expected", i, u.random)
		}
	}
	if firstKey < 0 {
		t.Fatal("no keyframe")
	}
}

func TestUnknownPathAndPublishRefused(t *testing.T) {
	s := startServer(t, Camera{Name: "a"})
	u, _ := base.ParseURL("rtsp://" + s.Addr + "/nope")
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Describe(u); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("DESCRIBE of an unknown camera: %v, want 404", err)
	}
	u2, _ := base.ParseURL(s.URL("a"))
	c2 := gortsplib.Client{Scheme: u2.Scheme, Host: u2.Host}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}}}
	if err := c2.StartRecording(s.URL("a"), desc); err == nil {
		c2.Close()
		t.Error("ANNOUNCE accepted, want refused")
	}
}

func ptr[T any](v T) *T { return &v }

// TestLeak: a leaking camera's keyframes carry the text in SEI, and the
// stream still decodes cleanly (the SEI is well formed).
func TestLeak(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "ffmpeg")
	s := startServer(t,
		Camera{Name: "a", Codec: "h264", FPS: 50, Leak: "serial=ABC123"},
		Camera{Name: "b", Codec: "h265", FPS: 50, Leak: "serial=XYZ789"},
	)
	for _, tc := range []struct{ cam, fmt, want string }{{"a", "h264", "serial=ABC123"}, {"b", "hevc", "serial=XYZ789"}} {
		t.Run(tc.cam, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "cap")
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", s.URL(tc.cam),
				"-c", "copy", "-frames:v", "60", "-f", tc.fmt, p).CombinedOutput(); err != nil {
				t.Fatalf("ffmpeg capture: %v\n%s", err, out)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(tc.want)) {
				t.Error("the leaked text is not in the stream")
			}
			// The capture may start mid-GOP: decode from the first keyframe
			// (whose parameter sets come first).
			codec := map[string]string{"h264": "h264", "hevc": "h265"}[tc.fmt]
			if i := firstParamSet(b, codec); i > 0 {
				if err := os.WriteFile(p, b[i:], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-f", tc.fmt, "-i", p, "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("decoding the leaky stream: %v %s", err, out)
			}
		})
	}
}

// firstParamSet returns the offset of the start code of the first SPS
// (H.264) or VPS (H.265) in an Annex-B stream, or -1.
func firstParamSet(b []byte, codec string) int {
	want := 7
	if codec == "h265" {
		want = 32
	}
	for i := 0; i+3 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 && nalType(codec, b[i+3:]) == want {
			return i
		}
	}
	return -1
}

// TestFreeRunning: by default cameras start at scattered phases and clip
// positions, the same ones on every run; Aligned starts them all together.
func TestFreeRunning(t *testing.T) {
	var cams []Camera
	for i := range 40 {
		cams = append(cams, Camera{Name: fmt.Sprintf("cam%d", i+1), FPS: 25})
	}
	start := func(aligned bool) *Server {
		s := &Server{Addr: "127.0.0.1:0", Cameras: slices.Clone(cams), Aligned: aligned, Logger: testutil.Logger(t)}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b, aligned := start(false), start(false), start(true)
	phases := map[time.Duration]bool{}
	var firstSeen [2]bool // a clip start in the first and in the second half
	for _, c := range cams {
		sa, sb, sal := a.streams[c.Name], b.streams[c.Name], aligned.streams[c.Name]
		if sa.phase != sb.phase || sa.first != sb.first {
			t.Errorf("%s: phase %s, first frame %d on one run and %s, %d on another", c.Name, sa.phase, sa.first, sb.phase, sb.first)
		}
		if sa.phase < 0 || sa.phase >= 40*time.Millisecond {
			t.Errorf("%s: phase %s outside the 40 ms frame interval", c.Name, sa.phase)
		}
		if n := int64(len(sa.prog.frames)); sa.first < 0 || sa.first >= n {
			t.Errorf("%s: first frame %d outside the clip's %d", c.Name, sa.first, n)
		} else {
			firstSeen[sa.first*2/n] = true
		}
		phases[sa.phase.Truncate(10*time.Millisecond)] = true
		if sal.phase != 0 || sal.first != 0 {
			t.Errorf("%s aligned: phase %s, first frame %d; want 0, 0", c.Name, sal.phase, sal.first)
		}
	}
	if len(phases) < 4 || !firstSeen[0] || !firstSeen[1] {
		t.Errorf("40 cameras cover %d of the four 10 ms quarters of a frame interval and clip halves %v; want all", len(phases), firstSeen)
	}
}

// TestStreams: a camera at its clip's rate carries no filler; one asking
// for more is padded, and says so.
func TestStreams(t *testing.T) {
	s := startServer(t,
		Camera{Name: "real", Width: 1280, Height: 720, Bitrate: 2_000_000},
		Camera{Name: "padded", Width: 640, Height: 360, Bitrate: 4_000_000},
	)
	got := s.Streams()
	if len(got) != 2 {
		t.Fatalf("Streams() = %+v", got)
	}
	real, padded := got[0], got[1]
	if real.Clip != "h264-1280x720.h264" || real.FillerBitrate != 0 || real.LoopFrames != 50 || real.LoopVideoBytes < 400_000 {
		t.Errorf("real: %+v", real)
	}
	if padded.FillerBitrate < 3_000_000 || padded.Bitrate < 3_990_000 {
		t.Errorf("padded: %+v", padded)
	}
}

// TestEncodeClip encodes a clip with the embedded recipe into a directory
// and serves it through ClipDir: the camera picks it for its bit rate.
func TestEncodeClip(t *testing.T) {
	testutil.NeedTool(t, "ffmpeg")
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p, err := EncodeClip(ctx, dir, "h264", 320, 180, 300_000)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "h264-320x180-300k.h264" {
		t.Fatalf("EncodeClip wrote %s", p)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// A second call finds it.
	if p2, err := EncodeClip(ctx, dir, "h264", 320, 180, 300_000); err != nil || p2 != p {
		t.Fatalf("second EncodeClip = %s, %v", p2, err)
	}
	if st2, _ := os.Stat(p); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("the cached clip was encoded again")
	}
	s := &Server{Addr: "127.0.0.1:0", ClipDir: dir, Logger: testutil.Logger(t),
		Cameras: []Camera{{Name: "small", Width: 320, Height: 180, Bitrate: 300_000}}}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info := s.Streams()[0]
	if info.Clip != "h264-320x180-300k.h264" || info.FillerBitrate != 0 || info.LoopFrames != 50 {
		t.Errorf("camera on the encoded clip: %+v", info)
	}
	if r := float64(info.Bitrate) / 300_000; r < 0.85 || r > 1.15 {
		t.Errorf("encoded clip at %d bit/s, asked for 300k", info.Bitrate)
	}
	for _, bad := range []struct {
		codec         string
		w, h, bitrate int
	}{{"vp8", 320, 180, 300_000}, {"h264", 321, 180, 300_000}, {"h264", 320, 180, 1}} {
		if _, err := EncodeClip(ctx, dir, bad.codec, bad.w, bad.h, bad.bitrate); err == nil {
			t.Errorf("EncodeClip(%+v) succeeded", bad)
		}
	}
	if err := (&Server{Addr: "127.0.0.1:0", ClipDir: filepath.Join(dir, "nope"), Cameras: []Camera{{Name: "a"}}}).Start(); err == nil || !strings.Contains(err.Error(), "ClipDir") {
		t.Errorf("Start with a missing ClipDir: %v", err)
	}
}

package rebuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/camsim"

	"github.com/cordon-vms/cordon/proxy/internal/annexb"
)

const leak = "cordon-leak-test" // the user data testdata/sei.h264 hides in every keyframe

// startGStreamerCamera runs testdata/gst-rtsp-camera.py serving file and
// returns its URL.
func startGStreamerCamera(t *testing.T, file string) string {
	t.Helper()
	testutil.NeedTool(t, "/usr/bin/python3")
	probe := exec.Command("/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer")
	if out, err := probe.CombinedOutput(); err != nil {
		if testutil.InCI() {
			t.Fatalf("python3-gi with gir1.2-gst-rtsp-server-1.0 is missing: %s", out)
		}
		t.Skipf("python3-gi with gir1.2-gst-rtsp-server-1.0 is missing: %s", out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	abs, _ := filepath.Abs(file)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/gst-rtsp-camera.py", strconv.Itoa(port), abs)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && sc.Text() == "ready"
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("GStreamer camera did not start: %s", stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("GStreamer camera did not start in 15 s")
	}
	return fmt.Sprintf("rtsp://127.0.0.1:%d/cam", port)
}

func countNALType(aus [][][]byte, codec videoCodec, typ uint8) int {
	n := 0
	for _, au := range aus {
		for _, nalu := range au {
			if codec.nalType(nalu) == typ {
				n++
			}
		}
	}
	return n
}

// TestGStreamerCameraSEIRemoved: a GStreamer RTSP camera sends an H.264 clip
// with SEI user data in every keyframe. In rebuild mode no SEI NAL unit and
// none of the hidden bytes reach the reader and the stream decodes with zero
// errors; in passthrough mode (the control) the hidden bytes do cross.
func TestGStreamerCameraSEIRemoved(t *testing.T) {
	testutil.NeedTool(t, "ffmpeg")
	url := startGStreamerCamera(t, "testdata/sei.h264")
	for _, tc := range []struct {
		name     string
		cfg      Config
		wantSEI  int
		wantLeak bool
	}{
		{"rebuild", Config{}, 0, false},
		{"passthrough", Config{Mode: ModePassthrough}, 2, true},
		{"keep-one-uuid", Config{KeepSEI: []string{"user_data_unregistered=086f3693-b7b3-4f2c-9653-21492feee5b8"}}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dep, counters, pkts := readThrough(t, url, tc.cfg, 50, 20*time.Second)
			if len(dep.aus) < 45 {
				t.Fatalf("got %d access units, want about 50", len(dep.aus))
			}
			for _, p := range pkts {
				if p.Extension || p.Padding || len(p.CSRC) > 0 || p.MarshalSize() > 1472 {
					t.Fatalf("unclean packet out: %+v", p.Header)
				}
			}
			stream := annexB(dep.aus)
			if got := countNALType(dep.aus, codecH264, 6); got != tc.wantSEI {
				t.Errorf("%d SEI NAL units reached the reader, want %d", got, tc.wantSEI)
			}
			if got := bytes.Contains(stream, []byte(leak)); got != tc.wantLeak {
				t.Errorf("hidden user data reached the reader: %v, want %v", got, tc.wantLeak)
			}
			if bytes.Contains(stream, []byte("x264 - core")) && tc.cfg.Mode != ModePassthrough {
				t.Error("x264's settings SEI reached the reader")
			}
			if tc.cfg.Mode != ModePassthrough && counters.Snapshot()["sei"][0] == 0 {
				t.Errorf("sei drops not counted: %v", counters.Snapshot())
			}
			if msg := ffmpegDecodeErrors(t, stream, "h264", "h264"); msg != "" {
				t.Errorf("ffmpeg decoding the reader's stream: %s", msg)
			}
		})
	}
}

// TestCamsimRebuild: camsim (H.265 and H.264, padded with filler data,
// leaking text in SEI) → rebuild → the filler and the SEI are gone, the
// stream re-parses and decodes cleanly.
func TestCamsimRebuild(t *testing.T) {
	testutil.NeedTool(t, "ffmpeg")
	srv := &camsim.Server{Addr: "127.0.0.1:0", Logger: testutil.Logger(t), Cameras: []camsim.Camera{
		// 4 Mbit/s from a clip of 2 Mbit/s at 100 fps: camsim tops the
		// rate up with filler NAL units, which must not cross.
		{Name: "hevc", Codec: "h265", Width: 640, Height: 360, FPS: 100, Bitrate: 4_000_000, Leak: leak},
		{Name: "avc", Codec: "h264", Width: 640, Height: 360, FPS: 100, Bitrate: 4_000_000, Leak: leak},
	}}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	for _, st := range srv.Streams() {
		if st.FillerBitrate == 0 {
			t.Fatalf("camera %s sends no filler (%+v): the test would not see filler removed", st.Name, st)
		}
	}
	for _, tc := range []struct {
		cam, ext, fmt string
		codec         videoCodec
		filler, aud   uint8
	}{
		{"hevc", "h265", "hevc", codecH265, 38, 35},
		{"avc", "h264", "h264", codecH264, 12, 9},
	} {
		t.Run(tc.cam, func(t *testing.T) {
			t.Parallel()
			dep, counters, _ := readThrough(t, srv.URL(tc.cam), Config{AUD: true}, 60, 20*time.Second)
			if len(dep.aus) < 60 {
				t.Fatalf("got %d access units, want 60", len(dep.aus))
			}
			if n := countNALType(dep.aus, tc.codec, tc.filler); n != 0 {
				t.Errorf("%d filler NAL units crossed", n)
			}
			if counters.Snapshot()["nal_type"][0] == 0 || counters.Snapshot()["sei"][0] == 0 {
				t.Errorf("filler or SEI drops not counted: %v", counters.Snapshot())
			}
			if bytes.Contains(annexB(dep.aus), []byte(leak)) {
				t.Error("the camera's SEI leak crossed")
			}
			for i, au := range dep.aus {
				if tc.codec.nalType(au[0]) != tc.aud {
					t.Fatalf("access unit %d does not start with a regenerated AUD", i)
				}
			}
			if msg := ffmpegDecodeErrors(t, annexB(dep.aus), tc.ext, tc.fmt); msg != "" {
				t.Errorf("ffmpeg decoding the reader's stream: %s", msg)
			}
		})
	}
}

// hostileCamera is a camera SDP with H.264 in packetization-mode 0, an ONVIF
// metadata track, a back-channel and G.711 audio.
func hostileCamera(t testing.TB) (*description.Session, [][][]byte) {
	aus := fixtureAUs(t)
	var sps, pps []byte
	for _, n := range aus[0] {
		switch n[0] & 0x1f {
		case 7:
			sps = n
		case 8:
			pps = n
		}
	}
	return &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeApplication, Formats: []format.Format{&format.Generic{PayloadTyp: 107, RTPMa: "vnd.onvif.metadata/90000", ClockRat: 90000}}},
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 99, PacketizationMode: 0, SPS: sps, PPS: pps}}},
		{Type: description.MediaTypeAudio, IsBackChannel: true, Formats: []format.Format{&format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 8, SampleRate: 8000, ChannelCount: 1}}},
	}}, aus
}

// modeZeroPackets packetizes access units the way a packetization-mode 0
// camera does (one NAL unit per packet, however big), with header
// extensions, CSRCs and padding on every packet.
func modeZeroPackets(aus [][][]byte, pt uint8, base uint32) []*rtp.Packet {
	var out []*rtp.Packet
	seq := uint16(4000)
	for i, au := range aus {
		for j, n := range au {
			p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq,
				Timestamp: base + uint32(i*3600), Marker: j == len(au)-1, SSRC: 0x1234,
				CSRC: []uint32{0xdeadbeef}, Padding: true, PaddingSize: 4}, Payload: n}
			_ = p.Header.SetExtension(1, []byte("camera-id-42"))
			out = append(out, p)
			seq++
		}
	}
	return out
}

func TestHostileCameraPlan(t *testing.T) {
	desc, _ := hostileCamera(t)
	for _, tc := range []struct {
		cfg       Config
		wantTypes []description.MediaType
	}{
		{Config{}, []description.MediaType{description.MediaTypeVideo, description.MediaTypeAudio}},
		{Config{Audio: AudioDrop}, []description.MediaType{description.MediaTypeVideo}},
		{Config{Mode: ModePassthrough}, []description.MediaType{description.MediaTypeVideo, description.MediaTypeAudio}},
	} {
		c := &Counters{}
		plan, err := NewPlan(desc, tc.cfg, c)
		if err != nil {
			t.Fatal(err)
		}
		var got []description.MediaType
		for _, m := range plan.Medias() {
			got = append(got, m.Type)
			if m.IsBackChannel {
				t.Error("a back-channel crossed")
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.wantTypes) {
			t.Errorf("%+v: medias %v, want %v", tc.cfg, got, tc.wantTypes)
		}
		if c.Snapshot()["media"][0] < 2 {
			t.Errorf("media drops not counted: %v", c.Snapshot())
		}
		h := plan.Medias()[0].Formats[0].(*format.H264)
		if h.PacketizationMode != 1 || h.PayloadTyp != 96 || h.SPS == nil {
			t.Errorf("reader format %+v, want mode 1, PT 96, with SPS", h)
		}
		// Readers' SDP comes from the plan, never the camera's.
		if plan.Medias()[0] == desc.Medias[1] || plan.Medias()[0].Formats[0] == desc.Medias[1].Formats[0] {
			t.Error("reader media is the camera's object")
		}
	}
}

// TestHostileCameraPackets: a mode-0 camera with oversized packets, header
// extensions, CSRCs and padding; in both modes readers get clean packets
// of at most 1472 bytes that re-parse and decode with zero errors.
func TestHostileCameraPackets(t *testing.T) {
	desc, aus := hostileCamera(t)
	in := modeZeroPackets(aus, 99, 123456)
	oversized := 0
	for _, p := range in {
		if len(p.Payload) > maxPayload {
			oversized++
		}
	}
	if oversized == 0 {
		t.Fatal("fixture has no oversized NAL unit")
	}
	for _, mode := range []Mode{ModeRebuild, ModePassthrough} {
		t.Run(string(mode), func(t *testing.T) {
			c := &Counters{}
			plan, err := NewPlan(desc, Config{Mode: mode}, c)
			if err != nil {
				t.Fatal(err)
			}
			tr := plan.Tracks[0]
			dep := newDepacketizer(t, codecH264)
			keys := 0
			for _, p := range in {
				out, key, err := tr.Process(p)
				if err != nil {
					t.Fatal(err)
				}
				if key != NoKey {
					keys++
				}
				for _, o := range out {
					if o.Extension || o.Padding || len(o.CSRC) > 0 || o.MarshalSize() > 1472 || o.PayloadType != 96 {
						t.Fatalf("unclean packet: %+v (%d bytes)", o.Header, o.MarshalSize())
					}
					if err := dep.push(o); err != nil {
						t.Fatalf("output does not re-parse: %v", err)
					}
				}
			}
			if keys != 2 {
				t.Errorf("%d random-access starts, want 2", keys)
			}
			s := c.Snapshot()
			for _, r := range []string{"extension", "padding", "csrc", "oversized"} {
				if s[r][0] == 0 {
					t.Errorf("%s not counted: %v", r, s)
				}
			}
			if s["extension"][0] != uint64(len(in)) {
				t.Errorf("extension counted %d times, want %d", s["extension"][0], len(in))
			}
			if len(dep.aus) < len(aus)-1 {
				t.Fatalf("%d access units out of %d", len(dep.aus), len(aus))
			}
			stream := annexB(dep.aus)
			if bytes.Contains(stream, []byte("camera-id-42")) {
				t.Error("header extension content reached the stream")
			}
			if mode == ModeRebuild && bytes.Contains(stream, []byte(leak)) {
				t.Error("SEI user data crossed in rebuild mode")
			}
			if testutil.InCI() || hasTool("ffmpeg") {
				if msg := ffmpegDecodeErrors(t, stream, "h264", "h264"); msg != "" {
					t.Errorf("ffmpeg: %s", msg)
				}
			}
		})
	}
	// The metadata and audio-back-channel packets have no track: a proxy
	// never even reads them. A packet with a foreign payload type on the
	// video track is dropped.
	plan, _ := NewPlan(desc, Config{}, &Counters{})
	out, _, err := plan.Tracks[0].Process(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 107}, Payload: []byte("<tt:MetadataStream/>")})
	if err != nil || len(out) != 0 {
		t.Errorf("foreign payload type: %v, %v", out, err)
	}
}

func hasTool(name string) bool { _, err := exec.LookPath(name); return err == nil }

// TestRebindContinuity: after a reconnect the camera restarts with random
// sequence numbers and timestamps; readers see neither jump.
func TestRebindContinuity(t *testing.T) {
	for _, mode := range []Mode{ModeRebuild, ModePassthrough} {
		t.Run(string(mode), func(t *testing.T) {
			desc, aus := hostileCamera(t)
			plan, err := NewPlan(desc, Config{Mode: mode}, &Counters{})
			if err != nil {
				t.Fatal(err)
			}
			tr := plan.Tracks[0]
			var out []*rtp.Packet
			feed := func(ps []*rtp.Packet) {
				for _, p := range ps {
					o, _, err := tr.Process(p)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, o...)
				}
			}
			feed(modeZeroPackets(aus[:25], 99, 1000))
			n1 := len(out)
			desc2, _ := hostileCamera(t)
			if err := plan.Rebind(desc2); err != nil {
				t.Fatal(err)
			}
			second := modeZeroPackets(aus[25:], 99, 3_000_000_000)
			for _, p := range second {
				p.SequenceNumber += 30000
			}
			feed(second)
			if len(out) <= n1 {
				t.Fatal("nothing out after the reconnect")
			}
			for i := 1; i < len(out); i++ {
				if out[i].SequenceNumber != out[i-1].SequenceNumber+1 {
					t.Fatalf("packet %d: sequence %d after %d", i, out[i].SequenceNumber, out[i-1].SequenceNumber)
				}
				if d := out[i].Timestamp - out[i-1].Timestamp; d != 0 && d != 3600 {
					t.Fatalf("packet %d: timestamp step %d (reconnect at %d)", i, d, n1)
				}
			}
		})
	}
}

func TestRebindMediaChanged(t *testing.T) {
	desc, _ := hostileCamera(t)
	plan, err := NewPlan(desc, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h265 := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H265{PayloadTyp: 96}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 8, SampleRate: 8000, ChannelCount: 1}}},
	}}
	if err := plan.Rebind(h265); !errors.Is(err, ErrMediaChanged) {
		t.Errorf("H.264 → H.265: %v, want ErrMediaChanged", err)
	}
	noAudio := &description.Session{Medias: desc.Medias[:2]}
	if err := plan.Rebind(noAudio); !errors.Is(err, ErrMediaChanged) {
		t.Errorf("audio gone: %v, want ErrMediaChanged", err)
	}
	big := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: h264SPS(66, 30, 119, 67)}}},
		desc.Medias[3],
	}}
	if err := plan.Rebind(big); !errors.Is(err, ErrMediaChanged) || !strings.Contains(err.Error(), "1920x1088 instead of 320x240") {
		t.Errorf("resolution changed: %v, want ErrMediaChanged", err)
	}
}

// TestRebindWaitsForKeyframe: after a reconnect, rebuild sends nothing
// until the new session's first keyframe.
func TestRebindWaitsForKeyframe(t *testing.T) {
	desc, aus := hostileCamera(t)
	c := &Counters{}
	plan, err := NewPlan(desc, Config{}, c)
	if err != nil {
		t.Fatal(err)
	}
	tr := plan.Tracks[0]
	for _, p := range modeZeroPackets(aus[:5], 99, 0) {
		if _, _, err := tr.Process(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := plan.Rebind(desc); err != nil {
		t.Fatal(err)
	}
	before := c.Snapshot()["before_keyframe"][0]
	first := true
	for _, p := range modeZeroPackets(aus[20:27], 99, 777) {
		out, key, err := tr.Process(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > 0 && first {
			first = false
			if key != 0 {
				t.Fatal("first packet after the reconnect is not a keyframe")
			}
		}
	}
	if got := c.Snapshot()["before_keyframe"][0] - before; got != 5 {
		t.Errorf("%d access units dropped after the reconnect, want 5", got)
	}
}

func TestAudioFormats(t *testing.T) {
	aac := &format.MPEG4Audio{PayloadTyp: 101, Config: &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 2},
		SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
	desc := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.MJPEG{}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{aac}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.Opus{PayloadTyp: 100, ChannelCount: 2}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.LPCM{PayloadTyp: 102, BitDepth: 16, SampleRate: 8000, ChannelCount: 1}}},
	}}
	plan, err := NewPlan(desc, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range plan.Medias() {
		got = append(got, m.Formats[0].RTPMap())
	}
	if want := "[JPEG/90000 mpeg4-generic/48000/2 opus/48000/2]"; fmt.Sprint(got) != want {
		t.Errorf("reader formats %q, want %s (LPCM refused)", got, want)
	}
	// Audio gets the header rewrite: payload unchanged, PT the reader's.
	out, _, err := plan.Tracks[1].Process(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, Extension: true,
		ExtensionProfile: 0xbede, Extensions: nil}, Payload: []byte{0, 16, 1, 2, 3}})
	if err != nil || len(out) != 1 || out[0].PayloadType != 97 || out[0].Extension || !bytes.Equal(out[0].Payload, []byte{0, 16, 1, 2, 3}) {
		t.Errorf("AAC packet: %v %v", out, err)
	}
}

func TestInvalidParameterSets(t *testing.T) {
	_, aus := hostileCamera(t)
	goodSPS := aus[0][0]
	if goodSPS[0]&0x1f != 7 {
		t.Fatal("fixture does not start with an SPS")
	}
	badLevel := bytes.Clone(goodSPS)
	badLevel[3] = 0xfe // level_idc
	for _, tc := range []struct {
		name string
		sps  []byte
		want string
	}{
		{"truncated", goodSPS[:3], "truncated"},
		{"level", badLevel, "unknown level_idc 254"},
		{"huge", h264SPS(66, 30, 1000, 10), "absurd"},
		{"tall", h264SPS(66, 30, 10, 600), "absurd"},
		{"garbage", []byte{0x67, 0xff, 0xff, 0xff, 0xff, 0xff}, "H.264 SPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desc, _ := hostileCamera(t)
			desc.Medias[1].Formats[0].(*format.H264).SPS = tc.sps
			c := &Counters{}
			_, err := NewPlan(desc, Config{}, c)
			if !errors.Is(err, ErrInvalidParameters) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPlan: %v, want ErrInvalidParameters mentioning %q", err, tc.want)
			}
			if c.Snapshot()["invalid_sps"][0] != 1 {
				t.Errorf("invalid_sps not counted: %v", c.Snapshot())
			}
			// The same SPS in-band: Process refuses the access unit with an error.
			desc2, _ := hostileCamera(t)
			plan, err := NewPlan(desc2, Config{}, c)
			if err != nil {
				t.Fatal(err)
			}
			au := append([][]byte{tc.sps}, aus[0][1:]...)
			var perr error
			for _, p := range modeZeroPackets([][][]byte{au}, 99, 0) {
				out, _, err := plan.Tracks[0].Process(p)
				if err != nil {
					perr = err
				}
				if len(out) > 0 {
					t.Fatal("an access unit with an invalid SPS went out")
				}
			}
			if !errors.Is(perr, ErrInvalidParameters) {
				t.Errorf("Process: %v, want ErrInvalidParameters", perr)
			}
		})
	}
	if _, err := validateH264SPS(goodSPS); err != nil {
		t.Errorf("fixture SPS refused: %v", err)
	}
	if _, err := validateH264SPS(h264SPS(66, 30, 79, 44)); err != nil {
		t.Errorf("1280x720 SPS refused: %v", err)
	}
}

// h264SPS writes a minimal baseline SPS with the given size in macroblocks.
func h264SPS(profile, level byte, mbW, mbH uint32) []byte {
	var bw bitWriter
	bw.ue(0)   // seq_parameter_set_id
	bw.ue(0)   // log2_max_frame_num_minus4
	bw.ue(2)   // pic_order_cnt_type
	bw.ue(1)   // max_num_ref_frames
	bw.bit(0)  // gaps_in_frame_num_value_allowed_flag
	bw.ue(mbW) // pic_width_in_mbs_minus1
	bw.ue(mbH) // pic_height_in_map_units_minus1
	bw.bit(1)  // frame_mbs_only_flag
	bw.bit(1)  // direct_8x8_inference_flag
	bw.bit(0)  // frame_cropping_flag
	bw.bit(0)  // vui_parameters_present_flag
	bw.bit(1)  // rbsp_stop_one_bit
	return annexb.AppendEmulationPrevention([]byte{0x67, profile, 0, level}, bw.bytes())
}

type bitWriter struct {
	b []byte
	n int
}

func (w *bitWriter) bit(v uint32) {
	if w.n%8 == 0 {
		w.b = append(w.b, 0)
	}
	if v != 0 {
		w.b[len(w.b)-1] |= 0x80 >> (w.n % 8)
	}
	w.n++
}

func (w *bitWriter) ue(v uint32) {
	x := uint64(v) + 1
	l := 0
	for (x >> l) > 1 {
		l++
	}
	for range l {
		w.bit(0)
	}
	for i := l; i >= 0; i-- {
		w.bit(uint32(x>>i) & 1)
	}
}

func (w *bitWriter) bytes() []byte { return w.b }

func TestKeepSEIConfig(t *testing.T) {
	for _, tc := range []struct {
		in  []string
		err string
	}{
		{[]string{"recovery_point", "user_data_unregistered"}, ""},
		{[]string{"5", "137"}, ""},
		{[]string{"user_data_unregistered=086f3693-b7b3-4f2c-9653-21492feee5b8"}, ""},
		{[]string{"bogus"}, "unknown SEI payload type"},
		{[]string{"recovery_point=086f3693b7b34f2c965321492feee5b8"}, "only applies to user_data_unregistered"},
		{[]string{"user_data_unregistered=xyz"}, "32 hex digits"},
		{[]string{"-1"}, "unknown SEI payload type"},
	} {
		if err := (Config{KeepSEI: tc.in}).Validate(); (tc.err == "") != (err == nil) {
			t.Errorf("Validate(KeepSEI %q) = %v", tc.in, err)
		}
		_, err := NewPlan(&description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo,
			Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}}}, Config{KeepSEI: tc.in}, nil)
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("KeepSEI %q: %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestSEIFilter(t *testing.T) {
	uuid := []byte("0123456789abcdef")
	// recovery_point (6), user data (5) with zero runs needing emulation
	// prevention, and a 300-byte message (two-byte size).
	msgs := []seiMessage{
		{6, []byte{0x84}},
		{5, append(bytes.Clone(uuid), 0, 0, 1, 0, 0, 0, 3)},
		{4, bytes.Repeat([]byte{0xb5}, 300)},
	}
	nal := marshalSEI([]byte{0x06}, msgs)
	if bytes.Contains(nal[1:], []byte{0, 0, 1}) || bytes.Contains(nal[1:], []byte{0, 0, 0}) {
		t.Fatalf("no emulation prevention in %x", nal)
	}
	got, err := parseSEI(nal, 1)
	if err != nil || len(got) != 3 || !bytes.Equal(got[1].payload, msgs[1].payload) || len(got[2].payload) != 300 {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	rules, _ := parseKeepSEI([]string{"recovery_point"})
	kept, dropped, err := filterSEI(nal, 1, rules)
	if err != nil || dropped != 2 {
		t.Fatalf("filter: %v dropped %d", err, dropped)
	}
	if m, _ := parseSEI(kept, 1); len(m) != 1 || m[0].typ != 6 {
		t.Errorf("kept %v", m)
	}
	if k, d, _ := filterSEI(nal, 1, nil); k != nil || d != 3 {
		t.Errorf("no rules kept %x", k)
	}
	for _, bad := range [][]byte{{0x06}, {0x06, 0x05, 0x10, 1, 2}, {0x06, 0xff, 0xff}} {
		if _, err := parseSEI(bad, 1); err == nil {
			t.Errorf("parseSEI(%x) accepted", bad)
		}
	}
}

func TestRepacketizeFUA(t *testing.T) {
	// A 5000-byte NAL unit in two 2501-byte FU-A fragments (oversized), as a
	// camera with a big MTU sends it.
	nalu := append([]byte{0x65}, bytes.Repeat([]byte{0x11, 0x22, 0x33}, 1666)...)
	body := nalu[1:]
	half := len(body) / 2
	frags := [][]byte{
		append([]byte{0x7c, 0x80 | 5}, body[:half]...),
		append([]byte{0x7c, 0x40 | 5}, body[half:]...),
	}
	var out [][]byte
	for _, f := range frags {
		out = append(out, repacketize(codecH264, f, encoderPayload)...)
	}
	dec := &rtph264.Decoder{PacketizationMode: 1}
	_ = dec.Init()
	var au [][]byte
	for i, p := range out {
		if len(p) > encoderPayload {
			t.Fatalf("payload %d of %d bytes", i, len(p))
		}
		a, err := dec.Decode(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Marker: i == len(out)-1}, Payload: p})
		if err == nil {
			au = a
		}
	}
	if len(au) != 1 || !bytes.Equal(au[0], nalu) {
		t.Fatalf("re-fragmented NAL unit does not reassemble (%d NAL units)", len(au))
	}
}

// TestInBandParameters: a camera whose SDP has no parameter sets; rebuild
// waits for the first keyframe carrying them, drops what comes before, and
// learns and validates them in-band.
func TestInBandParameters(t *testing.T) {
	desc, aus := hostileCamera(t)
	h := desc.Medias[1].Formats[0].(*format.H264)
	h.SPS, h.PPS = nil, nil
	c := &Counters{}
	plan, err := NewPlan(desc, Config{}, c)
	if err != nil {
		t.Fatal(err)
	}
	if f := plan.Medias()[0].Formats[0].(*format.H264); f.SPS != nil {
		t.Fatal("reader SDP has an SPS the camera never sent")
	}
	tr := plan.Tracks[0]
	dep := newDepacketizer(t, codecH264)
	first := true
	for _, p := range modeZeroPackets(aus[1:30], 99, 0) { // P frames, then the IDR at 25
		out, key, err := tr.Process(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > 0 && first {
			if key != 0 {
				t.Fatal("first output is not a random-access unit")
			}
			first = false
		}
		for _, o := range out {
			if err := dep.push(o); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := c.Snapshot()["before_keyframe"][0]; got != 24 {
		t.Errorf("before_keyframe = %d, want 24", got)
	}
	if len(dep.aus) != 5 || countNALType(dep.aus[:1], codecH264, 7) != 1 {
		t.Errorf("%d access units out, first with %d SPS; want 5, 1", len(dep.aus), countNALType(dep.aus[:1], codecH264, 7))
	}
}

// TestRTSPCameraWithMetadataAndExtensions: an RTSP camera (gortsplib's
// server, over real loopback TCP) offers H.264 plus an ONVIF metadata track
// and puts a header extension and CSRCs on every packet. A client that
// reads it directly sees the extensions (the control); through the plan,
// only the video track exists and no packet carries them.
func TestRTSPCameraWithMetadataAndExtensions(t *testing.T) {
	desc, aus := hostileCamera(t)
	h := desc.Medias[1].Formats[0].(*format.H264)
	h.PacketizationMode = 1
	camDesc := &description.Session{Medias: []*description.Media{desc.Medias[0], desc.Medias[1]}}
	srv := &rtspTestServer{desc: camDesc}
	url := srv.start(t)

	enc := &rtph264.Encoder{PayloadType: 99, PacketizationMode: 1, PayloadMaxSize: 1300}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	var pkts []*rtp.Packet
	for i, au := range aus {
		ps, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			p.Timestamp = uint32(i * 3600)
			p.CSRC = []uint32{0xdeadbeef}
			_ = p.Header.SetExtension(1, []byte("camera-id-42"))
		}
		pkts = append(pkts, ps...)
	}
	go srv.feed(t, pkts, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 107}, Payload: []byte(`<tt:MetadataStream><tt:Event>leak</tt:Event></tt:MetadataStream>`)})

	dep, counters, out := readThrough(t, url, Config{}, 10, 20*time.Second)
	if len(dep.aus) < 10 {
		t.Fatalf("%d access units", len(dep.aus))
	}
	for _, p := range out {
		if p.Extension || len(p.CSRC) > 0 {
			t.Fatalf("extension or CSRC crossed: %+v", p.Header)
		}
	}
	s := counters.Snapshot()
	if s["extension"][0] == 0 || s["csrc"][0] == 0 || s["media"][0] == 0 {
		t.Errorf("the camera's extensions/CSRCs/metadata track were not seen and counted: %v (control failed)", s)
	}
}

func TestStartCodeEmulation(t *testing.T) {
	for _, tc := range []struct {
		nal  []byte
		drop bool
	}{
		{[]byte{0x41, 0x9a, 0, 0, 3, 0, 1}, false},
		{[]byte{0x41, 0x9a, 0, 0, 1, 5}, true},
		{[]byte{0x41, 0x9a, 0, 0, 0, 5}, true},
		{[]byte{0x41, 0x9a, 0, 0, 2}, true},
		{[]byte{0x41, 0x9a, 5, 0, 0, 0, 0}, false}, // trailing zeros are trimmed
	} {
		c := &Counters{}
		a := assembler{codec: codecH264}
		a.add(tc.nal, c)
		if dropped := len(a.nalus) == 0; dropped != tc.drop {
			t.Errorf("%x: dropped %v, want %v", tc.nal, dropped, tc.drop)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		err string
	}{
		{Config{}, ""},
		{Config{Mode: ModePassthrough, Audio: AudioDrop}, ""},
		{Config{Mode: "clean"}, `mode "clean"`},
		{Config{Audio: "mute"}, `audio "mute"`},
		{Config{Mode: ModePassthrough, KeepSEI: []string{"recovery_point"}}, "only applies to mode rebuild"},
	} {
		err := tc.cfg.Validate()
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.err)
		}
	}
}

package rebuild

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"strings"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmjpeg"
	"github.com/pion/rtp"
)

// fixtureJPEGs reads testdata/frames.mjpeg (ffmpeg's MJPEG encoder, see
// make-fixtures.sh) as its JPEG frames.
func fixtureJPEGs(t testing.TB) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/frames.mjpeg")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range bytes.Split(b, []byte{0xff, 0xd8}) {
		if len(f) > 0 {
			out = append(out, append([]byte{0xff, 0xd8}, f...))
		}
	}
	if len(out) != 5 {
		t.Fatalf("fixture has %d frames, want 5", len(out))
	}
	return out
}

// goJPEG is a w x h 4:2:0 JPEG written by Go's encoder (standard Huffman
// tables, no APPn).
func goJPEG(t testing.TB, w, h int, shade uint8) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{shade, uint8(x * 8), uint8(y * 8), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 50}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cameraPackets packetizes frames as a camera would (gortsplib's encoder,
// payloads of at most max bytes), one frame every 3600 ticks.
func cameraPackets(t testing.TB, frames [][]byte, max int) []*rtp.Packet {
	t.Helper()
	enc := &rtpmjpeg.Encoder{PayloadMaxSize: max}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	var out []*rtp.Packet
	for i, f := range frames {
		pkts, err := enc.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			p.Timestamp = uint32(1000 + 3600*i)
		}
		out = append(out, pkts...)
	}
	return out
}

func mjpegTrack(t testing.TB, mode Mode, c *Counters) *Track {
	t.Helper()
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{&format.MJPEG{}}}}}
	plan, err := NewPlan(desc, Config{Mode: mode}, c)
	if err != nil {
		t.Fatal(err)
	}
	return plan.Tracks[0]
}

// readerFrames decodes reader-facing packets with gortsplib's decoder (what
// a recorder behind the proxy does) and checks each frame with Go's JPEG
// decoder.
func readerFrames(t testing.TB, pkts []*rtp.Packet) [][]byte {
	t.Helper()
	dec := &rtpmjpeg.Decoder{}
	if err := dec.Init(); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range pkts {
		img, err := dec.Decode(p)
		if errors.Is(err, rtpmjpeg.ErrMorePacketsNeeded) {
			continue
		}
		if err != nil {
			t.Fatalf("reader's decoder: %v", err)
		}
		if _, err := jpeg.Decode(bytes.NewReader(img)); err != nil {
			t.Fatalf("reader's frame does not decode: %v", err)
		}
		out = append(out, img)
	}
	return out
}

func TestCleanJPEGFixture(t *testing.T) {
	for i, f := range fixtureJPEGs(t) {
		c := &Counters{}
		clean, info, err := cleanJPEG(f, c)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if info != (jpegInfo{64, 48}) {
			t.Errorf("frame %d: %+v, want 64x48", i, info)
		}
		// ffmpeg writes an 18-byte JFIF APP0 segment: dropped and counted.
		if got := c.Snapshot()["jpeg_segment"]; got != [2]uint64{1, 18} {
			t.Errorf("frame %d: jpeg_segment %v, want [1 18]", i, got)
		}
		// ffmpeg's frames have one quantization table; RTP/JPEG carries two
		// (a 69-byte DQT segment for table 1 is added).
		if len(clean) != len(f)-18+69 || bytes.Contains(clean, []byte("JFIF")) {
			t.Errorf("frame %d: clean frame of %d bytes from %d", i, len(clean), len(f))
		}
		want, err := jpeg.Decode(bytes.NewReader(f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := jpeg.Decode(bytes.NewReader(clean))
		if err != nil {
			t.Fatalf("frame %d: clean frame does not decode: %v", i, err)
		}
		if !sameImage(want, got) {
			t.Errorf("frame %d: clean frame decodes to another picture", i)
		}
	}
}

func sameImage(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

// insertBefore returns b with ins inserted before its last n bytes.
func insertBefore(b []byte, n int, ins []byte) []byte {
	out := append([]byte(nil), b[:len(b)-n]...)
	out = append(out, ins...)
	return append(out, b[len(b)-n:]...)
}

// segment is a marker segment with body.
func segment(marker byte, body string) []byte {
	n := len(body) + 2
	return append([]byte{0xff, marker, byte(n >> 8), byte(n)}, body...)
}

func TestCleanJPEGRefuses(t *testing.T) {
	good := goJPEG(t, 16, 16, 0)
	if _, _, err := cleanJPEG(good, &Counters{}); err != nil {
		t.Fatalf("Go's JPEG: %v", err)
	}
	sof := bytes.Index(good, []byte{0xff, 0xc0})
	sos := bytes.Index(good, []byte{0xff, 0xda})
	dht := bytes.Index(good, []byte{0xff, 0xc4})
	with := func(at int, f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b[at:])
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "no SOI"},
		{"truncated header", good[:sof+6], "runs past the frame"},
		{"no EOI", good[:len(good)-2], "no EOI"},
		{"progressive", with(sof, func(b []byte) { b[1] = 0xc2 }), "only baseline"},
		{"12-bit", with(sof, func(b []byte) { b[4] = 12 }), "precision 12"},
		{"odd size", with(sof, func(b []byte) { b[6] = 17 }), "multiples of 8"},
		{"restart interval", insertBefore(good, len(good)-sos, segment(0xdd, "\x00\x04")), "DRI"},
		{"restart marker", insertBefore(good, 2, []byte{0xff, 0xd0, 0x12}), "restart marker"},
		{"second scan", insertBefore(good, 2, good[sos:sos+14]), "after the scan"},
		{"custom Huffman", with(dht, func(b []byte) { b[22]++ }), "not the standard one"},
		{"undefined table", with(sof, func(b []byte) { b[12] = 3 }), "not defined"},
		{"segment overruns", insertBefore(good, 2, []byte{0xff, 0xfe, 0xff, 0xff}), "runs past"},
		{"second SOI", insertBefore(good, len(good)-sof, []byte{0xff, 0xd8}), "unexpected marker"},
		{"empty scan", append(bytes.Clone(good[:bytes.Index(good, []byte{0xff, 0xda})+14]), 0xff, 0xd9), "empty scan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := cleanJPEG(tc.b, &Counters{})
			var je *jpegError
			if !errors.As(err, &je) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a jpegError with %q", err, tc.want)
			}
		})
	}
}

// TestMJPEGRebuild sends frames through a rebuild-mode track, one with a
// COM segment after its scan and bytes after its EOI (covert data a camera
// could hide in RTP/JPEG): readers get every frame, decodable, without them.
func TestMJPEGRebuild(t *testing.T) {
	frames := fixtureJPEGs(t)
	secret := segment(0xfe, "cordon-leak-test")
	frames[2] = append(insertBefore(frames[2], 2, secret), "hidden-after-eoi"...)
	c := &Counters{}
	tr := mjpegTrack(t, ModeRebuild, c)
	var out []*rtp.Packet
	keys := 0
	for _, p := range cameraPackets(t, frames, 300) {
		pkts, key, err := tr.Process(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkts) > 0 {
			if key != 0 {
				t.Errorf("frame's key index %d, want 0", key)
			}
			keys++
			for _, o := range pkts {
				if o.PayloadType != 26 || o.Timestamp != pkts[0].Timestamp || o.MarshalSize() > 1472 {
					t.Fatalf("packet %+v", o.Header)
				}
				if bytes.Contains(o.Payload, []byte("leak-test")) || bytes.Contains(o.Payload, []byte("hidden")) {
					t.Fatal("covert data crossed")
				}
			}
			if !pkts[len(pkts)-1].Marker {
				t.Error("frame's last packet has no marker")
			}
			// Luma and chroma tables (128 bytes), as RFC 2435 types 0/1
			// need and ffmpeg's depacketizer insists on.
			if q := pkts[0].Payload; q[5] < 128 || q[10] != 0 || q[11] != 128 {
				t.Errorf("first packet's quantization header %x", q[:12])
			}
		}
		out = append(out, pkts...)
	}
	if keys != len(frames) {
		t.Errorf("%d frames out, want %d", keys, len(frames))
	}
	got := readerFrames(t, out)
	if len(got) != len(frames) {
		t.Fatalf("reader decoded %d frames, want %d", len(got), len(frames))
	}
	snap := c.Snapshot()
	if snap["jpeg_segment"] != [2]uint64{1, uint64(len(secret))} {
		t.Errorf("jpeg_segment %v, want [1 %d]", snap["jpeg_segment"], len(secret))
	}
	// The camera-side decoder adds an EOI after the trailing bytes.
	if snap["jpeg_trailing"] != [2]uint64{1, uint64(len("hidden-after-eoi") + 2)} {
		t.Errorf("jpeg_trailing %v", snap["jpeg_trailing"])
	}
	// Sequence numbers run on without gaps.
	for i := 1; i < len(out); i++ {
		if out[i].SequenceNumber != out[i-1].SequenceNumber+1 {
			t.Fatalf("sequence gap at %d", i)
		}
	}
}

// TestMJPEGLoss: a frame that lost a packet, or its end, is dropped and
// counted; the frames around it cross.
func TestMJPEGLoss(t *testing.T) {
	frames := fixtureJPEGs(t)
	pkts := cameraPackets(t, frames, 300)
	var starts []int
	for i, p := range pkts {
		if isMJPEGStart(p.Payload) {
			starts = append(starts, i)
		}
	}
	// Frame 1 loses its second packet, frame 3 its marker packet.
	lose := map[int]bool{starts[1] + 1: true, starts[4] - 1: true}
	c := &Counters{}
	tr := mjpegTrack(t, ModeRebuild, c)
	var out []*rtp.Packet
	var lostBytes uint64
	for i, p := range pkts {
		if lose[i] {
			continue
		}
		if (i >= starts[1] && i < starts[2]) || (i >= starts[3] && i < starts[4]) {
			lostBytes += uint64(len(p.Payload))
		}
		o, _, err := tr.Process(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o...)
	}
	if got := len(readerFrames(t, out)); got != 3 {
		t.Errorf("%d frames crossed, want 3", got)
	}
	if got := c.Snapshot()["lost"]; got[1] != lostBytes {
		t.Errorf("lost %v, want %d bytes", got, lostBytes)
	}
}

func TestMJPEGPassthrough(t *testing.T) {
	pkts := cameraPackets(t, fixtureJPEGs(t), 300)
	tr := mjpegTrack(t, ModePassthrough, &Counters{})
	var out []*rtp.Packet
	keys := 0
	for _, p := range pkts {
		start := isMJPEGStart(p.Payload)
		o, key, err := tr.Process(p)
		if err != nil || len(o) != 1 {
			t.Fatalf("%d packets, %v", len(o), err)
		}
		if (key == 0) != start {
			t.Fatalf("key %d on a packet that starts a frame: %v", key, start)
		}
		if start {
			keys++
		}
		out = append(out, &rtp.Packet{Header: o[0].Header, Payload: o[0].Payload})
	}
	if keys != 5 || len(readerFrames(t, out)) != 5 {
		t.Errorf("%d keyframes, want 5", keys)
	}
}

// TestMJPEGTooLarge: a frame above maxJPEGSize is dropped as au_size, the
// next one crosses.
func TestMJPEGTooLarge(t *testing.T) {
	c := &Counters{}
	tr := mjpegTrack(t, ModeRebuild, c)
	body := make([]byte, 1400)
	n := 0
	for off := 0; off <= maxJPEGSize; off += len(body) {
		p := &rtp.Packet{Header: rtp.Header{PayloadType: 26, Timestamp: 1}, Payload: append([]byte{0, byte(off >> 16), byte(off >> 8), byte(off), 1, 50, 8, 8}, body...)}
		p.Marker = off+len(body) > maxJPEGSize
		if o, _, _ := tr.Process(p); len(o) > 0 {
			t.Fatal("an oversized frame crossed")
		}
		n += len(p.Payload)
	}
	if got := c.Snapshot()["au_size"]; got[1] != uint64(n) {
		t.Errorf("au_size %v, want %d bytes", got, n)
	}
	for _, p := range cameraPackets(t, fixtureJPEGs(t)[:1], 1000) {
		p.Timestamp = 5
		if o, key, _ := tr.Process(p); len(o) > 0 && key != 0 {
			t.Error("frame after the oversized one: no key")
		}
	}
}

// mjpegSeeds are small frames of Go's encoder as a camera would send them,
// plus oddities.
func mjpegSeeds(t testing.TB) [][]byte {
	f1, f2 := goJPEG(t, 16, 8, 0), goJPEG(t, 8, 8, 200)
	pkts := cameraPackets(t, [][]byte{f1, f2, f1}, 180)
	return [][]byte{
		framePackets(pkts),
		framePackets(lossy(pkts)),
		framePackets(cameraPackets(t, [][]byte{append(insertBefore(f2, 2, segment(0xfe, "x")), 'y')}, 200)),
		{0, 10, 1, 0, 0, 0, 0, 1, 50, 1, 1, 0, 0},
	}
}

// fuzzMJPEG feeds packets through an MJPEG track: every output packet is
// clean, and in rebuild mode every frame re-parses with gortsplib's decoder
// and holds nothing but image data.
func fuzzMJPEG(t *testing.T, mode Mode, data []byte) {
	tr := mjpegTrack(t, mode, &Counters{})
	dec := &rtpmjpeg.Decoder{}
	if err := dec.Init(); err != nil {
		t.Fatal(err)
	}
	for _, p := range unframePackets(data, 26) {
		out, key, _ := tr.Process(p)
		if len(out) > 0 && mode == ModeRebuild && key != 0 {
			t.Fatalf("frame with key %d", key)
		}
		for _, o := range out {
			if o.Extension || o.Padding || len(o.CSRC) > 0 || o.PayloadType != 26 || o.MarshalSize() > 1472 {
				t.Fatalf("unclean packet %+v", o.Header)
			}
			if mode != ModeRebuild {
				continue
			}
			img, err := dec.Decode(o)
			if errors.Is(err, rtpmjpeg.ErrMorePacketsNeeded) {
				continue
			}
			if err != nil {
				t.Fatalf("rebuilt output does not re-parse: %v", err)
			}
			c := &Counters{}
			if _, _, err := cleanJPEG(img, c); err != nil || len(c.Snapshot()) > 0 {
				t.Fatalf("rebuilt frame: %v, %v", err, c.Snapshot())
			}
		}
	}
}

func FuzzRebuildMJPEG(f *testing.F) {
	for _, s := range mjpegSeeds(f) {
		f.Add(s[:min(len(s), maxSeed)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzMJPEG(t, ModeRebuild, data)
		fuzzMJPEG(t, ModePassthrough, data)
	})
}

// FuzzCleanJPEG: cleanJPEG never panics; what it accepts is accepted again
// unchanged with nothing to drop (no APPn/COM or trailing data survives),
// and gortsplib's encoder packetizes it.
func FuzzCleanJPEG(f *testing.F) {
	for _, fr := range fixtureJPEGs(f)[:2] {
		f.Add(fr)
	}
	g := goJPEG(f, 8, 8, 9)
	f.Add(g)
	f.Add(append(insertBefore(g, 2, segment(0xe1, "Exif\x00\x00")), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		clean, info, err := cleanJPEG(b, &Counters{})
		if err != nil {
			return
		}
		if len(clean) > len(b)+69 || info.width <= 0 || info.height <= 0 {
			t.Fatalf("accepted %dx%d, %d bytes from %d", info.width, info.height, len(clean), len(b))
		}
		c := &Counters{}
		again, _, err := cleanJPEG(clean, c)
		if err != nil || !bytes.Equal(again, clean) || len(c.Snapshot()) > 0 {
			t.Fatalf("cleaned frame changes when cleaned again: %v %v", err, c.Snapshot())
		}
		m := &mjpegRebuilder{enc: &rtpmjpeg.Encoder{PayloadMaxSize: encoderPayload}}
		if err := m.enc.Init(); err != nil {
			t.Fatal(err)
		}
		if pkts, err := m.encode(clean); err != nil || len(pkts) == 0 {
			t.Fatalf("encoder: %v", err)
		}
	})
}

package rebuild

import (
	"bytes"
	"os"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/cordon-vms/cordon/proxy/internal/annexb"
	"github.com/cordon-vms/cordon/proxy/internal/rtpseq"
	"github.com/pion/rtp"
)

// maxSeed keeps seeds small: the fuzzer minimizes every new interesting
// input, and minimizing inputs of a few KiB through this pipeline stalls it
// for minutes. Seeds are packetized with small payloads so a few hundred
// bytes still hold parameter sets, fragments and aggregation packets.
const maxSeed = 600

// Fuzz inputs are packet sequences framed by package rtpseq (payloads with
// marker, new-frame, loss, reordering and clock-step flags).
func framePackets(pkts []*rtp.Packet) []byte { return rtpseq.Encode(pkts) }

func unframePackets(b []byte, pt uint8) []*rtp.Packet { return rtpseq.Decode(b, pt) }

// lossy returns pkts without every marker packet of the access units that
// take more than one packet: what a lossy link does to the packet that
// ends a frame.
func lossy(pkts []*rtp.Packet) []*rtp.Packet {
	var out []*rtp.Packet
	for i, p := range pkts {
		if p.Marker && i > 0 && pkts[i-1].Timestamp == p.Timestamp {
			continue
		}
		out = append(out, p)
	}
	return out
}

// h264Seeds are the fixture packetized by gortsplib (mode 1, FU-A and
// STAP-A) and in mode 0, plus a few hand-made oddities.
func h264Seeds(t testing.TB) [][]byte {
	aus := fixtureAUs(t)
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, PayloadMaxSize: 120}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	var mode1 []*rtp.Packet
	for i, au := range aus[:6] {
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			p.Timestamp = uint32(i * 3600)
		}
		mode1 = append(mode1, pkts...)
	}
	return [][]byte{
		framePackets(mode1),
		framePackets(modeZeroPackets(aus[:4], 96, 0)),
		framePackets(mode1[:len(mode1)/2]),
		framePackets(lossy(mode1)),
		{0, 3, 1, 0x7c, 0x85, 0x88, 0, 2, 1, 0x7c, 0x45},
		{0, 5, 1, 0x18, 0, 1, 0x09, 0},
		// A complete NAL unit without the marker, then a new frame with it
		// (the two-packet crash; see TestTwoAccessUnitsInOnePush).
		{0, 3, 0, 0x41, 0x9a, 0x80, 0, 3, 3, 0x41, 0x9a, 0x80},
		// Reordered and duplicated fragments, a clock step back.
		{0, 4, 0, 0x7c, 0x85, 0x88, 0x80, 0, 3, 8, 0x7c, 0x45, 0x81, 0, 3, 0x13, 0x41, 0x9a, 0x80},
	}
}

func h265Seeds(t testing.TB) [][]byte {
	b, err := os.ReadFile("../camsim/clips/h265-640x360.h265")
	if err != nil {
		t.Fatal(err)
	}
	var aus [][][]byte
	var cur [][]byte
	for _, n := range annexb.Split(b) {
		if (n[0]>>1)&0x3f == 35 { // AUD
			if cur != nil {
				aus = append(aus, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, n)
	}
	enc := &rtph265.Encoder{PayloadType: 96, PayloadMaxSize: 120}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	var pkts []*rtp.Packet
	for i, au := range aus[:4] {
		ps, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			p.Timestamp = uint32(i * 3600)
		}
		pkts = append(pkts, ps...)
	}
	return [][]byte{framePackets(pkts), framePackets(lossy(pkts)), {0, 4, 1, 0x62, 0x01, 0x93, 0xaa},
		{0, 4, 0, 0x02, 0x01, 0xd0, 0x80, 0, 4, 3, 0x02, 0x01, 0xd0, 0x80}}
}

// fuzzRebuild feeds fuzz packets through a track and checks every output
// packet is clean and that in rebuild mode gortsplib's depacketizer
// accepts all of it.
func fuzzRebuild(t *testing.T, codec videoCodec, mode Mode, data []byte) {
	var f format.Format = &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	if codec == codecH265 {
		f = &format.H265{PayloadTyp: 96}
	}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{f}}}}
	cfg := Config{Mode: mode, AUD: len(data)%2 == 0}
	if mode == ModeRebuild {
		cfg.KeepSEI = []string{"recovery_point"}
	}
	plan, err := NewPlan(desc, cfg, &Counters{})
	if err != nil {
		t.Fatal(err)
	}
	tr := plan.Tracks[0]
	dep := newDepacketizer(t, codec)
	for _, p := range unframePackets(data, 96) {
		out, _, _ := tr.Process(p)
		for _, o := range out {
			if o.Extension || o.Padding || len(o.CSRC) > 0 || o.PayloadType != 96 {
				t.Fatalf("unclean header %+v", o.Header)
			}
			if o.MarshalSize() > 1472 {
				t.Fatalf("packet of %d bytes", o.MarshalSize())
			}
			if mode == ModeRebuild {
				if err := dep.push(o); err != nil {
					t.Fatalf("rebuilt output does not re-parse: %v (payload %x)", err, o.Payload[:min(16, len(o.Payload))])
				}
			}
		}
	}
	for _, au := range dep.aus {
		for _, n := range au {
			if classify(codec, codec.nalType(n)) == nalDrop && !(codec.nalType(n) == 9 || codec.nalType(n) == 35) {
				t.Fatalf("NAL type %d crossed", codec.nalType(n))
			}
		}
	}
}

func FuzzRebuildH264(f *testing.F) {
	for _, s := range h264Seeds(f) {
		f.Add(s[:min(len(s), maxSeed)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRebuild(t, codecH264, ModeRebuild, data)
		fuzzRebuild(t, codecH264, ModePassthrough, data)
	})
}

func FuzzRebuildH265(f *testing.F) {
	for _, s := range h265Seeds(f) {
		f.Add(s[:min(len(s), maxSeed)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRebuild(t, codecH265, ModeRebuild, data)
		fuzzRebuild(t, codecH265, ModePassthrough, data)
	})
}

// FuzzSEI: whatever parses re-marshals to something that parses the same.
func FuzzSEI(f *testing.F) {
	aus := fixtureAUs(f)
	for _, au := range aus {
		for _, n := range au {
			if n[0]&0x1f == 6 {
				f.Add(n)
			}
		}
	}
	f.Add(marshalSEI([]byte{6}, []seiMessage{{6, []byte{0x84}}, {300, []byte{0, 0, 0}}}))
	f.Fuzz(func(t *testing.T, nal []byte) {
		msgs, err := parseSEI(nal, 1)
		if err != nil || len(nal) == 0 {
			return
		}
		again, err := parseSEI(marshalSEI(nal[:1], msgs), 1)
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-marshalled SEI: %d messages, %v; want %d", len(again), err, len(msgs))
		}
		for i := range msgs {
			if again[i].typ != msgs[i].typ || !bytes.Equal(again[i].payload, msgs[i].payload) {
				t.Fatalf("message %d changed", i)
			}
		}
	})
}

// FuzzParameterSets: validation never panics, and what it accepts has a
// sane size.
func FuzzParameterSets(f *testing.F) {
	aus := fixtureAUs(f)
	for _, n := range aus[0] {
		f.Add(n)
	}
	f.Add(h264SPS(66, 30, 1000, 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		if info, err := validateH264SPS(b); err == nil && (info.width > maxDimension || info.height > maxDimension || info.width < 16) {
			t.Fatalf("accepted %dx%d", info.width, info.height)
		}
		_ = validateH264PPS(b)
		if info, err := validateH265SPS(b); err == nil && (info.width > maxDimension || info.height > maxDimension || info.width < 16) {
			t.Fatalf("accepted %dx%d", info.width, info.height)
		}
		_ = validateH265PPS(b)
		_ = validateH265VPS(b)
	})
}

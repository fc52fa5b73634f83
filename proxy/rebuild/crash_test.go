package rebuild

import (
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/pion/rtp"
)

// newVideoTrack returns the only track of a one-video-media plan.
func newVideoTrack(t *testing.T, codec videoCodec, mode Mode) *Track {
	t.Helper()
	var f format.Format = &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	if codec == codecH265 {
		f = &format.H265{PayloadTyp: 96}
	}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{f}}}}
	plan, err := NewPlan(desc, Config{Mode: mode}, &Counters{})
	if err != nil {
		t.Fatal(err)
	}
	return plan.Tracks[0]
}

func rtpPacket(seq uint16, ts uint32, marker bool, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, Marker: marker,
		SequenceNumber: seq, Timestamp: ts}, Payload: payload}
}

// TestTwoAccessUnitsInOnePush is the two-packet crash: a complete NAL unit
// without the marker bit, then a packet with a new timestamp and the marker
// set. That one push completes two access units; the second completion used
// to clear the buffers the first one still referenced, and rebuildAU then
// indexed an empty NAL unit (index out of range, the whole process down).
func TestTwoAccessUnitsInOnePush(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec videoCodec
		nal   []byte
	}{
		{"h264", codecH264, append([]byte{0x41}, make21(20)...)},              // non-IDR slice
		{"h265", codecH265, append([]byte{0x02, 0x01}, make21(19)...)},        // TRAIL_R
		{"h264-idr", codecH264, append([]byte{0x65}, make21(20)...)},          // IDR slice
		{"h265-idr", codecH265, append([]byte{19 << 1, 0x01}, make21(19)...)}, // IDR_W_RADL
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []Mode{ModeRebuild, ModePassthrough} {
				tr := newVideoTrack(t, tc.codec, mode)
				if _, _, err := tr.Process(rtpPacket(1, 1000, false, tc.nal)); err != nil {
					t.Fatal(err)
				}
				if _, _, err := tr.Process(rtpPacket(2, 4000, true, tc.nal)); err != nil {
					t.Fatal(err)
				}
			}
		})
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

// TestLostMarkerPacket: a well-formed stream whose keyframe access unit loses
// its last (marker) packet, as on UDP or a lossy link. The next access unit
// is a single packet with the marker set, so one push closes the broken
// keyframe and the next frame: the same crash as above, from ordinary loss.
// The stream must go on playing after it.
func TestLostMarkerPacket(t *testing.T) {
	aus := fixtureAUs(t)
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1, PayloadMaxSize: 1200}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	// 1200-byte payloads: the keyframe (2.8 KB) takes several packets, every
	// later frame (under 800 bytes) exactly one, with the marker set.
	tr := newVideoTrack(t, codecH264, ModeRebuild)
	dep := newDepacketizer(t, codecH264)
	seq := uint16(100)
	// The clip twice: the first keyframe is broken, the second one (the
	// clip's start again) must come through, and everything after it.
	for round := range 2 {
		for i, au := range aus {
			pkts, err := enc.Encode(au)
			if err != nil {
				t.Fatal(err)
			}
			if round == 0 && i == 0 {
				if len(pkts) < 2 {
					t.Fatalf("keyframe in %d packet(s); the test needs it fragmented", len(pkts))
				}
				pkts = pkts[:len(pkts)-1] // the marker packet of the keyframe is lost
			}
			for _, p := range pkts {
				p.Timestamp = uint32((round*len(aus) + i) * 3600)
				p.SequenceNumber = seq
				seq++
				out, _, err := tr.Process(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range out {
					if err := dep.push(o); err != nil {
						t.Fatalf("output does not re-parse: %v", err)
					}
				}
			}
		}
	}
	if len(dep.aus) < len(aus)-1 {
		t.Fatalf("%d access units came out after the lost marker packet; want at least the second round's %d", len(dep.aus), len(aus)-1)
	}
}

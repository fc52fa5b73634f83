package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// trunkWire is what an edge sends for one camera: the answer with desc's
// SDP, then pkts of media 0.
func trunkWire(t testing.TB, desc *description.Session, pkts ...*rtp.Packet) []byte {
	var b bytes.Buffer
	sdp, err := desc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeJSONFrame(&b, trunkAnswer{SDP: string(sdp)}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		f, err := packetFrame(0, p)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(f)
	}
	return b.Bytes()
}

func testDesc() *description.Session {
	return &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}},
	}}}
}

// readTrunkWire decodes what an edge sent as the core does (answer, SDP,
// then packets), returning the packets.
func readTrunkWire(r io.Reader) ([]*rtp.Packet, error) {
	desc, err := readPlayAnswer(r)
	if err != nil {
		return nil, err
	}
	var out []*rtp.Packet
	for {
		_, pkt, _, err := readPacket(r, len(desc.Medias))
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, pkt)
	}
}

// trunkWireCases are edge outputs and the error the core must see; they
// seed FuzzTrunkWire.
func trunkWireCases(t testing.TB) []struct {
	name string
	in   []byte
	want error // nil: decodes
} {
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 90000, SSRC: 1}, Payload: []byte{0x65, 1, 2, 3}}
	good := trunkWire(t, testDesc(), pkt, pkt)
	badIndex := append(append([]byte{}, trunkWire(t, testDesc())...), append(appendFrameHeader(nil, framePacket, 13), append([]byte{1}, good[len(good)-16:len(good)-4]...)...)...)
	badSDP := `{"sdp":"v=x"}`
	huge := append(append([]byte{}, trunkWire(t, testDesc())...), appendFrameHeader(nil, framePacket, 1<<30)...)
	return []struct {
		name string
		in   []byte
		want error
	}{
		{"good", good, nil},
		{"truncated packet", good[:len(good)-3], io.ErrUnexpectedEOF},
		{"media index out of range", badIndex, errTrunkFrame},
		{"huge frame", huge, errTrunkFrameSize},
		{"packet before answer", good[len(good)-(5+1+16):], errTrunkFrame},
		{"bad SDP", append(appendFrameHeader(nil, frameJSON, len(badSDP)), badSDP...), errTrunkFrame},
	}
}

func TestTrunkWire(t *testing.T) {
	for _, tc := range trunkWireCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			pkts, err := readTrunkWire(bytes.NewReader(tc.in))
			if tc.want == nil {
				if err != nil || len(pkts) != 2 || pkts[1].SequenceNumber != 7 || !bytes.Equal(pkts[1].Payload, []byte{0x65, 1, 2, 3}) {
					t.Fatalf("got %v, %v", pkts, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzTrunkWire: whatever an edge sends, the core's decoding returns an
// error or packets that re-encode within the frame limit, and never
// panics or allocates beyond the limits.
func FuzzTrunkWire(f *testing.F) {
	for _, tc := range trunkWireCases(f) {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pkts, _ := readTrunkWire(bytes.NewReader(b))
		for _, p := range pkts {
			if _, err := packetFrame(0, p); err != nil {
				t.Fatalf("decoded packet does not re-encode: %v", err)
			}
		}
	})
}

// TestTrunkOutputQueue: a trunk reader whose queue (bytes) is full answers
// "full" (the stream then skips it to the next keyframe), a track it was
// not told about is refused, and run sends what was queued as frames
// until the output stops.
func TestTrunkOutputQueue(t *testing.T) {
	tr := &rebuild.Track{}
	o := &trunkOutput{index: map[*rebuild.Track]int{tr: 0}, max: 100, q: make(chan []byte, 16), done: make(chan struct{})}
	o.r = &reader{}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96}, Payload: make([]byte, 30)}
	var ok int
	for range 5 {
		full, dropped, err := o.write(tr, pkt, time.Now(), time.Now())
		if full {
			if dropped != 1 || !errors.Is(err, errQueueFull) {
				t.Fatalf("full: dropped %d, err %v", dropped, err)
			}
			break
		}
		ok++
	}
	if ok != 2 { // 48-byte frames, 100 bytes
		t.Fatalf("%d packets queued before full, want 2", ok)
	}
	if _, _, err := o.write(&rebuild.Track{}, pkt, time.Now(), time.Now()); !errors.Is(err, errTrunkTrack) {
		t.Errorf("unknown track: %v", err)
	}
	var buf deadlineBuffer
	go func() {
		for o.queued.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
		o.streamClosed()
	}()
	if err := o.run(&buf, nil, time.Second); err == nil {
		t.Fatal("run returned no reason")
	}
	pkts, err := readTrunkWire(io.MultiReader(bytes.NewReader(trunkWire(t, testDesc())), &buf.Buffer))
	if err != nil || len(pkts) != 2 || o.r.packets.Load() != 2 {
		t.Fatalf("sent %d packets (%v), counted %d", len(pkts), err, o.r.packets.Load())
	}
}

type deadlineBuffer struct{ bytes.Buffer }

func (*deadlineBuffer) SetWriteDeadline(time.Time) error { return nil }

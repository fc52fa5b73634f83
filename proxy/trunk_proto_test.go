package proxy

import (
	"bytes"
	"errors"
	"io"
	"slices"
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
	var aged trunkFrame // (the same two packets, one replayed 1.5 s late)
	for _, age := range []time.Duration{1500 * time.Millisecond, 0} {
		if err := aged.appendPacket(0, pkt, pkt.MarshalSize(), age); err != nil {
			t.Fatal(err)
		}
	}
	agedWire := append(append([]byte{}, trunkWire(t, testDesc())...), aged.b...)
	agedShort := append(append([]byte{}, trunkWire(t, testDesc())...), append(appendFrameHeader(nil, framePacketAged, 3), 0, 0, 0)...)
	return []struct {
		name string
		in   []byte
		want error
	}{
		{"good", good, nil},
		{"truncated packet", good[:len(good)-3], io.ErrUnexpectedEOF},
		{"media index out of range", badIndex, errTrunkFrame},
		{"huge frame", huge, errTrunkFrameSize},
		{"aged", agedWire, nil},
		{"aged frame too short", agedShort, errTrunkFrame},
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
	o := &trunkOutput{index: map[*rebuild.Track]int{tr: 0}, max: 100, q: make(chan trunkFrame, 16), done: make(chan struct{}), cam: &trunkEdgeCamera{}}
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
	if n := o.cam.gopsCongestion.Load(); n != 1 {
		t.Errorf("%d GOPs counted dropped for congestion, want 1", n)
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

// TestTrunkOutputAccessUnit: a video camera's packets are queued an
// access unit at a time (at the marker, or when the next one begins),
// and run sends them as the same packet frames.
func TestTrunkOutputAccessUnit(t *testing.T) {
	tr := &rebuild.Track{}
	o := &trunkOutput{index: map[*rebuild.Track]int{tr: 0}, video: []bool{true}, max: 1 << 20, q: make(chan trunkFrame, 16), done: make(chan struct{}), cam: &trunkEdgeCamera{}}
	o.r = &reader{}
	pkt := func(seq uint16, ts uint32, marker bool) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: make([]byte, 30)}
	}
	for i, p := range []*rtp.Packet{pkt(1, 100, false), pkt(2, 100, false), pkt(3, 100, true), pkt(4, 200, false), pkt(5, 300, true)} {
		if full, _, err := o.write(tr, p, time.Now(), time.Now()); full || err != nil {
			t.Fatalf("packet %d: full %v, %v", i, full, err)
		}
		if want := []int{0, 0, 1, 1, 3}[i]; len(o.q) != want {
			t.Fatalf("after packet %d: %d access units queued; want %d", i, len(o.q), want)
		}
	}
	if o.queued.Load() != 5*48 {
		t.Errorf("%d bytes counted queued; want %d", o.queued.Load(), 5*48)
	}
	var buf deadlineBuffer
	go func() {
		for o.queued.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
		o.streamClosed()
	}()
	o.run(&buf, nil, time.Second)
	pkts, err := readTrunkWire(io.MultiReader(bytes.NewReader(trunkWire(t, testDesc())), &buf.Buffer))
	if err != nil || len(pkts) != 5 || o.r.packets.Load() != 5 || o.cam.bytes.Load() != 5*42 {
		t.Fatalf("sent %d packets (%v), counted %d, %d bytes", len(pkts), err, o.r.packets.Load(), o.cam.bytes.Load())
	}
	var seqs []uint16
	for _, p := range pkts {
		seqs = append(seqs, p.SequenceNumber)
	}
	if !slices.Equal(seqs, []uint16{1, 2, 3, 4, 5}) {
		t.Errorf("sequence numbers on the wire: %v", seqs)
	}
}

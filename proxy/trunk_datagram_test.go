package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// recordSender keeps what it is asked to send; datagrams over max are
// refused as quic-go refuses them.
type recordSender struct {
	max  int
	sent [][]byte
}

func (s *recordSender) SendDatagram(b []byte) error {
	if s.max > 0 && len(b) > s.max {
		return &quic.DatagramTooLargeError{MaxDatagramPayloadSize: int64(s.max)}
	}
	s.sent = append(s.sent, append([]byte(nil), b...))
	return nil
}

// TestTrunkDatagramWriter: batched packet frames go out as numbered
// datagrams, fragmented to the size the path takes (learnt from quic-go's
// refusal), and reassemble to the same RTP packets.
func TestTrunkDatagramWriter(t *testing.T) {
	s := &recordSender{max: 700}
	w := &trunkDatagramWriter{conn: s, id: 7, cam: &trunkEdgeCamera{}}
	var batch []byte
	var want [][]byte
	for i, size := range []int{100, 1500, 3000} {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i)}, Payload: bytes.Repeat([]byte{byte(i)}, size)}
		f, err := packetFrame(i%2, pkt)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, f...)
		want = append(want, f[6:])
	}
	if n, err := w.Write(batch); err != nil || n != len(batch) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	var got [][]byte
	var cur []byte
	for _, d := range s.sent {
		f, err := parseDatagram(d)
		if err != nil {
			t.Fatal(err)
		}
		if f.id != 7 || int(f.seq) != len(got) || int(f.media) != len(got)%2 {
			t.Fatalf("datagram %+v for packet %d", f, len(got))
		}
		cur = append(cur, f.payload...)
		if f.frag == f.frags-1 {
			got = append(got, cur)
			cur = nil
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets reassembled, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("packet %d differs after reassembly", i)
		}
	}
	if w.frag != 700-trunkDatagramHeader || w.cam.sent.Load() != 3 || w.cam.datagrams.Load() != uint64(len(s.sent)) {
		t.Errorf("fragment %d, sent %d, datagrams %d of %d", w.frag, w.cam.sent.Load(), w.cam.datagrams.Load(), len(s.sent))
	}
	// A path whose datagrams cannot hold a useful fragment is an error.
	w2 := &trunkDatagramWriter{conn: &recordSender{max: 100}, id: 1, cam: &trunkEdgeCamera{}}
	if _, err := w2.Write(batch); !errors.Is(err, errDatagramTooSmal) {
		t.Errorf("tiny path: %v", err)
	}
	if _, err := w.Write([]byte{framePacket, 0, 0, 0, 9, 1}); !errors.Is(err, errTrunkFrame) {
		t.Errorf("frame longer than the write: %v", err)
	}
}

// FuzzTrunkDatagram: whatever a datagram holds, parsing it is bounded and
// a parsed fragment is consistent.
func FuzzTrunkDatagram(f *testing.F) {
	f.Add(appendDatagram(nil, 1, 2, 0, 0, 1, []byte("rtp")))
	f.Add(appendDatagram(nil, 1, 2, 0, 3, 2, []byte("x")))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseDatagram(b)
		if err != nil {
			return
		}
		if fr.frags == 0 || fr.frags > maxTrunkFrags || fr.frag >= fr.frags || len(fr.payload) != len(b)-trunkDatagramHeader {
			t.Fatalf("inconsistent fragment %+v from %d bytes", fr, len(b))
		}
	})
}

// TestTrunkOutputLag: a camera whose queued frames have waited longer
// than maxTrunkLag drops the rest of its GOP rather than queue more,
// counted as congestion; an empty queue is never behind.
func TestTrunkOutputLag(t *testing.T) {
	tr := &rebuild.Track{}
	o := &trunkOutput{index: map[*rebuild.Track]int{tr: 0}, max: 1 << 20, q: make(chan trunkFrame, 16), done: make(chan struct{}), cam: &trunkEdgeCamera{}}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96}, Payload: make([]byte, 30)}
	for range 2 {
		if full, _, err := o.write(tr, pkt, time.Now(), time.Time{}); full || err != nil {
			t.Fatalf("write with the trunk keeping up: full %v, %v", full, err)
		}
	}
	o.headAt.Store(time.Now().Add(-2 * maxTrunkLag).UnixNano()) // the trunk stopped taking frames
	full, _, err := o.write(tr, pkt, time.Now(), time.Time{})
	if !full || !errors.Is(err, errTrunkLag) || o.cam.gopsCongestion.Load() != 1 {
		t.Fatalf("lagging: full %v, %v, %d GOPs dropped", full, err, o.cam.gopsCongestion.Load())
	}
	for len(o.q) > 0 {
		<-o.q
	}
	if full, _, err := o.write(tr, pkt, time.Now(), time.Time{}); full || err != nil {
		t.Errorf("write to an empty queue: full %v, %v", full, err)
	}
}

// TestDatagramSink: fragments reassemble in order; a missing packet is
// counted lost (and makes the stream's readers skip to a keyframe), a
// packet given up that arrives late is dropped as late, and fragments
// that contradict each other or name a media the SDP lacks are malformed.
func TestDatagramSink(t *testing.T) {
	c := &camera{}
	c.stream = newStream(Camera{}, nil, 0, &c.counters, slog.New(slog.DiscardHandler))
	stats := &trunkCoreCamera{}
	s := &datagramSink{c: c, stats: stats, tracks: []*rebuild.Track{nil}, fail: func(err error) { t.Errorf("fail: %v", err) }}
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96}, Payload: make([]byte, 40)}).Marshal()
	send := func(seq uint32, media, frag, frags uint8, payload []byte) {
		f, err := parseDatagram(appendDatagram(nil, 1, seq, media, frag, frags, payload))
		if err != nil {
			t.Fatal(err)
		}
		s.add(f, time.Now())
	}
	send(0, 0, 0, 2, raw[:20]) // packet 0 in two fragments
	send(0, 0, 1, 2, raw[20:])
	send(1, 0, 0, 1, raw) // packet 1 whole
	send(3, 0, 0, 1, raw) // packet 2 lost
	send(2, 0, 0, 1, raw) // ... and arriving late
	send(4, 0, 0, 2, raw[:20])
	send(4, 0, 0, 2, raw[:20]) // the same fragment twice
	send(4, 0, 1, 3, raw[20:]) // another fragment count
	send(5, 1, 0, 1, raw)      // a media index the SDP lacks
	if got := [4]uint64{stats.lost.Load(), stats.late.Load(), stats.malformed.Load(), stats.keyWaits.Load()}; got != [4]uint64{1, 1, 3, 1} {
		t.Errorf("lost, late, malformed, key waits = %v; want [1 1 3 1]", got)
	}
	if n := c.counters.Snapshot(); len(n) == 0 {
		t.Error("packets of a track the plan lacks were not counted as dropped")
	}
}

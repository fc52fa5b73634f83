package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

type rtpSink struct {
	mu   sync.Mutex
	pkts []rtp.Packet
}

func (s *rtpSink) WriteRTP(p *rtp.Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts = append(s.pkts, *p)
	return nil
}

func (s *rtpSink) seqs() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint16
	for _, p := range s.pkts {
		out = append(out, p.SequenceNumber)
	}
	return out
}

// TestWebRTCOutput: a preview's sequence numbers are consecutive but for
// a hole where its full queue dropped packets; other tracks are counted,
// not sent; the stream's packets are not modified; each frame's first
// arrival is kept.
func TestWebRTCOutput(t *testing.T) {
	video, audio := &rebuild.Track{}, &rebuild.Track{}
	sink := &rtpSink{}
	o := newWebRTCOutput(video, sink)
	o.q = make(chan webrtcPacket, 2)
	o.r = &reader{}
	t0 := time.Now()
	pkt := func(seq uint16, ts uint32) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts}, Payload: []byte{0x65, 1, 2}}
	}
	p1 := pkt(500, 9000)
	if full, _, err := o.write(video, p1, t0, time.Time{}); full || err != nil {
		t.Fatal(full, err)
	}
	o.write(video, pkt(501, 9000), t0.Add(time.Millisecond), time.Time{})
	if full, dropped, _ := o.write(video, pkt(502, 12600), t0, time.Time{}); !full || dropped != 1 {
		t.Fatalf("third packet in a queue of 2: full %v dropped %d", full, dropped)
	}
	if full, _, _ := o.write(audio, pkt(7, 1), t0, time.Time{}); full || o.notVideo.Load() != 1 {
		t.Errorf("audio: full %v, counted %d", full, o.notVideo.Load())
	}
	done := make(chan error)
	go func() { done <- o.run() }()
	waitFor(t, "two packets sent", 2*time.Second, func() bool { return len(sink.seqs()) == 2 })
	o.write(video, pkt(503, 16200), t0, time.Time{})
	waitFor(t, "third packet sent", 2*time.Second, func() bool { return len(sink.seqs()) == 3 })
	o.stop()
	<-done
	if got := sink.seqs(); got[0] != 0 || got[1] != 1 || got[2] != 3 {
		t.Errorf("sequence numbers %v, want 0 1 3 (a hole for the dropped packet)", got)
	}
	if p1.SequenceNumber != 500 {
		t.Errorf("the stream's packet was modified: seq %d", p1.SequenceNumber)
	}
	arr := o.delay.arrivals()
	if !arr[9000].Equal(t0) || len(arr) != 2 {
		t.Errorf("frame arrivals %v, want 9000 at the first packet's arrival and 16200", arr)
	}
	if o.r.packets.Load() != 3 {
		t.Errorf("reader packets %d, want 3", o.r.packets.Load())
	}
}

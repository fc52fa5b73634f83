package rebuild

import (
	"errors"
	"fmt"

	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmjpeg"
	"github.com/pion/rtp"
)

// mjpegRebuilder is the rebuild-mode state of an MJPEG (RFC 2435) track:
// gortsplib's decoder reassembles a frame, cleanJPEG validates it and
// drops what is not image data, gortsplib's encoder packetizes it again.
// Every frame is a random-access point.
type mjpegRebuilder struct {
	dec     *rtpmjpeg.Decoder
	enc     *rtpmjpeg.Encoder
	pending int    // camera payload bytes of the frame being assembled
	ts      uint32 // its camera timestamp
	skip    string // the reason the rest of the current frame is dropped ("": none)
}

func (t *Track) initMJPEG() error {
	var zero uint16
	var ssrc uint32
	m := &mjpegRebuilder{enc: &rtpmjpeg.Encoder{PayloadMaxSize: encoderPayload, SSRC: &ssrc, InitialSequenceNumber: &zero}}
	if err := m.enc.Init(); err != nil {
		return err
	}
	m.reset()
	t.mjpeg = m
	return nil
}

// reset forgets the frame being assembled.
func (m *mjpegRebuilder) reset() {
	m.dec = &rtpmjpeg.Decoder{}
	_ = m.dec.Init() // cannot fail
	m.pending, m.skip = 0, ""
}

// skipRest drops the packets after pkt up to the frame's marker.
func (m *mjpegRebuilder) skipRest(pkt *rtp.Packet, reason string) {
	if !pkt.Marker {
		m.skip, m.ts = reason, pkt.Timestamp
	}
}

// processMJPEG assembles, cleans and re-packetizes one frame; it returns
// the frame's packets (key 0: every JPEG is a random-access point) when
// pkt completes it. Every payload byte that does not cross is counted.
func (t *Track) processMJPEG(pkt *rtp.Packet) ([]*rtp.Packet, int, error) {
	m := t.mjpeg
	n := len(pkt.Payload)
	off, herr := mjpegHeader(pkt.Payload)
	if m.pending > 0 && (herr == nil && off == 0 || pkt.Timestamp != m.ts) {
		// A new frame starts before the one in progress ended: its end
		// (the marker packet) was lost.
		t.counters.Drop("lost", m.pending)
		m.reset()
	}
	if herr != nil {
		if m.pending > 0 {
			t.counters.Drop("lost", m.pending) // the frame in progress cannot complete
		}
		t.counters.Drop("malformed", n)
		m.reset()
		m.skipRest(pkt, "malformed")
		return nil, NoKey, nil
	}
	if off == 0 {
		m.skip, m.ts = "", pkt.Timestamp
	} else if m.skip != "" || m.pending == 0 {
		// The rest of a refused frame, or of one whose start was lost.
		reason := m.skip
		if reason == "" {
			reason = "lost"
		}
		t.counters.Drop(reason, n)
		if pkt.Marker {
			m.skip = ""
		}
		return nil, NoKey, nil
	}
	if m.pending+n > maxJPEGSize {
		t.counters.Drop("au_size", m.pending+n)
		m.reset()
		m.skipRest(pkt, "au_size")
		return nil, NoKey, nil
	}
	img, err := m.dec.Decode(pkt)
	if errors.Is(err, rtpmjpeg.ErrMorePacketsNeeded) {
		m.pending += n
		return nil, NoKey, nil
	}
	total := m.pending + n
	if err != nil {
		reason := "malformed"
		if off != 0 {
			reason = "lost" // a fragment offset that does not follow: a packet is missing
		}
		t.counters.Drop(reason, total)
		m.reset()
		return nil, NoKey, nil
	}
	m.pending = 0
	clean, _, err := cleanJPEG(img, t.counters)
	if err != nil {
		t.counters.Drop("jpeg_invalid", total)
		return nil, NoKey, nil
	}
	pkts, err := m.encode(clean)
	if err != nil || len(pkts) == 0 {
		t.counters.Drop("jpeg_invalid", total)
		return nil, NoKey, nil
	}
	ts := t.ts.mapTS(m.ts, t.clock)
	for _, p := range pkts {
		p.Header = rtp.Header{Version: 2, Marker: p.Marker, PayloadType: t.outPT, SequenceNumber: t.seq, Timestamp: ts}
		t.seq++
	}
	return pkts, 0, nil
}

// encode packetizes a cleaned JPEG. gortsplib's encoder panics on a JPEG
// it cannot parse; cleanJPEG only passes ones it can, and a panic that
// gets through anyway is turned into an error.
func (m *mjpegRebuilder) encode(img []byte) (pkts []*rtp.Packet, err error) {
	defer func() {
		if r := recover(); r != nil {
			pkts, err = nil, fmt.Errorf("rebuild: RTP/JPEG encoder: %v", r)
		}
	}()
	return m.enc.Encode(img)
}

// isMJPEGStart reports whether an RTP/JPEG payload starts a frame
// (fragment offset 0): where a reader can start in passthrough mode.
func isMJPEGStart(p []byte) bool {
	return len(p) >= 8 && p[1] == 0 && p[2] == 0 && p[3] == 0
}

package egress

// Bounds of the inspection of what a camera sends first on a flow.
const (
	maxFlight         = 16 << 10 // bytes of a TCP client's first flight reassembled
	maxFlightSegments = 64       // TCP payload segments looked at per flow
	maxQUICDatagrams  = 16       // QUIC Initials (and a first datagram) looked at per flow for a ClientHello
	// maxFlightIgnored bounds the bytes a camera sends on a flow (IP
	// lengths) while its segments outside the first flight's window are
	// ignored rather than counted towards maxFlightSegments.
	maxFlightIgnored = 1 << 20
)

// tcpFlight reassembles the first bytes a client sends on a TCP connection
// (its TLS ClientHello or HTTP request head) from segments in any order,
// retransmitted or overlapping: the first copy of a byte wins, as in
// Suricata's default policy. It keeps at most maxFlight bytes.
type tcpFlight struct {
	base uint32 // sequence number of the stream's first byte
	buf  []byte
	have []span // stream ranges received, sorted and merged
}

// add stores the segment seg that starts at sequence number seq and
// returns the stream bytes received without a gap from its start.
func (t *tcpFlight) add(seq uint32, seg []byte) []byte {
	off := int(int32(seq - t.base)) // serial number arithmetic (RFC 1982)
	if off < 0 {
		if -off >= len(seg) {
			return t.contiguous()
		}
		seg, off = seg[-off:], 0
	}
	if off >= maxFlight || len(seg) == 0 {
		return t.contiguous()
	}
	end := min(off+len(seg), maxFlight)
	seg = seg[:end-off]
	if end > len(t.buf) {
		if end > cap(t.buf) {
			nb := make([]byte, end, min(max(end, 2*cap(t.buf)), maxFlight))
			copy(nb, t.buf)
			t.buf = nb
		} else {
			t.buf = t.buf[:end]
		}
	}
	t.have = fillFirst(t.buf, t.have, off, seg)
	return t.contiguous()
}

// nothingNew reports whether a segment of n bytes at seq brings no byte
// of the first maxFlight that was not received already: it lies wholly
// before the stream's first byte or past maxFlight, or repeats received
// bytes (a retransmission).
func (t *tcpFlight) nothingNew(seq uint32, n int) bool {
	off := int(int32(seq - t.base))
	start, end := max(off, 0), min(off+n, maxFlight)
	if start >= end {
		return true
	}
	for _, s := range t.have {
		if s.start <= start && end <= s.end {
			return true
		}
	}
	return false
}

func (t *tcpFlight) contiguous() []byte {
	if len(t.have) == 0 || t.have[0].start != 0 {
		return nil
	}
	return t.buf[:t.have[0].end]
}

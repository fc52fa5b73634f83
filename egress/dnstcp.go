package egress

import "encoding/binary"

// Bounds of the DNS-over-TCP reader of one connection.
const (
	maxDNSTCPQueries = 1024 // messages read per connection; later ones are skipped, counted
	maxDNSTCPMessage = 4096 // a longer message is skipped, counted (queries are a few hundred bytes)
)

// Bounds of the segments held ahead of a gap in one connection's stream.
const (
	maxDNSTCPHeld      = 8    // segments
	maxDNSTCPHeldBytes = 8192 // bytes
)

// dnsStream reads the DNS messages a camera sends on a TCP connection to
// port 53 (RFC 7766: each preceded by its 2-byte length, any number per
// segment, one split across any number of segments), in stream order.
// Retransmitted bytes are skipped (the first copy wins). Segments that
// come ahead of a gap are held (up to maxDNSTCPHeld segments and
// maxDNSTCPHeldBytes) until it fills, so reordered segments, or a
// junk segment sent ahead, hide nothing; when the hold is full, or the
// camera ends the connection, the gap is taken as lost (one message
// counted skipped) and reading goes on from the segment after it, taken
// to start a message. It holds at most one message begun and the held
// segments.
type dnsStream struct {
	next    uint32 // sequence number of the next byte expected
	started bool   // next is known (the SYN or the first data segment)
	done    bool   // not DNS: read no further
	msgs    int    // messages read or skipped
	skip    int    // bytes of a skipped message still to come
	buf     []byte // a message begun, with its length prefix
	held    []heldSegment
	heldN   int // bytes in held
}

type heldSegment struct {
	seq  uint32
	data []byte
}

// add reads a segment of the stream (fin: the camera ends the
// connection): emit is called with each complete message, in order. It
// returns how many messages it skipped (over the bounds, or lost in a
// gap).
func (s *dnsStream) add(seq uint32, syn, fin bool, data []byte, emit func(msg []byte)) (skipped uint64) {
	if syn {
		s.next, s.started = seq+1, true
	}
	if s.done {
		return 0
	}
	if len(data) > 0 {
		if !s.started {
			s.next, s.started = seq, true
		}
		if int32(seq-s.next) > 0 {
			s.hold(seq, data)
		} else {
			skipped += s.consume(seq, data, emit)
		}
	}
	skipped += s.drain(emit)
	if len(s.held) > maxDNSTCPHeld || s.heldN > maxDNSTCPHeldBytes || (fin && len(s.held) > 0) {
		skipped += s.lose(emit)
	}
	return skipped
}

// hold keeps a segment that came ahead of a gap, unless it repeats one
// held (a retransmission: the first copy wins).
func (s *dnsStream) hold(seq uint32, data []byte) {
	for _, h := range s.held {
		if h.seq == seq && len(h.data) >= len(data) {
			return
		}
	}
	s.held = append(s.held, heldSegment{seq, append([]byte(nil), data...)})
	s.heldN += len(data)
}

// drain reads the held segments the stream has reached.
func (s *dnsStream) drain(emit func([]byte)) (skipped uint64) {
	for i := 0; i < len(s.held); {
		h := s.held[i]
		if int32(h.seq-s.next) > 0 {
			i++
			continue
		}
		s.held = append(s.held[:i], s.held[i+1:]...)
		s.heldN -= len(h.data)
		skipped += s.consume(h.seq, h.data, emit)
		i = 0
	}
	return skipped
}

// lose takes the gap before the earliest held segment as lost, counts one
// message skipped per gap, and reads the held segments, each gap's next
// segment taken to start a message.
func (s *dnsStream) lose(emit func([]byte)) (skipped uint64) {
	for len(s.held) > 0 && !s.done {
		first := 0
		for i, h := range s.held {
			if int32(h.seq-s.held[first].seq) < 0 {
				first = i
			}
		}
		s.next, s.buf, s.skip = s.held[first].seq, s.buf[:0], 0
		skipped += 1 + s.drain(emit)
	}
	s.held, s.heldN = nil, 0
	return skipped
}

// consume reads data, a segment that starts at or before s.next.
func (s *dnsStream) consume(seq uint32, data []byte, emit func([]byte)) (skipped uint64) {
	if s.done {
		return 0
	}
	if off := int32(seq - s.next); off < 0 { // a retransmission, maybe with new bytes after it
		if int(-int64(off)) >= len(data) {
			return 0
		}
		data = data[-int64(off):]
	}
	s.next += uint32(len(data))
	if s.msgs == 0 && len(s.buf) == 0 && data[0] >= 0x16 {
		// A TLS record or an HTTP method, not a length: DNS queries
		// are not 5632 bytes long.
		s.done = true
		return 0
	}
	for len(data) > 0 {
		if s.skip > 0 {
			n := min(s.skip, len(data))
			s.skip, data = s.skip-n, data[n:]
			continue
		}
		if len(s.buf) == 0 && len(data) >= 2 {
			// The common case: the whole message in this segment.
			if n := int(binary.BigEndian.Uint16(data)); n <= maxDNSTCPMessage && len(data) >= 2+n {
				skipped += s.message(data[2:2+n], emit)
				data = data[2+n:]
				continue
			}
		}
		if len(s.buf) < 2 {
			take := min(2-len(s.buf), len(data))
			s.buf, data = append(s.buf, data[:take]...), data[take:]
			if len(s.buf) < 2 {
				break
			}
		}
		n := int(binary.BigEndian.Uint16(s.buf))
		if n > maxDNSTCPMessage {
			s.buf, s.skip = s.buf[:0], n
			s.msgs++
			skipped++
			continue
		}
		take := min(2+n-len(s.buf), len(data))
		s.buf, data = append(s.buf, data[:take]...), data[take:]
		if len(s.buf) == 2+n {
			skipped += s.message(s.buf[2:], emit)
			s.buf = s.buf[:0]
		}
	}
	return skipped
}

// message hands one complete message to emit, within the bound.
func (s *dnsStream) message(msg []byte, emit func([]byte)) (skipped uint64) {
	s.msgs++
	if s.msgs > maxDNSTCPQueries {
		return 1
	}
	emit(msg)
	return 0
}

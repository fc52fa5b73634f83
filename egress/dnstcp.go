package egress

import "encoding/binary"

// Bounds of the DNS-over-TCP reader of one connection.
const (
	maxDNSTCPQueries = 1024 // messages read per connection; later ones are skipped, counted
	maxDNSTCPMessage = 4096 // a longer message is skipped, counted (queries are a few hundred bytes)
)

// dnsStream reads the DNS messages a camera sends on a TCP connection to
// port 53 (RFC 7766: each preceded by its 2-byte length, any number per
// segment, one split across any number of segments), in stream order.
// It holds at most one message begun and not complete. A gap in the
// stream (a segment lost or not yet seen) ends the reading: the message
// boundaries after it are not known.
type dnsStream struct {
	next    uint32 // sequence number of the next byte expected
	started bool   // next is known (the SYN or the first data segment)
	done    bool   // not DNS, or a gap: read no further
	msgs    int    // messages read or skipped
	skip    int    // bytes of a skipped message still to come
	buf     []byte // a message begun, with its length prefix
}

// add reads a segment of the stream: emit is called with each complete
// message, in order. It returns how many messages it skipped (over the
// bounds, or the rest of the stream after a gap).
func (s *dnsStream) add(seq uint32, syn bool, data []byte, emit func(msg []byte)) (skipped uint64) {
	if syn {
		s.next, s.started = seq+1, true
	}
	if s.done || len(data) == 0 {
		return 0
	}
	if !s.started {
		s.next, s.started = seq, true
	}
	switch off := int32(seq - s.next); {
	case off > 0: // a gap: where the next message starts is lost
		s.done = true
		return 1
	case off < 0: // a retransmission, maybe with new bytes after it
		if int(-off) >= len(data) {
			return 0
		}
		data = data[-off:]
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

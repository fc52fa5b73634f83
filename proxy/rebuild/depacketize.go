package rebuild

import (
	"bytes"

	"github.com/pion/rtp"
)

// videoCodec is a codec rebuild understands down to NAL units.
type videoCodec uint8

const (
	codecH264 videoCodec = iota + 1
	codecH265
)

func (c videoCodec) hdrLen() int {
	if c == codecH265 {
		return 2
	}
	return 1
}

// nalType returns the NAL unit type of n (len(n) >= 1).
func (c videoCodec) nalType(n []byte) uint8 {
	if c == codecH265 {
		return (n[0] >> 1) & 0x3f
	}
	return n[0] & 0x1f
}

// Input limits of the assembler. Output limits are those of gortsplib's
// decoders (MaxNALUsPerAccessUnit), checked after filtering.
const (
	maxAUSize          = 8 << 20 // bytes in one access unit (mediacommon's MaxAccessUnitSize)
	maxInputNALUsPerAU = 256
	// maxPayload is the largest RTP payload readers get: 1472-byte packets
	// (the IPv4/UDP MTU gortsplib allows) minus the 12-byte RTP header.
	maxPayload = 1460
	// encoderPayload leaves room for gortsplib's own framing checks.
	encoderPayload = 1450
)

// assembler collects the NAL units of one access unit from RTP packets
// (RFC 6184 single NAL, STAP-A and FU-A; RFC 7798 single NAL, AP and FU;
// DONL and PACI are not supported). Access units end at the marker bit or
// at a timestamp change (cameras that never set the marker). NAL units of
// single-NAL and aggregation packets reference the packet's payload;
// fragmented NAL units are reassembled in an arena the assembler reuses.
//
// The access units push returns are valid until the next push or reset:
// their NAL unit lists and arenas are two buffers used in turn (one push
// completes at most two access units), so nothing is allocated per access
// unit once the buffers have grown. A reassembled NAL unit small enough to
// leave as a single-NAL packet (at most encoderPayload bytes) is copied out
// of the arena, so no output payload ever references it; larger ones are
// always fragmented into fresh payloads by packetizeAU.
type assembler struct {
	codec videoCodec

	nalus  [][]byte
	size   int
	ts     uint32
	active bool

	arena     []byte // the current access unit's reassembled NAL units
	spareNALs [][]byte
	spare     []byte // the other arena: the last access unit handed out

	fragStart int // where the NAL unit being reassembled starts in arena
	fragging  bool
	fragNext  uint16
}

// maxKeptArena is the largest arena kept for reuse: a camera that once sent
// a huge access unit does not pin that memory forever.
const maxKeptArena = 2 << 20

// accessUnit is a completed access unit.
type accessUnit struct {
	nalus [][]byte
	ts    uint32
}

// reasonSink receives drop reasons (a *Counters).
type reasonSink interface{ Drop(reason string, n int) }

// push adds one packet. It returns the access units it completed (zero,
// one, or two when a timestamp change closes one and the marker another),
// valid until the next push.
func (a *assembler) push(pkt *rtp.Packet, c reasonSink, out []accessUnit) []accessUnit {
	if a.active && pkt.Timestamp != a.ts {
		out = a.flush(c, out)
	}
	if !a.active {
		a.ts, a.active = pkt.Timestamp, true
	}
	if a.codec == codecH265 {
		a.pushH265(pkt, c)
	} else {
		a.pushH264(pkt, c)
	}
	if pkt.Marker {
		out = a.flush(c, out)
	}
	return out
}

// reset forgets any partial access unit (camera reconnect).
func (a *assembler) reset() {
	clear(a.nalus)
	a.nalus, a.size, a.active = a.nalus[:0], 0, false
	a.arena, a.fragging = a.arena[:0], false
}

func (a *assembler) flush(c reasonSink, out []accessUnit) []accessUnit {
	a.dropFragment(c)
	if len(a.nalus) > 0 {
		out = append(out, accessUnit{nalus: a.nalus, ts: a.ts})
	}
	// Switch buffers: the access unit just handed out keeps its own. The
	// lists are not cleared: what they still reference is one access unit.
	a.nalus, a.spareNALs = a.spareNALs[:0], a.nalus
	a.arena, a.spare = a.spare[:0], a.arena
	if cap(a.arena) > maxKeptArena {
		a.arena = nil
	}
	a.size, a.active = 0, false
	return out
}

// trimNAL removes trailing zero bytes: trailing_zero_8bits belong to a
// byte stream, not a NAL unit.
func (c videoCodec) trimNAL(n []byte) []byte {
	for len(n) > c.hdrLen() && n[len(n)-1] == 0 {
		n = n[:len(n)-1]
	}
	return n
}

func (a *assembler) add(n []byte, c reasonSink) {
	if len(n) < a.codec.hdrLen() || n[0]&0x80 != 0 {
		c.Drop("malformed", len(n))
		return
	}
	n = a.codec.trimNAL(n)
	if hasStartCodeEmulation(n) {
		// 00 00 00/01/02 cannot occur in a NAL unit (emulation prevention):
		// a reader's Annex-B parser would split it somewhere else.
		c.Drop("malformed", len(n))
		return
	}
	if len(a.nalus) >= maxInputNALUsPerAU || a.size+len(n) > maxAUSize {
		c.Drop("au_size", len(n))
		return
	}
	a.nalus = append(a.nalus, n)
	a.size += len(n)
}

// addReassembled adds the NAL unit reassembled in arena[fragStart:].
func (a *assembler) addReassembled(c reasonSink) {
	n := a.codec.trimNAL(a.arena[a.fragStart:len(a.arena):len(a.arena)])
	if len(n) <= encoderPayload {
		n = bytes.Clone(n) // it may leave as it is: not in the arena
		a.arena = a.arena[:a.fragStart]
	}
	a.add(n, c)
}

func (a *assembler) pushH264(pkt *rtp.Packet, c reasonSink) {
	p := pkt.Payload
	if len(p) < 1 {
		c.Drop("malformed", 0)
		return
	}
	switch typ := p[0] & 0x1f; {
	case typ >= 1 && typ <= 23:
		a.dropFragment(c)
		a.add(p, c)
	case typ == 24: // STAP-A
		a.dropFragment(c)
		a.aggregate(p[1:], c)
	case typ == 28: // FU-A
		if len(p) < 3 {
			c.Drop("malformed", len(p))
			return
		}
		a.fragment(pkt, [2]byte{p[0]&0xe0 | p[1]&0x1f}, 1, p[1]&0x80 != 0, p[1]&0x40 != 0, p[2:], c)
	default: // 0, STAP-B, MTAP16/24, FU-B, 30, 31
		a.dropFragment(c)
		c.Drop("malformed", len(p))
	}
}

func (a *assembler) pushH265(pkt *rtp.Packet, c reasonSink) {
	p := pkt.Payload
	if len(p) < 3 {
		c.Drop("malformed", len(p))
		return
	}
	switch typ := (p[0] >> 1) & 0x3f; {
	case typ < 48:
		a.dropFragment(c)
		a.add(p, c)
	case typ == 48: // AP (no DONL: sprop-max-don-diff is refused)
		a.dropFragment(c)
		a.aggregate(p[2:], c)
	case typ == 49: // FU
		if len(p) < 4 {
			c.Drop("malformed", len(p))
			return
		}
		fu := p[2]
		hdr := [2]byte{p[0]&0x81 | (fu&0x3f)<<1, p[1]}
		a.fragment(pkt, hdr, 2, fu&0x80 != 0, fu&0x40 != 0, p[3:], c)
	default: // PACI and reserved
		a.dropFragment(c)
		c.Drop("malformed", len(p))
	}
}

// aggregate splits a STAP-A / AP body: 16-bit size, NAL unit, ...
func (a *assembler) aggregate(b []byte, c reasonSink) {
	if len(b) == 0 {
		c.Drop("malformed", 0)
		return
	}
	for len(b) > 0 {
		if len(b) < 2 {
			c.Drop("malformed", len(b))
			return
		}
		n := int(b[0])<<8 | int(b[1])
		b = b[2:]
		if n == 0 && allZero(b) {
			return // padding
		}
		if n == 0 || n > len(b) {
			c.Drop("malformed", len(b))
			return
		}
		a.add(b[:n], c)
		b = b[n:]
	}
}

// fragment adds one FU-A / FU: the reassembled NAL unit header is
// hdr[:hl], data the fragment's body.
func (a *assembler) fragment(pkt *rtp.Packet, hdr [2]byte, hl int, start, end bool, data []byte, c reasonSink) {
	if start {
		a.dropFragment(c)
		a.fragStart = len(a.arena)
		a.arena = append(a.arena, hdr[:hl]...)
		a.arena = append(a.arena, data...)
		if end { // some cameras send a whole NAL unit in one FU
			a.addReassembled(c)
			return
		}
		a.fragging, a.fragNext = true, pkt.SequenceNumber+1
		return
	}
	if !a.fragging {
		c.Drop("lost", len(data))
		return
	}
	fragLen := len(a.arena) - a.fragStart
	if pkt.SequenceNumber != a.fragNext {
		c.Drop("lost", fragLen+len(data))
		a.arena, a.fragging = a.arena[:a.fragStart], false
		return
	}
	if fragLen+len(data) > maxAUSize {
		c.Drop("au_size", fragLen+len(data))
		a.arena, a.fragging = a.arena[:a.fragStart], false
		return
	}
	a.arena = append(a.arena, data...)
	a.fragNext++
	if end {
		a.fragging = false
		a.addReassembled(c)
	}
}

func (a *assembler) dropFragment(c reasonSink) {
	if a.fragging {
		c.Drop("lost", len(a.arena)-a.fragStart)
		a.arena, a.fragging = a.arena[:a.fragStart], false
	}
}

// packetize splits NAL units into RTP payloads of at most max bytes:
// single NAL unit packets, or FU-A / FU fragments. It never aggregates, so
// it is valid for packetization-mode 1 and also re-packetizes oversized
// packets in passthrough mode.
func packetize(codec videoCodec, nalus [][]byte, max int, out [][]byte) [][]byte {
	for _, n := range nalus {
		if len(n) <= max {
			out = append(out, n)
			continue
		}
		out = fragmentNALU(codec, n, max, true, true, out)
	}
	return out
}

// fragmentNALU splits one NAL unit into FU payloads. first/last say whether
// the first fragment carries the start bit and the last the end bit (false
// when re-fragmenting a camera's FU).
func fragmentNALU(codec videoCodec, n []byte, max int, first, last bool, out [][]byte) [][]byte {
	var hdr []byte
	var body []byte
	if codec == codecH265 {
		typ := (n[0] >> 1) & 0x3f
		hdr = []byte{n[0]&0x81 | 49<<1, n[1], typ}
		body = n[2:]
	} else {
		hdr = []byte{n[0]&0xe0 | 28, n[0] & 0x1f}
		body = n[1:]
	}
	return fragmentBody(hdr, body, max, first, last, out)
}

// fragmentBody emits FU payloads: hdr (whose last byte is the FU header,
// without S/E bits) followed by up to max-len(hdr) bytes of body each.
func fragmentBody(hdr, body []byte, max int, first, last bool, out [][]byte) [][]byte {
	room := max - len(hdr)
	for i := 0; i < len(body) || i == 0; i += room {
		j := min(i+room, len(body))
		p := make([]byte, len(hdr), len(hdr)+j-i)
		copy(p, hdr)
		if i == 0 && first {
			p[len(hdr)-1] |= 0x80
		}
		if j == len(body) && last {
			p[len(hdr)-1] |= 0x40
		}
		out = append(out, append(p, body[i:j]...))
		if j == len(body) {
			break
		}
	}
	return out
}

// hasStartCodeEmulation reports whether b contains 00 00 00, 00 00 01 or
// 00 00 02.
func hasStartCodeEmulation(b []byte) bool {
	for i := 0; i+2 < len(b); {
		j := bytes.IndexByte(b[i:], 0)
		if j < 0 {
			return false
		}
		i += j
		if i+2 < len(b) && b[i+1] == 0 && b[i+2] <= 2 {
			return true
		}
		i++
	}
	return false
}

// packetizeAU packetizes an access unit for readers (packetization-mode 1):
// consecutive NAL units that fit together share an aggregation packet
// (STAP-A / AP), a NAL unit too big for one packet is fragmented (FU-A /
// FU), others go alone and are not copied. payloads is reused. Aggregation
// and fragment payloads are appended to the slab that space returns when
// first needed (with room for all of them, so the slab is not reallocated
// and parts already carved from it are never written); the grown slab is
// returned, nil when none was needed.
func packetizeAU(codec videoCodec, nalus [][]byte, max int, payloads [][]byte, space func(n int) []byte) ([][]byte, []byte) {
	var slab []byte // obtained on first use: most P-frames need none
	aggHdr := 1
	if codec == codecH265 {
		aggHdr = 2
	}
	reserve := func() {
		// Room for every NAL unit aggregated or fragmented: its bytes, a
		// 3-byte FU header per fragment, a size field and an
		// aggregation header.
		total := 0
		for _, n := range nalus {
			total += len(n) + 3*(len(n)/(max-3)+1) + 2 + aggHdr
		}
		slab = space(total)
	}
	for i := 0; i < len(nalus); {
		// Gather the longest run starting at i that fits one aggregation packet.
		j, size := i, aggHdr
		for j < len(nalus) && size+2+len(nalus[j]) <= max {
			size += 2 + len(nalus[j])
			j++
		}
		switch {
		case j-i >= 2:
			if slab == nil {
				reserve()
			}
			start := len(slab)
			slab = appendAggregationHeader(slab, codec, nalus[i:j])
			for _, n := range nalus[i:j] {
				slab = append(slab, byte(len(n)>>8), byte(len(n)))
				slab = append(slab, n...)
			}
			payloads = append(payloads, slab[start:len(slab):len(slab)])
			i = j
		case len(nalus[i]) <= max:
			payloads = append(payloads, nalus[i])
			i++
		default:
			n := nalus[i]
			var hdr [3]byte
			hl := 2
			var body []byte
			if codec == codecH265 {
				hdr, hl = [3]byte{n[0]&0x81 | 49<<1, n[1], (n[0] >> 1) & 0x3f}, 3
				body = n[2:]
			} else {
				hdr = [3]byte{n[0]&0xe0 | 28, n[0] & 0x1f}
				body = n[1:]
			}
			if slab == nil {
				reserve()
			}
			room := max - hl
			for k := 0; k < len(body); k += room {
				e := min(k+room, len(body))
				start := len(slab)
				slab = append(slab, hdr[:hl]...)
				if k == 0 {
					slab[len(slab)-1] |= 0x80
				}
				if e == len(body) {
					slab[len(slab)-1] |= 0x40
				}
				slab = append(slab, body[k:e]...)
				payloads = append(payloads, slab[start:len(slab):len(slab)])
			}
			i++
		}
	}
	return payloads, slab
}

// appendAggregationHeader appends the STAP-A (H.264: highest NRI) or AP
// (H.265: lowest layer and temporal id) header for nalus.
func appendAggregationHeader(b []byte, codec videoCodec, nalus [][]byte) []byte {
	if codec == codecH264 {
		var nri byte
		for _, n := range nalus {
			nri = max(nri, n[0]&0x60)
		}
		return append(b, nri|24)
	}
	layer, tid := byte(0x3f), byte(7)
	for _, n := range nalus {
		layer = min(layer, (n[0]&1)<<5|n[1]>>3)
		tid = min(tid, n[1]&7)
	}
	return append(b, 48<<1|layer>>5, (layer&0x1f)<<3|tid)
}

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
// single-NAL and aggregation packets reference the packet's payload.
type assembler struct {
	codec videoCodec

	nalus  [][]byte
	size   int
	ts     uint32
	active bool

	frag     []byte
	fragging bool
	fragNext uint16
	fragHint int // size of the last reassembled NAL unit: the next one's likely size
}

// accessUnit is a completed access unit.
type accessUnit struct {
	nalus [][]byte
	ts    uint32
}

// reasonSink receives drop reasons (a *Counters).
type reasonSink interface{ Drop(reason string, n int) }

// push adds one packet. It returns the access units it completed (zero,
// one, or two when a timestamp change closes one and the marker another).
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
	a.nalus, a.size, a.active = nil, 0, false
	a.frag, a.fragging = nil, false
}

func (a *assembler) flush(c reasonSink, out []accessUnit) []accessUnit {
	if a.fragging {
		c.Drop("lost", len(a.frag))
		a.frag, a.fragging = nil, false
	}
	if len(a.nalus) > 0 {
		out = append(out, accessUnit{nalus: a.nalus, ts: a.ts})
	}
	a.nalus, a.size, a.active = nil, 0, false
	return out
}

func (a *assembler) add(n []byte, c reasonSink) {
	if len(n) < a.codec.hdrLen() || n[0]&0x80 != 0 {
		c.Drop("malformed", len(n))
		return
	}
	for len(n) > a.codec.hdrLen() && n[len(n)-1] == 0 {
		n = n[:len(n)-1] // trailing_zero_8bits belong to a byte stream, not a NAL unit
	}
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
		a.fragment(pkt, []byte{p[0]&0xe0 | p[1]&0x1f}, p[1]&0x80 != 0, p[1]&0x40 != 0, p[2:], c)
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
		hdr := []byte{p[0]&0x81 | (fu&0x3f)<<1, p[1]}
		a.fragment(pkt, hdr, fu&0x80 != 0, fu&0x40 != 0, p[3:], c)
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

func (a *assembler) fragment(pkt *rtp.Packet, hdr []byte, start, end bool, data []byte, c reasonSink) {
	if start {
		a.dropFragment(c)
		if end { // some cameras send a whole NAL unit in one FU
			a.add(append(hdr, data...), c)
			return
		}
		a.frag = append(make([]byte, 0, max(len(hdr)+2*len(data), a.fragHint)), hdr...)
		a.frag = append(a.frag, data...)
		a.fragging, a.fragNext = true, pkt.SequenceNumber+1
		return
	}
	if !a.fragging {
		c.Drop("lost", len(data))
		return
	}
	if pkt.SequenceNumber != a.fragNext {
		c.Drop("lost", len(a.frag)+len(data))
		a.frag, a.fragging = nil, false
		return
	}
	if len(a.frag)+len(data) > maxAUSize {
		c.Drop("au_size", len(a.frag)+len(data))
		a.frag, a.fragging = nil, false
		return
	}
	a.frag = append(a.frag, data...)
	a.fragNext++
	if end {
		a.add(a.frag, c)
		a.fragHint = min(len(a.frag)+len(a.frag)/8, 1<<20)
		a.frag, a.fragging = nil, false
	}
}

func (a *assembler) dropFragment(c reasonSink) {
	if a.fragging {
		c.Drop("lost", len(a.frag))
		a.frag, a.fragging = nil, false
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
// FU), others go alone and are not copied. Aggregation and fragment payloads
// are built in one slab per access unit. payloads is reused.
func packetizeAU(codec videoCodec, nalus [][]byte, max int, payloads [][]byte) [][]byte {
	total := 0
	for _, n := range nalus {
		if len(n) > max {
			total += len(n) + 3*(len(n)/(max-3)+1)
		}
	}
	var slab []byte // allocated on first use: most P-frames need none
	aggHdr := 1
	if codec == codecH265 {
		aggHdr = 2
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
				slab = make([]byte, 0, total+size)
			}
			start := len(slab)
			slab = append(slab, aggregationHeader(codec, nalus[i:j])...)
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
			var hdr []byte
			var body []byte
			if codec == codecH265 {
				hdr = []byte{n[0]&0x81 | 49<<1, n[1], (n[0] >> 1) & 0x3f}
				body = n[2:]
			} else {
				hdr = []byte{n[0]&0xe0 | 28, n[0] & 0x1f}
				body = n[1:]
			}
			if slab == nil {
				slab = make([]byte, 0, total+max)
			}
			room := max - len(hdr)
			for k := 0; k < len(body); k += room {
				e := min(k+room, len(body))
				start := len(slab)
				slab = append(slab, hdr...)
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
	return payloads
}

// aggregationHeader is the STAP-A (H.264: highest NRI) or AP (H.265:
// lowest layer and temporal id) header for nalus.
func aggregationHeader(codec videoCodec, nalus [][]byte) []byte {
	if codec == codecH264 {
		var nri byte
		for _, n := range nalus {
			nri = max(nri, n[0]&0x60)
		}
		return []byte{nri | 24}
	}
	layer, tid := byte(0x3f), byte(7)
	for _, n := range nalus {
		layer = min(layer, (n[0]&1)<<5|n[1]>>3)
		tid = min(tid, n[1]&7)
	}
	return []byte{48<<1 | layer>>5, (layer&0x1f)<<3 | tid}
}

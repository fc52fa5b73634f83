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
//
// A fragmented slice, or a fragmented NAL unit of a type that is dropped
// anyway (filler data, AUD, ...), is not reassembled: the NAL unit keeps
// references to the camera's FU payloads, which are checked as they arrive
// (start-code emulation is tracked across fragment boundaries) and later
// either forwarded as they are or copied once, straight into the output
// fragments (see packetizeAU). Fragmented parameter sets and SEI, which are
// parsed, are reassembled in an arena the assembler reuses.
//
// The access units push returns are valid until the next push or reset:
// their NAL unit lists, fragment lists and arenas are two buffers used in
// turn (one push completes at most two access units), so nothing is
// allocated per access unit once the buffers have grown. A reassembled NAL
// unit small enough to leave as a single-NAL packet (at most
// encoderPayload bytes) is copied to its own memory, so no output payload
// ever references an arena; larger ones are always fragmented.
type assembler struct {
	codec videoCodec

	nalus  []nalUnit
	size   int
	ts     uint32
	active bool

	arena      []byte   // reassembled NAL units and headers of fragmented ones
	frags      [][]byte // FU payloads referenced by NAL units
	spareNALs  []nalUnit
	spareArena []byte
	spareFrags [][]byte

	fragging   bool
	fragNext   uint16
	fragStart  int  // where the fragmented NAL unit starts in arena
	fragRef    bool // referenced (frags) rather than reassembled (arena)
	fragFirst  int  // its first payload in frags
	fragLen    int  // its length so far, when referenced
	fragDirect bool // its payloads can be forwarded unchanged so far
	scan       emulationScan
}

// nalUnit is one NAL unit of an access unit: contiguous bytes in b, or,
// when nfrags > 0, its header in b and its body in the bodies of the FU
// payloads frags[frag0:frag0+nfrags] of its access unit (which start with
// the FU headers). One pointer, so copying it costs one write barrier.
type nalUnit struct {
	b      []byte
	size   int   // bytes in the NAL unit (trailing zero bytes trimmed)
	frag0  int32 // first FU payload in accessUnit.frags
	nfrags int32
	// direct says the FU payloads are exactly what packetizeAU would
	// build for this NAL unit: same FU indicator and header bits, no
	// reserved bit, no trailing zero bytes, and cut where packetizeAU cuts
	// (every payload but the last exactly encoderPayload bytes). They are
	// then forwarded unchanged. Requiring the same cuts keeps readers'
	// packet boundaries a function of the NAL unit's bytes alone, so a
	// camera cannot signal through where it fragments.
	direct bool
}

func contiguous(b []byte) nalUnit { return nalUnit{b: b, size: len(b)} }

// maxKeptArena is the largest arena kept for reuse: a camera that once sent
// a huge access unit does not pin that memory forever.
const maxKeptArena = 2 << 20

// accessUnit is a completed access unit.
type accessUnit struct {
	nalus []nalUnit
	frags [][]byte // FU payloads of the NAL units still in fragments
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
	clear(a.frags)
	a.nalus, a.size, a.active = a.nalus[:0], 0, false
	a.arena, a.frags, a.fragging = a.arena[:0], a.frags[:0], false
}

func (a *assembler) flush(c reasonSink, out []accessUnit) []accessUnit {
	a.dropFragment(c)
	// When this push already completed an access unit, the spare buffers
	// are that access unit's (the previous flush switched them out), and
	// it is valid until the next push: they must not be cleared now. They
	// are cleared by the next flush instead, once it has been used.
	spareInUse := len(out) > 0
	if len(a.nalus) > 0 {
		out = append(out, accessUnit{nalus: a.nalus, frags: a.frags, ts: a.ts})
	}
	// Switch buffers: the access unit just handed out keeps its own; the
	// other one's references to camera payloads are dropped, so a large
	// access unit's packets do not stay alive behind smaller ones.
	if !spareInUse {
		clear(a.spareNALs)
		clear(a.spareFrags)
	}
	a.nalus, a.spareNALs = a.spareNALs[:0], a.nalus
	a.arena, a.spareArena = a.spareArena[:0], a.arena
	a.frags, a.spareFrags = a.spareFrags[:0], a.frags
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
	a.appendNAL(contiguous(n), c)
}

// appendNAL adds a checked NAL unit within the access unit's limits.
func (a *assembler) appendNAL(n nalUnit, c reasonSink) {
	if len(a.nalus) >= maxInputNALUsPerAU || a.size+n.size > maxAUSize {
		c.Drop("au_size", n.size)
		return
	}
	a.nalus = append(a.nalus, n)
	a.size += n.size
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
		a.fragment(pkt, [2]byte{p[0]&0xe0 | p[1]&0x1f}, p[1]&0x80 != 0, p[1]&0x40 != 0, c)
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
		a.fragment(pkt, [2]byte{p[0]&0x81 | (fu&0x3f)<<1, p[1]}, fu&0x80 != 0, fu&0x40 != 0, c)
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

// fuHdrLen is the length of the FU indicator and header (H.264: 2 bytes;
// H.265: payload header and FU header, 3 bytes).
func (c videoCodec) fuHdrLen() int { return c.hdrLen() + 1 }

// sameFU reports whether FU payload p has the FU indicator / payload header
// and NAL unit type of first (the start fragment), and no reserved bit.
func (c videoCodec) sameFU(first, p []byte) bool {
	if c == codecH265 {
		return p[0] == first[0] && p[1] == first[1] && p[2]&0x3f == first[2]&0x3f
	}
	return p[0] == first[0] && p[1]&0x3f == first[1]&0x3f && p[1]&0x20 == 0
}

// fragment adds one FU-A / FU payload; hdr holds the header of the NAL unit
// it carries.
func (a *assembler) fragment(pkt *rtp.Packet, hdr [2]byte, start, end bool, c reasonSink) {
	p := pkt.Payload
	hl := a.codec.hdrLen()
	data := p[a.codec.fuHdrLen():]
	if start {
		a.dropFragment(c)
		a.fragStart = len(a.arena)
		a.arena = append(a.arena, hdr[:hl]...)
		switch classify(a.codec, a.codec.nalType(hdr[:])) {
		case nalVPS, nalSPS, nalPPS, nalSEI: // parsed: reassembled
			a.fragRef = false
			a.arena = append(a.arena, data...)
		default:
			a.fragRef, a.fragFirst, a.fragLen = true, len(a.frags), hl+len(data)
			a.frags = append(a.frags, p)
			a.fragDirect = len(p) <= encoderPayload && a.codec.sameFU(p, p)
			a.scan.reset()
			a.scan.feed(hdr[:hl])
			a.scan.feed(data)
		}
		if end { // some cameras send a whole NAL unit in one FU
			a.addFragmented(c)
			return
		}
		a.fragging, a.fragNext = true, pkt.SequenceNumber+1
		return
	}
	if !a.fragging {
		c.Drop("lost", len(data))
		return
	}
	fragLen := a.fragLength()
	if pkt.SequenceNumber != a.fragNext {
		c.Drop("lost", fragLen+len(data))
		a.abortFragment()
		return
	}
	if fragLen+len(data) > maxAUSize {
		c.Drop("au_size", fragLen+len(data))
		a.abortFragment()
		return
	}
	if a.fragRef {
		prev := a.frags[len(a.frags)-1]
		a.fragDirect = a.fragDirect && len(prev) == encoderPayload && len(p) <= encoderPayload &&
			a.codec.sameFU(a.frags[a.fragFirst], p)
		a.frags = append(a.frags, p)
		a.fragLen += len(data)
		a.scan.feed(data)
	} else {
		a.arena = append(a.arena, data...)
	}
	a.fragNext++
	if end {
		a.fragging = false
		a.addFragmented(c)
	}
}

// fragLength is the length of the NAL unit being reassembled, so far.
func (a *assembler) fragLength() int {
	if a.fragRef {
		return a.fragLen
	}
	return len(a.arena) - a.fragStart
}

func (a *assembler) abortFragment() {
	a.arena, a.fragging = a.arena[:a.fragStart], false
	if a.fragRef {
		clear(a.frags[a.fragFirst:])
		a.frags = a.frags[:a.fragFirst]
	}
}

func (a *assembler) dropFragment(c reasonSink) {
	if a.fragging {
		c.Drop("lost", a.fragLength())
		a.abortFragment()
	}
}

// addFragmented adds the NAL unit whose last fragment just arrived, with
// the checks of add.
func (a *assembler) addFragmented(c reasonSink) {
	hl := a.codec.hdrLen()
	if !a.fragRef {
		n := a.arena[a.fragStart:len(a.arena):len(a.arena)]
		if n[0]&0x80 != 0 {
			c.Drop("malformed", len(n)) // as add counts it: untrimmed
			a.arena = a.arena[:a.fragStart]
			return
		}
		n = a.codec.trimNAL(n)
		if len(n) <= encoderPayload {
			n = bytes.Clone(n) // it may leave as it is: not in the arena
			a.arena = a.arena[:a.fragStart]
		}
		a.add(n, c)
		return
	}
	hdr := a.arena[a.fragStart : a.fragStart+hl : a.fragStart+hl]
	frags := a.frags[a.fragFirst:len(a.frags):len(a.frags)]
	if hdr[0]&0x80 != 0 {
		c.Drop("malformed", a.fragLen)
		a.abortFragment()
		return
	}
	size := max(a.scan.lastNonZero+1, hl) // trailing zero bytes trimmed
	if a.scan.first >= 0 && a.scan.first+2 < size {
		c.Drop("malformed", size) // start-code emulation: see add
		a.abortFragment()
		return
	}
	if size <= encoderPayload {
		// Small enough to leave as it is: give it its own memory.
		b := make([]byte, 0, a.fragLen)
		b = append(b, hdr...)
		for _, f := range frags {
			b = append(b, f[a.codec.fuHdrLen():]...)
		}
		a.abortFragment()
		a.appendNAL(contiguous(b[:size]), c)
		return
	}
	a.appendNAL(nalUnit{b: hdr, size: size, frag0: int32(a.fragFirst), nfrags: int32(len(frags)),
		direct: a.fragDirect && size == a.fragLen}, c)
}

// emulationScan looks for start-code emulation (00 00 00, 00 00 01 or
// 00 00 02) in bytes fed piece by piece, across piece boundaries.
type emulationScan struct {
	n           int // bytes fed
	first       int // position of the first emulation, -1 if none
	lastNonZero int // position of the last non-zero byte, -1 if none
	tail        [2]byte
	tailN       int // valid bytes at the end of tail
}

func (s *emulationScan) reset() { *s = emulationScan{first: -1, lastNonZero: -1} }

func (s *emulationScan) feed(b []byte) {
	if len(b) == 0 {
		return
	}
	if s.first < 0 && s.tailN > 0 {
		var w [4]byte
		k := copy(w[:], s.tail[2-s.tailN:])
		k += copy(w[k:], b[:min(2, len(b))])
		if i := emulationAt(w[:k]); i >= 0 {
			s.first = s.n - s.tailN + i
		}
	}
	if s.first < 0 {
		if i := emulationAt(b); i >= 0 {
			s.first = s.n + i
		}
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			s.lastNonZero = s.n + i
			break
		}
	}
	if len(b) >= 2 {
		s.tail, s.tailN = [2]byte{b[len(b)-2], b[len(b)-1]}, 2
	} else {
		s.tail, s.tailN = [2]byte{s.tail[1], b[0]}, min(s.tailN+1, 2)
	}
	s.n += len(b)
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
func hasStartCodeEmulation(b []byte) bool { return emulationAt(b) >= 0 }

// emulationAt returns where b first contains 00 00 00, 00 00 01 or
// 00 00 02, or -1.
func emulationAt(b []byte) int {
	for i := 0; i+2 < len(b); {
		j := bytes.IndexByte(b[i:], 0)
		if j < 0 {
			return -1
		}
		i += j
		if i+2 < len(b) && b[i+1] == 0 && b[i+2] <= 2 {
			return i
		}
		i++
	}
	return -1
}

// packetizeAU packetizes an access unit for readers (packetization-mode 1):
// consecutive NAL units that fit together share an aggregation packet
// (STAP-A / AP), a NAL unit too big for one packet is fragmented (FU-A /
// FU), others go alone and are not copied. A NAL unit still in the
// camera's fragments leaves in them when they are direct, else its body is
// copied once, from the fragments into ours. payloads is reused.
// Aggregation and fragment payloads are appended to the slab that space
// returns when first needed (with room for all of them, so the slab is not
// reallocated while it is filled; parts already carved from it are never
// written again); the grown slab is returned, nil when none was needed.
func packetizeAU(codec videoCodec, nalus []nalUnit, frags [][]byte, max int, payloads [][]byte, space func(n int) []byte) ([][]byte, []byte) {
	var slab []byte // obtained on first use: most P-frames need none
	aggHdr := 1
	if codec == codecH265 {
		aggHdr = 2
	}
	reserve := func() {
		// Room for every NAL unit aggregated or fragmented (not those
		// forwarded in the camera's fragments): its bytes, a 3-byte FU
		// header per fragment, a size field and an aggregation header.
		total := 0
		for _, n := range nalus {
			if !n.direct {
				total += n.size + 3*(n.size/(max-3)+1) + 2 + aggHdr
			}
		}
		slab = space(total)
	}
	for i := 0; i < len(nalus); {
		// Gather the longest run starting at i that fits one aggregation packet.
		j, size := i, aggHdr
		for j < len(nalus) && size+2+nalus[j].size <= max {
			size += 2 + nalus[j].size
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
				slab = append(slab, byte(n.size>>8), byte(n.size))
				slab = append(slab, n.b...)
			}
			payloads = append(payloads, slab[start:len(slab):len(slab)])
			i = j
		case nalus[i].size <= max:
			payloads = append(payloads, nalus[i].b)
			i++
		case nalus[i].direct:
			n := nalus[i]
			payloads = append(payloads, frags[n.frag0:n.frag0+n.nfrags]...)
			i++
		default:
			if slab == nil {
				reserve()
			}
			slab, payloads = appendFragments(codec, slab, payloads, nalus[i], frags, max)
			i++
		}
	}
	return payloads, slab
}

// appendFragments appends the FU payloads of n (whose access unit's FU
// payloads are frags), of at most max bytes, to slab and their slices to
// payloads.
func appendFragments(codec videoCodec, slab []byte, payloads [][]byte, n nalUnit, frags [][]byte, max int) ([]byte, [][]byte) {
	var hdr [3]byte
	hl := codec.hdrLen()
	if codec == codecH265 {
		hdr = [3]byte{n.b[0]&0x81 | 49<<1, n.b[1], (n.b[0] >> 1) & 0x3f}
	} else {
		hdr = [3]byte{n.b[0]&0xe0 | 28, n.b[0] & 0x1f}
	}
	fh := hl + 1
	// The body: n.b after the header, or the fragments' bodies, up to
	// n.size-hl bytes in all (trailing zero bytes trimmed).
	var one [1][]byte
	bodies := one[:]
	one[0] = n.b[hl:]
	skip := 0 // FU header bytes before each body
	if n.nfrags > 0 {
		bodies, skip = frags[n.frag0:n.frag0+n.nfrags], fh
	}
	left := n.size - hl
	room := max - fh
	fi, off := 0, skip
	for first := true; first || left > 0; first = false {
		start := len(slab)
		slab = append(slab, hdr[:fh]...)
		if first {
			slab[len(slab)-1] |= 0x80
		}
		want := min(room, left)
		if want == left {
			slab[len(slab)-1] |= 0x40
		}
		left -= want
		for want > 0 {
			src := bodies[fi][off:]
			k := min(len(src), want)
			slab = append(slab, src[:k]...)
			want -= k
			if off += k; off == len(bodies[fi]) {
				fi, off = fi+1, skip
			}
		}
		payloads = append(payloads, slab[start:len(slab):len(slab)])
	}
	return slab, payloads
}

// appendAggregationHeader appends the STAP-A (H.264: highest NRI) or AP
// (H.265: lowest layer and temporal id) header for nalus.
func appendAggregationHeader(b []byte, codec videoCodec, nalus []nalUnit) []byte {
	if codec == codecH264 {
		var nri byte
		for _, n := range nalus {
			nri = max(nri, n.b[0]&0x60)
		}
		return append(b, nri|24)
	}
	layer, tid := byte(0x3f), byte(7)
	for _, n := range nalus {
		layer = min(layer, (n.b[0]&1)<<5|n.b[1]>>3)
		tid = min(tid, n.b[1]&7)
	}
	return append(b, 48<<1|layer>>5, (layer&0x1f)<<3|tid)
}

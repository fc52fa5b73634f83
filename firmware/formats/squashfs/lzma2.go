package squashfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
)

// A one-shot decoder for the xz streams mksquashfs writes: one stream, one
// block, one LZMA2 filter, decoded straight into the block's output buffer.
// The output is the dictionary (a squashfs block never refers outside its
// own output), so there is no window to allocate or copy through, and the
// range decoder keeps its state in locals. It is about twice as fast as the
// general xz decoders on poorly compressible (literal-heavy) blocks.
// Anything else (BCJ filters, several blocks, a SHA-256 check) returns
// errXzUnsupported and goes to the general decoder.

var (
	errXzUnsupported = errors.New("xz: layout outside the fast path")
	errLzmaCorrupt   = errors.New("lzma: corrupt stream")
)

var crc64Table = crc64.MakeTable(crc64.ECMA)

// xzBlockDecode decodes the xz stream src into dst and returns the bytes
// written.
func xzBlockDecode(dst, src []byte) (int, error) {
	// Stream header: magic, flags (0, check type), CRC32 of the flags.
	if len(src) < 12+12 || string(src[:6]) != "\xfd7zXZ\x00" || src[6] != 0 {
		return 0, errXzUnsupported
	}
	if crc32.ChecksumIEEE(src[6:8]) != binary.LittleEndian.Uint32(src[8:]) {
		return 0, errLzmaCorrupt
	}
	// Only CRC32 and CRC64 checks: a stream that decodes wrong here is
	// caught by its check and decoded again by the general decoder.
	check := src[7]
	var checkSize int
	switch check {
	case 1:
		checkSize = 4
	case 4:
		checkSize = 8
	default:
		return 0, errXzUnsupported
	}
	p := src[12:]
	hsize, err := xzBlockHeader(p)
	if err != nil {
		return 0, err
	}
	n, used, err := lzma2Decode(dst, p[hsize:])
	if err != nil {
		return 0, err
	}
	// Block padding to 4 bytes, then the check of the output.
	c := hsize + used
	c += (4 - used%4) % 4
	if c+checkSize >= len(p) || p[c+checkSize] != 0 { // the index must follow: one block
		return 0, errXzUnsupported
	}
	if !xzIndexOK(p[c+checkSize:], src[6:8], uint64(hsize+used+checkSize), uint64(n)) {
		return 0, errLzmaCorrupt
	}
	switch check {
	case 1:
		if crc32.ChecksumIEEE(dst[:n]) != binary.LittleEndian.Uint32(p[c:]) {
			return 0, errors.New("xz: CRC32 mismatch")
		}
	case 4:
		if crc64.Checksum(dst[:n], crc64Table) != binary.LittleEndian.Uint64(p[c:]) {
			return 0, errors.New("xz: CRC64 mismatch")
		}
	}
	return n, nil
}

// xzBlockHeader checks the block header at the start of p (its size,
// flags, optional sizes, one filter that is LZMA2, CRC32) and returns its
// size.
func xzBlockHeader(p []byte) (int, error) {
	if p[0] == 0 {
		return 0, errXzUnsupported // an index: no block
	}
	hsize := (int(p[0]) + 1) * 4
	if hsize > len(p) || crc32.ChecksumIEEE(p[:hsize-4]) != binary.LittleEndian.Uint32(p[hsize-4:]) {
		return 0, errLzmaCorrupt
	}
	flags := p[1]
	if flags&0x3 != 0 || flags&0x3c != 0 { // more than one filter, reserved bits
		return 0, errXzUnsupported
	}
	q := 2
	varint := func() (uint64, bool) { return xzVarint(p[:hsize-4], &q) }
	if flags&0x40 != 0 {
		if _, ok := varint(); !ok {
			return 0, errLzmaCorrupt
		}
	}
	if flags&0x80 != 0 {
		if _, ok := varint(); !ok {
			return 0, errLzmaCorrupt
		}
	}
	if id, ok := varint(); !ok || id != 0x21 {
		return 0, errXzUnsupported
	}
	if n, ok := varint(); !ok || n != 1 || q >= hsize-4 {
		return 0, errXzUnsupported
	}
	if p[q] > 40 {
		return 0, errLzmaCorrupt // dictionary size byte
	}
	return hsize, nil
}

// xzVarint reads the xz multibyte integer (7 bits a byte, 9 bytes at most)
// at p[*q:], advancing *q; ok is false when p ends first.
func xzVarint(p []byte, q *int) (v uint64, ok bool) {
	for i := 0; i < 9 && *q < len(p); i++ {
		b := p[*q]
		*q++
		v |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v, true
		}
	}
	return 0, false
}

// xzIndexOK checks the index (one record: the block's unpadded and
// uncompressed sizes) and the stream footer that follow the block, so that
// the fast path accepts exactly the streams the general decoder accepts.
func xzIndexOK(p, flags []byte, unpadded, uncompressed uint64) bool {
	q := 1 // the index indicator, 0x00
	varint := func() (uint64, bool) { return xzVarint(p, &q) }
	if n, ok := varint(); !ok || n != 1 {
		return false
	}
	if u, ok := varint(); !ok || u != unpadded {
		return false
	}
	if u, ok := varint(); !ok || u != uncompressed {
		return false
	}
	for q%4 != 0 {
		if q >= len(p) || p[q] != 0 {
			return false
		}
		q++
	}
	if q+4+12 > len(p) || crc32.ChecksumIEEE(p[:q]) != binary.LittleEndian.Uint32(p[q:]) {
		return false
	}
	// Footer: CRC32 of (backward size, flags), backward size, flags, "YZ".
	f := p[q+4 : q+16]
	return string(f[10:]) == "YZ" && string(f[8:10]) == string(flags) &&
		crc32.ChecksumIEEE(f[4:10]) == binary.LittleEndian.Uint32(f) &&
		(uint64(binary.LittleEndian.Uint32(f[4:]))+1)*4 == uint64(q+4)
}

// LZMA model sizes.
const (
	lzStates       = 12
	lzPosStatesMax = 1 << 4
	lzLenLow       = 8
	lzLenMid       = 8
	lzLenHigh      = 256
	lzDistStates   = 4
	lzEndPosModel  = 14
	lzFullDist     = 1 << (lzEndPosModel >> 1)
	lzAlignBits    = 4
	probInit       = 1 << 10
)

type lzLenDec struct {
	choice, choice2 uint16
	low             [lzPosStatesMax][lzLenLow]uint16
	mid             [lzPosStatesMax][lzLenMid]uint16
	high            [lzLenHigh]uint16
}

type lzState struct {
	lc, lp, pb    uint
	state         int
	rep           [4]int
	isMatch       [lzStates * lzPosStatesMax]uint16
	isRep         [lzStates]uint16
	isRepG0       [lzStates]uint16
	isRepG1       [lzStates]uint16
	isRepG2       [lzStates]uint16
	isRep0Long    [lzStates * lzPosStatesMax]uint16
	posSlot       [lzDistStates][64]uint16
	posSpecial    [1 + lzFullDist - lzEndPosModel]uint16
	align         [1 << lzAlignBits]uint16
	matchLen      lzLenDec
	repLen        lzLenDec
	literal       []uint16
	literalBacked [0x300 * 16]uint16 // lc+lp <= 4 in LZMA2
}

func (s *lzState) reset() {
	s.state = 0
	s.rep = [4]int{}
	for _, t := range [][]uint16{s.isMatch[:], s.isRep[:], s.isRepG0[:], s.isRepG1[:], s.isRepG2[:],
		s.isRep0Long[:], s.posSpecial[:], s.align[:]} {
		for i := range t {
			t[i] = probInit
		}
	}
	for i := range s.posSlot {
		for j := range s.posSlot[i] {
			s.posSlot[i][j] = probInit
		}
	}
	for _, l := range []*lzLenDec{&s.matchLen, &s.repLen} {
		l.choice, l.choice2 = probInit, probInit
		for i := range l.low {
			for j := range l.low[i] {
				l.low[i][j], l.mid[i][j] = probInit, probInit
			}
		}
		for i := range l.high {
			l.high[i] = probInit
		}
	}
	s.literal = s.literalBacked[:0x300<<(s.lc+s.lp)]
	for i := range s.literal {
		s.literal[i] = probInit
	}
}

// rangeDec is the range decoder. Reading past the input yields zeros and
// sets over; the caller checks it once per chunk.
type rangeDec struct {
	in    []byte
	pos   int
	rng   uint32
	code  uint32
	over  bool
	limit int // end of this chunk's input
}

func (r *rangeDec) next() uint32 {
	if r.pos < r.limit {
		b := r.in[r.pos]
		r.pos++
		return uint32(b)
	}
	r.over = true
	return 0
}

func (r *rangeDec) bit(p *uint16) uint32 {
	if r.rng < 1<<24 {
		r.rng <<= 8
		r.code = r.code<<8 | r.next()
	}
	bound := (r.rng >> 11) * uint32(*p)
	if r.code < bound {
		r.rng = bound
		*p += (2048 - *p) >> 5
		return 0
	}
	r.rng -= bound
	r.code -= bound
	*p -= *p >> 5
	return 1
}

// literal finishes decoding a literal from sym (1, or where a matched
// literal left off): the hot loop of poorly compressible data, with the
// decoder's state in locals.
func (r *rangeDec) literal(probs *[0x300]uint16, sym uint32) uint32 {
	rng, code, pos := r.rng, r.code, r.pos
	prob := uint32(probs[sym&0xff])
	for sym < 0x100 {
		if rng < 1<<24 {
			rng <<= 8
			code <<= 8
			if pos < r.limit {
				code |= uint32(r.in[pos])
				pos++
			} else {
				r.over = true
			}
		}
		// Branch-free: the bits of random data are unpredictable. The
		// probabilities of both children are loaded before the bit is
		// known, so that the load is not on the path from one bit to the
		// next (the last round loads two unused, in-bounds entries).
		bound := (rng >> 11) * prob
		next0, next1 := uint32(probs[(sym<<1)&0xff]), uint32(probs[(sym<<1|1)&0xff])
		m := uint32(int64(uint64(code)-uint64(bound)) >> 63) // all ones when code < bound (bit 0)
		rng = bound&m | (rng-bound)&^m
		code -= bound &^ m
		probs[sym&0xff] = uint16(((prob+(2048-prob)>>5)&m | (prob-prob>>5)&^m))
		sym = sym<<1 | (1 &^ m)
		prob = next0&m | next1&^m
	}
	r.rng, r.code, r.pos = rng, code, pos
	return sym
}

func (r *rangeDec) tree(probs []uint16, bits int) uint32 {
	m := uint32(1)
	for range bits {
		m = m<<1 | r.bit(&probs[m])
	}
	return m - 1<<bits
}

func (r *rangeDec) reverse(probs []uint16, bits int) uint32 {
	m, v := uint32(1), uint32(0)
	for i := range bits {
		b := r.bit(&probs[m])
		m = m<<1 | b
		v |= b << i
	}
	return v
}

func (r *rangeDec) direct(bits int) uint32 {
	var v uint32
	for range bits {
		if r.rng < 1<<24 {
			r.rng <<= 8
			r.code = r.code<<8 | r.next()
		}
		r.rng >>= 1
		t := (r.code - r.rng) >> 31 // 1 when code < rng
		r.code -= r.rng & (t - 1)
		v = v<<1 | (1 - t)
	}
	return v
}

func (l *lzLenDec) decode(r *rangeDec, posState uint32) int {
	if r.bit(&l.choice) == 0 {
		return int(r.tree(l.low[posState][:], 3))
	}
	if r.bit(&l.choice2) == 0 {
		return lzLenLow + int(r.tree(l.mid[posState][:], 3))
	}
	return lzLenLow + lzLenMid + int(r.tree(l.high[:], 8))
}

// lzma2Decode decodes LZMA2 chunks from src into dst until the end marker,
// returning the output length and the input bytes used.
func lzma2Decode(dst, src []byte) (int, int, error) {
	var s lzState
	r := rangeDec{in: src}
	out, in := 0, 0
	needProps, needDictReset := true, true
	dictStart := 0 // output offset of the last dictionary reset
	for {
		if in >= len(src) {
			return 0, 0, errLzmaCorrupt
		}
		ctl := src[in]
		in++
		if ctl == 0 {
			return out, in, nil
		}
		if ctl < 0x80 {
			if ctl > 2 || in+2 > len(src) {
				return 0, 0, errLzmaCorrupt
			}
			if ctl == 1 {
				needDictReset, dictStart = false, out
			} else if needDictReset {
				return 0, 0, errLzmaCorrupt
			}
			var err error
			if out, in, err = lzma2Stored(dst, src, out, in); err != nil {
				return 0, 0, err
			}
			continue
		}
		if in+4 > len(src) {
			return 0, 0, errLzmaCorrupt
		}
		unpacked := int(ctl&0x1f)<<16 + int(binary.BigEndian.Uint16(src[in:])) + 1
		packed := int(binary.BigEndian.Uint16(src[in+2:])) + 1
		in += 4
		mode := ctl >> 5 & 3
		if mode == 3 {
			needDictReset, dictStart = false, out
		}
		var err error
		if in, err = s.chunkReset(mode, src, in, &needProps); err != nil {
			return 0, 0, err
		}
		if needDictReset {
			return 0, 0, errLzmaCorrupt
		}
		if in+packed > len(src) || out+unpacked > len(dst) || packed < 5 || src[in] != 0 {
			return 0, 0, errLzmaCorrupt
		}
		r.pos, r.limit, r.over = in+1, in+packed, false
		r.rng = 0xffffffff
		r.code = r.next()<<24 | r.next()<<16 | r.next()<<8 | r.next()
		out, err = s.decodeChunk(&r, dst[dictStart:], out-dictStart, out-dictStart+unpacked)
		out += dictStart
		if err != nil {
			return 0, 0, err
		}
		// The range decoder ends with a final normalisation.
		if r.rng < 1<<24 {
			r.rng <<= 8
			r.code = r.code<<8 | r.next()
		}
		if r.over || r.pos != in+packed || r.code != 0 {
			return 0, 0, errLzmaCorrupt
		}
		in += packed
	}
}

// lzma2Stored copies the stored (uncompressed) chunk whose size is at
// src[in:] to dst[out:], and returns the offsets after it.
func lzma2Stored(dst, src []byte, out, in int) (int, int, error) {
	size := int(binary.BigEndian.Uint16(src[in:])) + 1
	in += 2
	if in+size > len(src) || out+size > len(dst) {
		return 0, 0, fmt.Errorf("lzma2: stored chunk of %d bytes does not fit: %w", size, errOverrun)
	}
	copy(dst[out:], src[in:in+size])
	return out + size, in + size, nil
}

// chunkReset applies an LZMA chunk's reset mode (control byte bits 5-6):
// 3 and 2 read new properties at src[in] and reset the state, 1 resets the
// state, 0 keeps it. It returns the offset after the properties.
func (s *lzState) chunkReset(mode byte, src []byte, in int, needProps *bool) (int, error) {
	switch mode {
	case 3, 2:
		if in >= len(src) {
			return 0, errLzmaCorrupt
		}
		props := src[in]
		in++
		if props >= 9*5*5 {
			return 0, errLzmaCorrupt
		}
		s.lc, s.lp, s.pb = uint(props%9), uint(props/9%5), uint(props/45)
		if s.lc+s.lp > 4 {
			return 0, errLzmaCorrupt
		}
		*needProps = false
		s.reset()
	case 1:
		if *needProps {
			return 0, errLzmaCorrupt
		}
		s.reset()
	default:
		if *needProps {
			return 0, errLzmaCorrupt
		}
	}
	return in, nil
}

// decodeChunk decodes symbols into dst[out:end]; dst starts at the last
// dictionary reset, so nothing before it can be referred to.
func (s *lzState) decodeChunk(r *rangeDec, dst []byte, out, end int) (int, error) {
	pbMask := uint32(1)<<s.pb - 1
	lpMask := uint32(1)<<s.lp - 1
	lc := s.lc
	for out < end {
		posState := uint32(out) & pbMask
		if r.bit(&s.isMatch[s.state<<4+int(posState)]) == 0 {
			// Literal.
			var prev uint32
			if out > 0 {
				prev = uint32(dst[out-1])
			}
			base := 0x300 * int((uint32(out)&lpMask)<<lc+prev>>(8-lc))
			probs := s.literal[base : base+0x300]
			sym := uint32(1)
			if s.state >= 7 {
				if s.rep[0] >= out {
					return out, errLzmaCorrupt
				}
				match := uint32(dst[out-s.rep[0]-1])
				for sym < 0x100 {
					mbit := match >> 7 & 1
					match <<= 1
					b := r.bit(&probs[0x100+mbit<<8+sym])
					sym = sym<<1 | b
					if b != mbit {
						break
					}
				}
			}
			sym = r.literal((*[0x300]uint16)(probs), sym)
			dst[out] = byte(sym)
			out++
			switch {
			case s.state < 4:
				s.state = 0
			case s.state < 10:
				s.state -= 3
			default:
				s.state -= 6
			}
			continue
		}
		var length int
		if r.bit(&s.isRep[s.state]) != 0 {
			if out == 0 {
				return out, errLzmaCorrupt
			}
			if r.bit(&s.isRepG0[s.state]) == 0 {
				if r.bit(&s.isRep0Long[s.state<<4+int(posState)]) == 0 {
					// Short rep: one byte at rep0.
					if s.rep[0] >= out {
						return out, errLzmaCorrupt
					}
					if s.state < 7 {
						s.state = 9
					} else {
						s.state = 11
					}
					dst[out] = dst[out-s.rep[0]-1]
					out++
					continue
				}
			} else {
				var d int
				if r.bit(&s.isRepG1[s.state]) == 0 {
					d = s.rep[1]
				} else {
					if r.bit(&s.isRepG2[s.state]) == 0 {
						d = s.rep[2]
					} else {
						d = s.rep[3]
						s.rep[3] = s.rep[2]
					}
					s.rep[2] = s.rep[1]
				}
				s.rep[1] = s.rep[0]
				s.rep[0] = d
			}
			length = s.repLen.decode(r, posState)
			if s.state < 7 {
				s.state = 8
			} else {
				s.state = 11
			}
		} else {
			s.rep[3], s.rep[2], s.rep[1] = s.rep[2], s.rep[1], s.rep[0]
			length = s.matchLen.decode(r, posState)
			if s.state < 7 {
				s.state = 7
			} else {
				s.state = 10
			}
			lenState := min(length, lzDistStates-1)
			slot := r.tree(s.posSlot[lenState][:], 6)
			if slot < 4 {
				s.rep[0] = int(slot)
			} else {
				nbits := int(slot>>1) - 1
				dist := (2 | slot&1) << nbits
				if slot < lzEndPosModel {
					dist += r.reverse(s.posSpecial[dist-slot:], nbits)
				} else {
					dist += r.direct(nbits-lzAlignBits) << lzAlignBits
					dist += r.reverse(s.align[:], lzAlignBits)
				}
				if dist == 0xffffffff {
					return out, errLzmaCorrupt // end marker: not allowed in LZMA2
				}
				s.rep[0] = int(dist)
			}
		}
		length += 2
		d := s.rep[0] + 1
		if d > out || out+length > end {
			return out, errLzmaCorrupt
		}
		// Copy; the regions overlap when d < length.
		if d >= length {
			copy(dst[out:out+length], dst[out-d:])
		} else {
			for i := range length {
				dst[out+i] = dst[out-d+i]
			}
		}
		out += length
	}
	return out, nil
}

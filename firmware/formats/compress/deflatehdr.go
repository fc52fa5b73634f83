package compress

import "slices"

// A cheap look at the first block of a deflate stream (RFC 1951), so that
// a zlib candidate in random data (two bytes of magic match every 16 KiB or
// so) is refused before a decoder runs. Random bits can form a dynamic
// block whose literal/length code has no end-of-block symbol: such a block
// never ends, and decoding it ran through megabytes of a random file (the
// decoder only stops at the end of the input) before the candidate was
// refused. The checks refuse only what no decoder accepts or what can
// never end: a reserved block type, a stored block whose length fields
// disagree, too many codes, an over-subscribed or incomplete code-length
// code, code lengths that repeat nothing or overflow their count, an
// over-subscribed literal/length or distance code, and no end-of-block code.

// deflateHeaderMax is how many bytes the check reads at most: the longest
// dynamic block header (3+14 bits, 19 3-bit lengths, 316 code lengths of at
// most 7+7 bits) fits.
const deflateHeaderMax = 3 + (17+19*3+316*14+7)/8

// lsbBits reads bits least significant first, as deflate packs them.
type lsbBits struct {
	b   []byte
	pos int // bit position
}

// get returns the next n bits, or false past the end of b.
func (r *lsbBits) get(n int) (uint32, bool) {
	if r.pos+n > 8*len(r.b) {
		return 0, false
	}
	var v uint32
	for i := range n {
		p := r.pos + i
		v |= uint32(r.b[p/8]>>(p%8)&1) << i
	}
	r.pos += n
	return v, true
}

// kraft sums 2^(15-len) over the non-zero lengths: 1<<15 for a complete
// code, more for an over-subscribed one.
func kraft(lengths []uint8) int {
	s := 0
	for _, l := range lengths {
		if l > 0 {
			s += 1 << (15 - l)
		}
	}
	return s
}

// canonical decodes symbols of a canonical Huffman code given by lengths
// (at most 7 bits long: the code-length code).
type canonical struct {
	count [8]int    // codes of each length
	syms  [19]uint8 // symbols in code order
}

func newCanonical(lengths []uint8) *canonical {
	c := &canonical{}
	for _, l := range lengths {
		c.count[l]++
	}
	c.count[0] = 0
	var offs [8]int
	for l := 1; l < 8; l++ {
		offs[l] = offs[l-1] + c.count[l-1]
	}
	offs[0] = 0
	for s, l := range lengths {
		if l > 0 {
			c.syms[offs[l]] = uint8(s)
			offs[l]++
		}
	}
	return c
}

// next decodes one symbol: the code's bits come most significant first.
func (c *canonical) next(r *lsbBits) (int, bool) {
	code, first, index := 0, 0, 0
	for l := 1; l < 8; l++ {
		b, ok := r.get(1)
		if !ok {
			return 0, false
		}
		code |= int(b)
		n := c.count[l]
		if code-first < n {
			return int(c.syms[index+code-first]), true
		}
		index += n
		first = (first + n) << 1
		code <<= 1
	}
	return 0, false
}

// clOrder is the order of the code-length code's lengths in the header.
var clOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// deflateFirstBlock reports why the deflate stream whose first bytes are b
// cannot be real ("" when it may be). b may stop early (the end of the
// file): what it does not hold is not judged.
func deflateFirstBlock(b []byte) string {
	r := &lsbBits{b: b}
	hdr, ok := r.get(3)
	if !ok {
		return ""
	}
	switch hdr >> 1 {
	case 0: // stored: LEN and NLEN, byte-aligned, are complements
		r.pos = (r.pos + 7) &^ 7
		ln, ok1 := r.get(16)
		nln, ok2 := r.get(16)
		if ok1 && ok2 && ln^nln != 0xffff {
			return "stored block lengths disagree"
		}
		return ""
	case 1: // fixed codes: nothing to check before decoding
		return ""
	case 3:
		return "reserved block type"
	}
	return dynamicHeader(r)
}

// dynamicHeader checks the header of a block with dynamic Huffman codes:
// the code counts, the code-length code, then the literal/length and
// distance code lengths it spells.
func dynamicHeader(r *lsbBits) string {
	hlit, _ := r.get(5)
	hdist, _ := r.get(5)
	hclen, ok := r.get(4)
	if !ok {
		return ""
	}
	nlit, ndist := int(hlit)+257, int(hdist)+1
	if nlit > 286 || ndist > 30 {
		return "too many literal/length or distance codes"
	}
	var cl [19]uint8
	for i := range int(hclen) + 4 {
		v, ok := r.get(3)
		if !ok {
			return ""
		}
		cl[clOrder[i]] = uint8(v)
	}
	// Decoders accept one code of one bit as the only incomplete code.
	if k := kraft(cl[:]); k != 1<<15 && !(k == 1<<14 && slices.Max(cl[:]) == 1) {
		return "code-length code over-subscribed or incomplete"
	}
	var lengths [286 + 30]uint8
	if why, done := codeLengths(r, newCanonical(cl[:]), lengths[:nlit+ndist]); !done {
		return why
	}
	lit, dist := lengths[:nlit], lengths[nlit:nlit+ndist]
	if lit[256] == 0 {
		return "no end-of-block code"
	}
	if kraft(lit) > 1<<15 || kraft(dist) > 1<<15 {
		return "literal/length or distance code over-subscribed"
	}
	return ""
}

// codeLengths fills lengths with the code lengths that code spells in r
// (symbols 16 to 18 repeat). done is false when they cannot all be read:
// why says what is wrong, or is "" when b ended first.
func codeLengths(r *lsbBits, code *canonical, lengths []uint8) (why string, done bool) {
	for i := 0; i < len(lengths); {
		sym, ok := code.next(r)
		if !ok {
			return "", false
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep uint32
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return "code length repeat with nothing before it", false
			}
			rep, ok = r.get(2)
			rep += 3
			val = lengths[i-1]
		case 17:
			rep, ok = r.get(3)
			rep += 3
		default:
			rep, ok = r.get(7)
			rep += 11
		}
		if !ok {
			return "", false
		}
		if i+int(rep) > len(lengths) {
			return "code lengths overflow their count", false
		}
		for range rep {
			lengths[i] = val
			i++
		}
	}
	return "", true
}

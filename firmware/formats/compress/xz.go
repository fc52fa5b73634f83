package compress

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// XZ is one xz stream.
var XZ = &firmware.Format{
	Name: "xz",
	Kind: firmware.KindCompression,
	Doc: "xz stream (FD 37 7A 58 5A 00): kernels, initramfs and squashfs-adjacent payloads. " +
		"Decoded to its end within a 64 MiB dictionary limit; block checks (CRC-32/CRC-64/SHA-256) are verified.",
	Magics:   []firmware.Magic{{Bytes: []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}}},
	Identify: identifyXZ,
	Extract:  extractXZ,
}

// newXZ returns a single-stream decoder. The decoder allocates the
// dictionary the stream asks for (DictCap is only a minimum), so xzDict
// checks the first block's request against maxDict first.
func newXZ(r io.Reader) (io.Reader, error) {
	return xz.ReaderConfig{DictCap: lzma.MinDictCap, SingleStream: true}.NewReader(r)
}

// xzDict returns the LZMA2 dictionary size of the first block of the
// stream at off, or an error when it is missing or larger than maxDict.
func xzDict(r io.ReaderAt, off, size int64) (int64, error) {
	var b [12 + 1024]byte
	n := min(int64(len(b)), size-off)
	if n < 12+8 {
		return 0, notFormat("xz", off, "stream too short")
	}
	if err := readAt("xz", r, b[:n], off, size); err != nil {
		return 0, err
	}
	if b[6] != 0 || b[7]&0xf0 != 0 {
		return 0, notFormat("xz", off, "bad stream flags")
	}
	h := b[12:n]
	if h[0] == 0 {
		return 0, notFormat("xz", off, "stream without blocks")
	}
	hlen := (int(h[0]) + 1) * 4
	if hlen > len(h) {
		return 0, notFormat("xz", off, "block header past the end")
	}
	h = h[:hlen]
	flags := h[1]
	nf := int(flags&3) + 1
	p := 2
	varint := func() (uint64, bool) {
		var v uint64
		for i := 0; i < 9 && p < len(h); i++ {
			c := h[p]
			p++
			v |= uint64(c&0x7f) << (7 * i)
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, ok := varint(); !ok {
				return 0, notFormat("xz", off, "bad block size field")
			}
		}
	}
	for range nf {
		id, ok1 := varint()
		psz, ok2 := varint()
		if !ok1 || !ok2 || p+int(psz) > len(h) {
			return 0, notFormat("xz", off, "bad filter flags")
		}
		if id == 0x21 {
			if psz != 1 || h[p] > 40 {
				return 0, notFormat("xz", off, "bad LZMA2 properties")
			}
			d := int64(2|h[p]&1) << (h[p]/2 + 11)
			if d > maxDict {
				return 0, &firmware.FormatError{Format: "xz", Off: off, Msg: fmt.Sprintf("dictionary of %d MiB over the %d MiB limit", d>>20, maxDict>>20), Err: firmware.ErrNotFormat}
			}
			return d, nil
		}
		p += int(psz)
	}
	return 0, notFormat("xz", off, "first block has no LZMA2 filter")
}

func identifyXZ(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var h [12]byte
	if err := readAt("xz", r, h[:], off, size); err != nil {
		return nil, err
	}
	dict, err := xzDict(r, off, size)
	if err != nil {
		return nil, err
	}
	in := newCountReader(r, off, size)
	z, err := newXZ(in)
	if err != nil {
		return nil, &firmware.FormatError{Format: "xz", Off: off, Msg: "header", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, err)}
	}
	m, kept := measure(z, in)
	consumed := in.n
	if m.err != nil && strings.Contains(m.err.Error(), "unexpected data after stream") {
		// Single-stream mode read one byte past the stream to check for more.
		consumed--
		m.err = nil
	}
	check := map[byte]string{0: "none", 1: "CRC32", 4: "CRC64", 10: "SHA-256"}[h[7]&0x0f]
	c, err := streamChunk("xz", off, size, consumed, m, "xz compressed data, check "+check, true)
	if c != nil {
		c.Meta["check"] = check
		c.Meta["dictionary_size"] = dict
	}
	keepClean(c, m, r, kept)
	return c, err
}

func extractXZ(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	if _, err := xzDict(src, 0, src.Size()); err != nil {
		return err
	}
	if data, ok := keptStreams.take("xz", src); ok {
		return extractStream("xz", "data", c, data, out)
	}
	z, err := newXZ(newCountReader(src, 0, src.Size()))
	if err != nil {
		return &firmware.FormatError{Format: "xz", Off: 0, Msg: "header", Err: err}
	}
	return extractStream("xz", "data", c, z, out)
}

// LZMA is a stream in the legacy .lzma ("LZMA alone") format.
var LZMA = &firmware.Format{
	Name: "lzma",
	Kind: firmware.KindCompression,
	Doc: "LZMA alone (.lzma) stream: a 13-byte header (properties, dictionary size, uncompressed size) with no real magic, " +
		"common for kernels in uImages and for vendor payloads. Candidates start with properties 0x5d and a dictionary " +
		"size that is a multiple of 64 KiB; the header fields must be plausible and the stream must decode.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x5d, 0x00, 0x00}}},
	Identify: identifyLZMA,
	Extract:  extractLZMA,
}

// lzmaHeader checks the .lzma header and returns the dictionary and
// uncompressed sizes (-1 when unknown).
func lzmaHeader(r io.ReaderAt, off, size int64) (uint32, int64, error) {
	var h [13]byte
	if err := readAt("lzma", r, h[:], off, size); err != nil {
		return 0, 0, err
	}
	if h[0] >= 9*5*5 {
		return 0, 0, notFormat("lzma", off, "bad properties byte")
	}
	dict := binary.LittleEndian.Uint32(h[1:])
	if dict < 1<<12 || dict > 1<<30 {
		return 0, 0, notFormat("lzma", off, "implausible dictionary size")
	}
	// Encoders write 2^n or 2^n + 2^(n-1).
	if x := dict & (dict - 1); x != 0 && x&(x-1) != 0 {
		return 0, 0, notFormat("lzma", off, "dictionary size is not 2^n or 3*2^n")
	}
	usz := binary.LittleEndian.Uint64(h[5:])
	if usz == ^uint64(0) {
		return dict, -1, nil
	}
	if usz == 0 || usz > 1<<36 {
		return 0, 0, notFormat("lzma", off, "implausible uncompressed size")
	}
	return dict, int64(usz), nil
}

func newLZMA(r io.Reader) (io.Reader, error) {
	return lzma.ReaderConfig{DictCap: maxDict}.NewReader(r)
}

// lzmaProbeDict is the dictionary of the first decode of an LZMA candidate.
const lzmaProbeDict = 1 << 20

// measureLZMA decodes the LZMA stream at off with its header's dictionary
// size replaced by dict, and returns its output (as measure). The caller
// releases in.
func measureLZMA(r io.ReaderAt, off, size int64, dict uint32) (measured, []byte, *countReader, error) {
	in := newCountReader(r, off, size)
	var h [13]byte
	if _, err := io.ReadFull(in, h[:]); err != nil {
		in.release()
		return measured{}, nil, nil, err
	}
	binary.LittleEndian.PutUint32(h[1:], dict)
	z, err := newLZMA(&patchedReader{hdr: h[:], in: in})
	if err != nil {
		in.release()
		return measured{}, nil, nil, err
	}
	m, kept := measure(z, in)
	return m, kept, in, nil
}

// patchedReader serves a rewritten header, then the rest of the stream.
type patchedReader struct {
	hdr []byte
	in  *countReader
}

func (p *patchedReader) Read(b []byte) (int, error) {
	if len(p.hdr) > 0 {
		n := copy(b, p.hdr)
		p.hdr = p.hdr[n:]
		return n, nil
	}
	return p.in.Read(b)
}

func (p *patchedReader) ReadByte() (byte, error) {
	if len(p.hdr) > 0 {
		c := p.hdr[0]
		p.hdr = p.hdr[1:]
		return c, nil
	}
	return p.in.ReadByte()
}

func identifyLZMA(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	dict, usz, err := lzmaHeader(r, off, size)
	if err != nil {
		return nil, err
	}
	// A first decode with the dictionary capped at lzmaProbeDict decodes
	// exactly as the full one until the output passes the cap (no valid
	// distance reaches further back than the output so far): most
	// candidates fail long before, without allocating up to 64 MiB each. A
	// stream that fails once the decoder is past the cap is decoded again
	// with its own dictionary. The decoder runs ahead of what measure has
	// read by at most its buffer (the capped dictionary), and refills only
	// when less than one read (32 KiB) is left, so such a failure shows
	// after more than lzmaProbeDict - 64 KiB bytes out.
	m, kept, in, err := measureLZMA(r, off, size, min(dict, lzmaProbeDict))
	if err == nil && m.err != nil && dict > lzmaProbeDict && m.out > lzmaProbeDict-64<<10 {
		in.release()
		m, kept, in, err = measureLZMA(r, off, size, dict)
	}
	if err != nil {
		return nil, &firmware.FormatError{Format: "lzma", Off: off, Msg: "header", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, err)}
	}
	defer in.release()
	if m.err == nil && usz >= 0 && m.out != usz {
		return nil, notFormat("lzma", off, "decoded size does not match the header")
	}
	if m.out < 256 && m.err != nil {
		return nil, &firmware.FormatError{Format: "lzma", Off: off, Msg: "stream does not decode", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, m.err)}
	}
	desc := fmt.Sprintf("LZMA compressed data, dictionary %d KiB", dict>>10)
	if usz >= 0 {
		desc += fmt.Sprintf(", %d bytes uncompressed", usz)
	}
	c, err := streamChunk("lzma", off, size, in.n, m, desc, false)
	if c != nil {
		c.Meta["dictionary_size"] = dict
		if m.err == nil && !m.stopped {
			c.Confidence = firmware.ConfidenceMedium // no checksum in the format
		}
	}
	// A stream that decoded cleanly with the capped dictionary decodes the
	// same with its own (see above).
	keepClean(c, m, r, kept)
	return c, err
}

func extractLZMA(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	if data, ok := keptStreams.take("lzma", src); ok {
		return extractStream("lzma", "data", c, data, out)
	}
	z, err := newLZMA(newCountReader(src, 0, src.Size()))
	if err != nil {
		return &firmware.FormatError{Format: "lzma", Off: 0, Msg: "header", Err: err}
	}
	return extractStream("lzma", "data", c, z, out)
}

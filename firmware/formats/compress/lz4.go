package compress

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/pierrec/lz4/v4"
)

// LZ4 is one LZ4 frame.
var LZ4 = &firmware.Format{
	Name: "lz4",
	Kind: firmware.KindCompression,
	Doc: "LZ4 frame (04 22 4D 18): the frame descriptor's checksum is verified and the blocks are walked to the end mark " +
		"without decoding; extraction verifies block and content checksums.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x04, 0x22, 0x4d, 0x18}}},
	Identify: identifyLZ4,
	Extract:  extractLZ4,
}

const lz4FrameMagic = 0x184d2204

func identifyLZ4(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var h [4 + 14 + 1]byte // magic, longest descriptor, header checksum
	if err := readAt("lz4", r, h[:7], off, size); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(h[:]) != lz4FrameMagic {
		return nil, notFormat("lz4", off, "bad magic")
	}
	flg, bd := h[4], h[5]
	if flg>>6 != 1 || flg&0x02 != 0 || bd&0x8f != 0 || bd>>4 < 4 {
		return nil, notFormat("lz4", off, "bad frame descriptor")
	}
	dlen := 2
	if flg&0x08 != 0 {
		dlen += 8
	}
	if flg&0x01 != 0 {
		dlen += 4
	}
	if err := readAt("lz4", r, h[:4+dlen+1], off, size); err != nil {
		return nil, err
	}
	if hc := byte(xxh32(h[4:4+dlen], 0) >> 8); hc != h[4+dlen] {
		return nil, notFormat("lz4", off, "frame descriptor checksum mismatch")
	}
	maxBlock := int64(1) << (8 + 2*(bd>>4))
	blockSum := flg&0x10 != 0
	p := off + 4 + int64(dlen) + 1
	c := &firmware.Chunk{Offset: off, Format: "lz4", Confidence: firmware.ConfidenceHigh, Meta: map[string]any{"max_block_size": maxBlock}}
	var contentSize int64 = -1
	if flg&0x08 != 0 {
		contentSize = int64(binary.LittleEndian.Uint64(h[6:]))
		c.Meta["content_size"] = contentSize
	}
	var b [4]byte
	blocks := 0
	for {
		if p+4 > size {
			c.Size = size - off
			c.Confidence = firmware.ConfidenceLow
			c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: the frame ends with the file after %d blocks", blocks))
			break
		}
		if err := readAt("lz4", r, b[:], p, size); err != nil {
			return nil, err
		}
		p += 4
		v := binary.LittleEndian.Uint32(b[:])
		if v == 0 {
			if flg&0x04 != 0 {
				p += 4
			}
			if p > size {
				c.Size = size - off
				c.Warnings = append(c.Warnings, "truncated: content checksum missing")
				break
			}
			c.Size = p - off
			break
		}
		n := int64(v & 0x7fffffff)
		if n > maxBlock {
			return nil, notFormat("lz4", p-4, "block larger than the frame's maximum")
		}
		p += n
		if blockSum {
			p += 4
		}
		blocks++
	}
	c.Desc = fmt.Sprintf("LZ4 frame, %d blocks of at most %d KiB", blocks, maxBlock>>10)
	if contentSize >= 0 {
		c.Desc += fmt.Sprintf(", %d bytes uncompressed", contentSize)
	}
	return c, nil
}

func extractLZ4(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	z := lz4.NewReader(src)
	if err := z.Apply(lz4.ConcurrencyOption(1)); err != nil {
		return err
	}
	return extractStream("lz4", "data", c, z, out)
}

// LZ4Legacy is the legacy LZ4 format (lz4 -l), which Linux uses for
// LZ4-compressed kernels and initramfs.
var LZ4Legacy = &firmware.Format{
	Name: "lz4-legacy",
	Kind: firmware.KindCompression,
	Doc: "Legacy LZ4 stream (02 21 4C 18, lz4 -l; Linux kernels and initramfs): 8 MiB blocks with no end mark. " +
		"Blocks are decoded until one does not decode or the file ends.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x02, 0x21, 0x4c, 0x18}}},
	Identify: identifyLZ4Legacy,
	Extract:  extractLZ4Legacy,
}

const (
	lz4LegacyMagic = 0x184c2102
	lz4LegacyBlock = 8 << 20
	lz4LegacyBound = lz4LegacyBlock + lz4LegacyBlock/255 + 16
)

// legacyReader decodes the blocks of a legacy LZ4 stream in [off, end) and
// records where the stream stopped being valid.
type legacyReader struct {
	r        io.ReaderAt
	p, end   int64
	src, dst []byte
	out      []byte // decoded, not yet read
	blocks   int
	done     bool
}

func newLegacyReader(r io.ReaderAt, off, end int64) *legacyReader {
	return &legacyReader{r: r, p: off + 4, end: end}
}

// next decodes one block; false when the stream is over.
func (l *legacyReader) next() bool {
	var b [4]byte
	for {
		if l.p+4 > l.end {
			return false
		}
		if _, err := l.r.ReadAt(b[:], l.p); err != nil && err != io.EOF {
			return false
		}
		n := int64(binary.LittleEndian.Uint32(b[:]))
		if n == lz4LegacyMagic { // a concatenated stream continues it
			l.p += 4
			continue
		}
		if n == 0 || n > lz4LegacyBound || l.p+4+n > l.end {
			return false
		}
		if l.dst == nil {
			l.dst = legacyBufs.Get().(*[lz4LegacyBlock]byte)[:]
		}
		if int64(cap(l.src)) < n {
			l.src = make([]byte, n)
		}
		if _, err := l.r.ReadAt(l.src[:n], l.p+4); err != nil && err != io.EOF {
			return false
		}
		k, err := lz4.UncompressBlock(l.src[:n], l.dst)
		if err != nil || k == 0 {
			return false
		}
		l.p += 4 + n
		l.out = l.dst[:k]
		l.blocks++
		return true
	}
}

// legacyBufs recycles the 8 MiB block buffers.
var legacyBufs = sync.Pool{New: func() any { return new([lz4LegacyBlock]byte) }}

// release returns the block buffer; the reader must not be used afterwards.
func (l *legacyReader) release() {
	if l.dst != nil {
		legacyBufs.Put((*[lz4LegacyBlock]byte)(l.dst))
		l.dst, l.out = nil, nil
	}
}

func (l *legacyReader) Read(p []byte) (int, error) {
	for len(l.out) == 0 {
		if l.done || !l.next() {
			l.done = true
			l.release()
			return 0, io.EOF
		}
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}

func identifyLZ4Legacy(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var h [4]byte
	if err := readAt("lz4-legacy", r, h[:], off, size); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(h[:]) != lz4LegacyMagic {
		return nil, notFormat("lz4-legacy", off, "bad magic")
	}
	l := newLegacyReader(r, off, size)
	defer l.release()
	var out int64
	for l.next() {
		out += int64(len(l.out))
		if out > identifyMaxOut {
			break
		}
	}
	if l.blocks == 0 {
		return nil, notFormat("lz4-legacy", off, "first block does not decode")
	}
	c := &firmware.Chunk{Offset: off, Size: l.p - off, Format: "lz4-legacy", Confidence: firmware.ConfidenceMedium,
		Desc: fmt.Sprintf("LZ4 legacy stream, %d blocks, %d bytes uncompressed", l.blocks, out),
		Meta: map[string]any{"decompressed_size": out}}
	if out > identifyMaxOut {
		c.Size = size - off
		c.Warnings = append(c.Warnings, "stream not decoded to its end while identifying: it is assumed to run to the end of the file")
	}
	// Linux appends the uncompressed size as a 32-bit word.
	var t [4]byte
	if l.p+4 <= size {
		if _, err := r.ReadAt(t[:], l.p); err == nil && int64(binary.LittleEndian.Uint32(t[:])) == out {
			c.Size += 4
			c.Meta["size_trailer"] = true
		}
	}
	return c, nil
}

func extractLZ4Legacy(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	return extractStream("lz4-legacy", "data", c, newLegacyReader(src, 0, src.Size()), out)
}

// xxh32 is the 32-bit xxHash, which LZ4 frames use for their checksums.
func xxh32(b []byte, seed uint32) uint32 {
	const (
		p1 = 2654435761
		p2 = 2246822519
		p3 = 3266489917
		p4 = 668265263
		p5 = 374761393
	)
	n := len(b)
	var h uint32
	if n >= 16 {
		v1, v2, v3, v4 := seed+p1+p2, seed+p2, seed, seed-p1
		for len(b) >= 16 {
			v1 = bits.RotateLeft32(v1+binary.LittleEndian.Uint32(b[0:])*p2, 13) * p1
			v2 = bits.RotateLeft32(v2+binary.LittleEndian.Uint32(b[4:])*p2, 13) * p1
			v3 = bits.RotateLeft32(v3+binary.LittleEndian.Uint32(b[8:])*p2, 13) * p1
			v4 = bits.RotateLeft32(v4+binary.LittleEndian.Uint32(b[12:])*p2, 13) * p1
			b = b[16:]
		}
		h = bits.RotateLeft32(v1, 1) + bits.RotateLeft32(v2, 7) + bits.RotateLeft32(v3, 12) + bits.RotateLeft32(v4, 18)
	} else {
		h = seed + p5
	}
	h += uint32(n)
	for len(b) >= 4 {
		h += binary.LittleEndian.Uint32(b) * p3
		h = bits.RotateLeft32(h, 17) * p4
		b = b[4:]
	}
	for _, c := range b {
		h += uint32(c) * p5
		h = bits.RotateLeft32(h, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}

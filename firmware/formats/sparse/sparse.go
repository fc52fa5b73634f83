// Package sparse reads Android sparse images (the format img2simg and
// fastboot use for system and vendor partitions) and expands them to the raw
// image, which the engine then scans again (typically finding ext4).
//
// Identify walks every chunk header, so the chunk size is exact and the
// block count is checked against the header; Extract streams the expansion
// (raw, fill and don't-care chunks) without holding it in memory.
package sparse

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

// Name is the format name used in reports.
const Name = "android-sparse"

// RawName is the name of the expanded image handed to the Sink.
const RawName = "image.raw"

// Format declares Android sparse images.
var Format = &firmware.Format{
	Name: Name,
	Kind: firmware.KindContainer,
	Doc: "Android sparse image (magic 0xED26FF3A), as made by img2simg and flashed by fastboot. " +
		"Every chunk header is walked to find the exact size; the image is expanded " +
		"(raw, fill and don't-care chunks, optional CRC32 checked) to " + RawName +
		", which is scanned again.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x3A, 0xFF, 0x26, 0xED}}},
	Identify: identify,
	Extract:  extract,
}

const (
	magic      = 0xED26FF3A
	headerSize = 28
	chunkSize  = 12

	chunkRaw      = 0xCAC1
	chunkFill     = 0xCAC2
	chunkDontCare = 0xCAC3
	chunkCRC      = 0xCAC4
)

type header struct {
	major, minor     uint16
	fileHdr, chunkHd uint16
	blockSize        uint32
	blocks, chunks   uint32
	checksum         uint32
}

type chunk struct {
	typ    uint16
	blocks uint32
	total  uint32
	off    int64 // offset of the chunk header, relative to the image start
}

func formatErr(off int64, msg string, err error) error {
	return &firmware.FormatError{Format: Name, Off: off, Msg: msg, Err: err}
}

func readHeader(r io.ReaderAt, off, size int64) (*header, error) {
	if off < 0 || size-off < headerSize {
		return nil, formatErr(0, "too short for a header", firmware.ErrNotFormat)
	}
	var b [headerSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, formatErr(0, "reading header", firmware.ErrTruncated)
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != magic {
		return nil, formatErr(0, "bad magic", firmware.ErrNotFormat)
	}
	h := &header{
		major: le.Uint16(b[4:]), minor: le.Uint16(b[6:]),
		fileHdr: le.Uint16(b[8:]), chunkHd: le.Uint16(b[10:]),
		blockSize: le.Uint32(b[12:]), blocks: le.Uint32(b[16:]),
		chunks: le.Uint32(b[20:]), checksum: le.Uint32(b[24:]),
	}
	if h.major != 1 {
		return nil, formatErr(4, fmt.Sprintf("major version %d", h.major), firmware.ErrNotFormat)
	}
	if h.fileHdr < headerSize || h.chunkHd < chunkSize || h.fileHdr > 1024 || h.chunkHd > 1024 {
		return nil, formatErr(8, fmt.Sprintf("header sizes %d/%d", h.fileHdr, h.chunkHd), firmware.ErrNotFormat)
	}
	if h.blockSize == 0 || h.blockSize%4 != 0 || h.blockSize > 1<<24 {
		return nil, formatErr(12, fmt.Sprintf("block size %d", h.blockSize), firmware.ErrNotFormat)
	}
	if h.chunks == 0 || int64(h.chunks) > (size-off)/chunkSize {
		return nil, formatErr(20, fmt.Sprintf("%d chunks cannot fit", h.chunks), firmware.ErrNotFormat)
	}
	return h, nil
}

// iter reads chunk headers one after the other through a 64 KiB window, so
// images with millions of small chunks need neither millions of reads nor a
// slice of them all.
type iter struct {
	r         io.ReaderAt
	off, size int64 // image start and readable end (absolute)
	h         *header
	pos       int64 // next chunk header, relative to the image start
	i         uint32
	blocks    uint64

	buf   []byte
	start int64 // absolute offset of buf[0], -1 when empty
	n     int
}

func newIter(r io.ReaderAt, off, size int64, h *header) *iter {
	return &iter{r: r, off: off, size: size, h: h, pos: int64(h.fileHdr), buf: make([]byte, 64<<10), start: -1}
}

func (it *iter) read(abs int64, n int) ([]byte, error) {
	if it.start < 0 || abs < it.start || abs+int64(n) > it.start+int64(it.n) {
		m, err := it.r.ReadAt(it.buf[:min(int64(len(it.buf)), it.size-abs)], abs)
		if m < n && err != nil {
			return nil, err
		}
		it.start, it.n = abs, m
	}
	i := abs - it.start
	return it.buf[i : i+int64(n)], nil
}

// next returns the next chunk, checked against the header and the image
// size; ok is false after the last one.
func (it *iter) next() (c chunk, ok bool, err error) {
	h := it.h
	if it.i == h.chunks {
		if it.blocks != uint64(h.blocks) {
			return c, false, formatErr(16, fmt.Sprintf("chunks hold %d blocks, header declares %d", it.blocks, h.blocks), firmware.ErrNotFormat)
		}
		return c, false, nil
	}
	pos := it.pos
	if it.off+pos+int64(h.chunkHd) > it.size {
		return c, false, formatErr(pos, fmt.Sprintf("chunk %d of %d past the end", it.i, h.chunks), firmware.ErrTruncated)
	}
	b, err := it.read(it.off+pos, chunkSize)
	if err != nil {
		return c, false, formatErr(pos, "reading chunk header", firmware.ErrTruncated)
	}
	le := binary.LittleEndian
	c = chunk{typ: le.Uint16(b[0:]), blocks: le.Uint32(b[4:]), total: le.Uint32(b[8:]), off: pos}
	var want int64
	switch c.typ {
	case chunkRaw:
		want = int64(h.chunkHd) + int64(c.blocks)*int64(h.blockSize)
	case chunkFill, chunkCRC:
		want = int64(h.chunkHd) + 4
	case chunkDontCare:
		want = int64(h.chunkHd)
	default:
		return c, false, formatErr(pos, fmt.Sprintf("chunk %d has unknown type %#x", it.i, c.typ), firmware.ErrNotFormat)
	}
	if int64(c.total) != want {
		return c, false, formatErr(pos, fmt.Sprintf("chunk %d claims %d bytes, its type needs %d", it.i, c.total, want), firmware.ErrNotFormat)
	}
	if c.typ == chunkCRC && c.blocks != 0 {
		return c, false, formatErr(pos, "CRC chunk with blocks", firmware.ErrNotFormat)
	}
	it.blocks += uint64(c.blocks)
	if it.blocks > uint64(h.blocks) {
		return c, false, formatErr(pos, fmt.Sprintf("chunks hold more than the %d blocks the header declares", h.blocks), firmware.ErrNotFormat)
	}
	if it.off+pos+want > it.size {
		return c, false, formatErr(pos, fmt.Sprintf("chunk %d data past the end", it.i), firmware.ErrTruncated)
	}
	it.pos += want
	it.i++
	return c, true, nil
}

// walk visits every chunk header and returns the image's total size.
func walk(r io.ReaderAt, off, size int64, h *header, visit func(chunk) error) (int64, error) {
	it := newIter(r, off, size, h)
	for {
		c, ok, err := it.next()
		if err != nil {
			return 0, err
		}
		if !ok {
			return it.pos, nil
		}
		if visit != nil {
			if err := visit(c); err != nil {
				return 0, err
			}
		}
	}
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	h, err := readHeader(r, off, size)
	if err != nil {
		return nil, err
	}
	n, err := walk(r, off, size, h, nil)
	if err != nil {
		return nil, err
	}
	raw := int64(h.blocks) * int64(h.blockSize)
	return &firmware.Chunk{
		Offset:     off,
		Size:       n,
		Format:     Name,
		Confidence: firmware.ConfidenceHigh,
		Desc: fmt.Sprintf("Android sparse image v%d.%d, %d chunks, %d blocks of %d bytes (%d bytes expanded)",
			h.major, h.minor, h.chunks, h.blocks, h.blockSize, raw),
		Meta: map[string]any{
			"version":       fmt.Sprintf("%d.%d", h.major, h.minor),
			"block_size":    h.blockSize,
			"blocks":        h.blocks,
			"chunks":        h.chunks,
			"expanded_size": raw,
		},
	}, nil
}

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	h, err := readHeader(src, 0, src.Size())
	if err != nil {
		return err
	}
	// Check the whole structure first, then stream the chunks again.
	if _, err := walk(src, 0, src.Size(), h, nil); err != nil {
		return err
	}
	ex := &expander{ctx: ctx, src: src, h: h, chunks: newIter(src, 0, src.Size(), h), crc: crc32.NewIEEE(), out: out}
	raw := int64(h.blocks) * int64(h.blockSize)
	return out.Add(&firmware.Header{Name: RawName, Type: firmware.TypeFile, Mode: 0o644, Size: raw}, ex)
}

// expander streams the raw image chunk by chunk.
type expander struct {
	ctx    context.Context
	src    *io.SectionReader
	h      *header
	chunks *iter
	out    firmware.Sink

	cur  io.Reader // the current chunk's expansion
	crc  hash.Hash32
	fill [4]byte
}

func (e *expander) Read(p []byte) (int, error) {
	for {
		if e.cur != nil {
			n, err := e.cur.Read(p)
			if n > 0 {
				e.crc.Write(p[:n])
				return n, nil
			}
			if err != io.EOF {
				return 0, err
			}
			e.cur = nil
		}
		if err := e.ctx.Err(); err != nil {
			return 0, err
		}
		c, ok, err := e.chunks.next()
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, io.EOF
		}
		n := int64(c.blocks) * int64(e.h.blockSize)
		data := c.off + int64(e.h.chunkHd)
		switch c.typ {
		case chunkRaw:
			e.cur = io.NewSectionReader(e.src, data, n)
		case chunkFill:
			if _, err := e.src.ReadAt(e.fill[:], data); err != nil {
				return 0, formatErr(data, "reading fill value", firmware.ErrTruncated)
			}
			e.cur = io.LimitReader(&repeater{pat: e.fill}, n)
		case chunkDontCare:
			e.cur = io.LimitReader(&repeater{}, n)
		case chunkCRC:
			var b [4]byte
			if _, err := e.src.ReadAt(b[:], data); err != nil {
				return 0, formatErr(data, "reading CRC", firmware.ErrTruncated)
			}
			if want, got := binary.LittleEndian.Uint32(b[:]), e.crc.Sum32(); want != got {
				e.out.Warn(fmt.Sprintf("%s: CRC chunk at %#x: %08x, computed %08x", Name, c.off, want, got))
			}
		}
	}
}

// repeater is an endless reader of a 4-byte pattern.
type repeater struct {
	pat [4]byte
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.pat[(r.off+i)&3]
	}
	r.off = (r.off + len(p)) & 3
	return len(p), nil
}

package compress

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"hash/crc32"
	"io"

	"github.com/anchore/go-lzo"
	"github.com/cordon-vms/cordon/firmware"
)

// LZOP is an lzop file (LZO1X blocks).
var LZOP = &firmware.Format{
	Name: "lzop",
	Kind: firmware.KindCompression,
	Doc: "lzop file (89 4C 5A 4F 00 0D 0A 1A 0A) of LZO1X blocks: kernels and payloads on older SoCs. " +
		"The header checksum is verified and blocks are walked to the end mark; extraction checks each block's " +
		"Adler-32/CRC-32 when present. The stored file name names the output.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a}}},
	Identify: identifyLZOP,
	Extract:  extractLZOP,
}

const (
	lzopAdler32D = 0x00000001
	lzopAdler32C = 0x00000002
	lzopCRC32D   = 0x00000100
	lzopCRC32C   = 0x00000200
	lzopFilter   = 0x00000800
	lzopHCRC32   = 0x00001000
	lzopMaxBlock = 8 << 20 // lzop writes 256 KiB blocks
)

// lzopInfo is the parsed lzop header.
type lzopInfo struct {
	hdrLen int64
	flags  uint32
	method byte
	name   string
	mtime  int64
}

func lzopHeader(r io.ReaderAt, off, size int64) (*lzopInfo, error) {
	var h [9 + 2 + 2 + 2 + 1 + 1 + 4 + 4 + 4 + 4 + 4 + 1]byte
	n := min(int64(len(h)), size-off)
	if n < 9+16 {
		return nil, notFormat("lzop", off, "header runs past the end of the file")
	}
	if err := readAt("lzop", r, h[:n], off, size); err != nil {
		return nil, err
	}
	b := h[9:n]
	need := func(k int) error {
		if len(b) < k {
			return notFormat("lzop", off, "header runs past the end of the file")
		}
		return nil
	}
	version := binary.BigEndian.Uint16(b)
	b = b[4:] // version, library version
	if version < 0x0900 || version > 0x1fff {
		return nil, notFormat("lzop", off, "implausible version")
	}
	if version >= 0x0940 {
		b = b[2:] // version needed to extract
	}
	info := &lzopInfo{method: b[0]}
	if info.method < 1 || info.method > 3 {
		return nil, notFormat("lzop", off, fmt.Sprintf("unsupported method %d", info.method))
	}
	b = b[1:]
	if version >= 0x0940 {
		b = b[1:] // level
	}
	if err := need(4); err != nil {
		return nil, err
	}
	info.flags = binary.BigEndian.Uint32(b)
	b = b[4:]
	if info.flags&lzopFilter != 0 {
		return nil, notFormat("lzop", off, "filters are not supported")
	}
	if err := need(4 + 4 + 4 + 1); err != nil {
		return nil, err
	}
	b = b[4:] // mode
	info.mtime = int64(binary.BigEndian.Uint32(b))
	b = b[4:]
	if version >= 0x0940 {
		b = b[4:] // mtime high
	}
	nameLen := int64(b[0])
	fixed := int64(len(h[:n]) - len(b) + 1)
	total := fixed + nameLen + 4
	if off+total > size {
		return nil, notFormat("lzop", off, "header runs past the end of the file")
	}
	full := make([]byte, total)
	if err := readAt("lzop", r, full, off, size); err != nil {
		return nil, err
	}
	info.name = string(full[fixed : fixed+nameLen])
	want := binary.BigEndian.Uint32(full[total-4:])
	var got uint32
	if info.flags&lzopHCRC32 != 0 {
		got = crc32.ChecksumIEEE(full[9 : total-4])
	} else {
		got = adler32.Checksum(full[9 : total-4])
	}
	if got != want {
		return nil, notFormat("lzop", off, "header checksum mismatch")
	}
	info.hdrLen = total
	return info, nil
}

// lzopBlocks walks the blocks after the header. With dst != nil it decodes
// each block and calls emit with its content.
func lzopBlocks(r io.ReaderAt, off, size int64, info *lzopInfo, emit func([]byte) error) (end int64, blocks int, out int64, err error) {
	p := off + info.hdrLen
	var src, dst []byte
	for {
		var blk lzopBlock
		blk, p, err = info.blockHeader(r, off, size, p)
		if err != nil || blk.dlen == 0 {
			return p, blocks, out, err
		}
		slen, dlen := blk.slen, blk.dlen
		if p+slen > size {
			return size, blocks, out, &firmware.FormatError{Format: "lzop", Off: p - off, Msg: "block data", Err: firmware.ErrTruncated}
		}
		if emit != nil {
			if cap(src) < int(slen) {
				src = make([]byte, slen)
			}
			if cap(dst) < int(dlen) {
				dst = make([]byte, dlen)
			}
			d := dst[:dlen]
			if err := info.decodeBlock(r, off, p, blk, src[:slen], d); err != nil {
				return p, blocks, out, err
			}
			if err := emit(d); err != nil {
				return p, blocks, out, err
			}
		}
		p += slen
		out += dlen
		blocks++
	}
}

// lzopBlock is a block header: the decompressed and compressed sizes and
// the checksums of the decompressed data the header flags ask for.
type lzopBlock struct {
	dlen, slen int64
	dsum       [2]uint32 // Adler-32 then CRC-32, those present
}

// blockHeader reads the block header at p and returns the position of the
// block's data (or where reading stopped). dlen 0 is the end marker.
func (info *lzopInfo) blockHeader(r io.ReaderAt, off, size, p int64) (lzopBlock, int64, error) {
	var blk lzopBlock
	var b [8]byte
	if err := readAt("lzop", r, b[:4], p, size); err != nil {
		return blk, p, &firmware.FormatError{Format: "lzop", Off: p - off, Msg: "block header", Err: firmware.ErrTruncated}
	}
	blk.dlen = int64(binary.BigEndian.Uint32(b[:]))
	p += 4
	if blk.dlen == 0 {
		return blk, p, nil
	}
	if err := readAt("lzop", r, b[4:8], p, size); err != nil {
		return blk, p, &firmware.FormatError{Format: "lzop", Off: p - off, Msg: "block header", Err: firmware.ErrTruncated}
	}
	blk.slen = int64(binary.BigEndian.Uint32(b[4:]))
	p += 4
	if slen, dlen := blk.slen, blk.dlen; dlen > lzopMaxBlock || slen == 0 || slen > dlen || dlen > slen*256+64 {
		return blk, p, &firmware.FormatError{Format: "lzop", Off: p - off, Msg: fmt.Sprintf("bad block sizes %d/%d", slen, dlen)}
	}
	nd := 0
	for _, f := range []uint32{lzopAdler32D, lzopCRC32D} {
		if info.flags&f != 0 {
			var s [4]byte
			if err := readAt("lzop", r, s[:], p, size); err != nil {
				return blk, p, &firmware.FormatError{Format: "lzop", Off: p - off, Msg: "checksum", Err: firmware.ErrTruncated}
			}
			blk.dsum[nd] = binary.BigEndian.Uint32(s[:])
			nd++
			p += 4
		}
	}
	// Checksums of the compressed data are skipped.
	if blk.slen < blk.dlen {
		if info.flags&lzopAdler32C != 0 {
			p += 4
		}
		if info.flags&lzopCRC32C != 0 {
			p += 4
		}
	}
	return blk, p, nil
}

// decodeBlock reads the block's data at p into s, decodes it into d and
// checks its checksums.
func (info *lzopInfo) decodeBlock(r io.ReaderAt, off, p int64, blk lzopBlock, s, d []byte) error {
	if _, err := r.ReadAt(s, p); err != nil && err != io.EOF {
		return err
	}
	if blk.slen == blk.dlen {
		copy(d, s)
	} else if k, err := lzo.Decompress(s, d); err != nil || int64(k) != blk.dlen {
		return &firmware.FormatError{Format: "lzop", Off: p - off, Msg: "block does not decode", Err: err}
	}
	nd := 0
	if info.flags&lzopAdler32D != 0 {
		if adler32.Checksum(d) != blk.dsum[nd] {
			return &firmware.FormatError{Format: "lzop", Off: p - off, Msg: "block Adler-32 mismatch"}
		}
		nd++
	}
	if info.flags&lzopCRC32D != 0 && crc32.ChecksumIEEE(d) != blk.dsum[nd] {
		return &firmware.FormatError{Format: "lzop", Off: p - off, Msg: "block CRC-32 mismatch"}
	}
	return nil
}

func identifyLZOP(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	info, err := lzopHeader(r, off, size)
	if err != nil {
		return nil, err
	}
	end, blocks, out, err := lzopBlocks(r, off, size, info, nil)
	c := &firmware.Chunk{Offset: off, Size: end - off, Format: "lzop", Confidence: firmware.ConfidenceHigh,
		Meta: map[string]any{"method": info.method, "decompressed_size": out}}
	if info.name != "" {
		c.Meta["name"] = info.name
	}
	if info.mtime > 0 {
		c.Meta["mtime"] = info.mtime
	}
	if err != nil {
		if blocks == 0 && end-off <= info.hdrLen+8 {
			return nil, notFormat("lzop", off, "no valid block")
		}
		c.Confidence = firmware.ConfidenceLow
		c.Warnings = append(c.Warnings, err.Error())
		c.Size = min(end, size) - off
	}
	c.Desc = fmt.Sprintf("lzop compressed data, %d blocks, %d bytes uncompressed", blocks, out)
	if info.name != "" {
		c.Desc += fmt.Sprintf(", name %q", info.name)
	}
	return c, nil
}

func extractLZOP(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	info, err := lzopHeader(src, 0, src.Size())
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		_, _, _, err := lzopBlocks(src, 0, src.Size(), info, func(b []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			_, err := pw.Write(b)
			return err
		})
		pw.CloseWithError(err)
	}()
	err = extractStream("lzop", outName(info.name), c, pr, out)
	pr.CloseWithError(io.ErrClosedPipe) // stop the producer if the sink gave up early
	return err
}

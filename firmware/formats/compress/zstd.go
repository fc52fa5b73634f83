package compress

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/klauspost/compress/zstd"
)

// Zstd is one Zstandard frame.
var Zstd = &firmware.Format{
	Name: "zstd",
	Kind: firmware.KindCompression,
	Doc: "Zstandard frame (28 B5 2F FD): the frame header is checked and blocks are walked to the last one " +
		"without decoding; extraction decodes with a 64 MiB window limit and verifies the content checksum.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x28, 0xb5, 0x2f, 0xfd}}},
	Identify: identifyZstd,
	Extract:  extractZstd,
}

func identifyZstd(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	fr, err := readZstdFrameHeader(r, off, size)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{Offset: off, Format: "zstd", Confidence: firmware.ConfidenceMedium, Meta: map[string]any{}}
	if fr.fcs >= 0 {
		c.Meta["content_size"] = fr.fcs
	}
	blocks, err := fr.walkBlocks(r, off, size, c)
	if err != nil {
		return nil, err
	}
	c.Desc = fmt.Sprintf("Zstandard compressed data, %d blocks", blocks)
	if fr.fcs >= 0 {
		c.Desc += fmt.Sprintf(", %d bytes uncompressed", fr.fcs)
	}
	return c, nil
}

// zstdFrame is what a Zstandard frame header says.
type zstdFrame struct {
	hlen     int64 // header bytes after the magic
	fcs      int64 // frame content size, or -1
	maxBlock int64 // largest block the window allows
	checksum bool  // a content checksum follows the last block
}

// readZstdFrameHeader reads and checks the frame header at off.
func readZstdFrameHeader(r io.ReaderAt, off, size int64) (*zstdFrame, error) {
	var h [18]byte
	if err := readAt("zstd", r, h[:6], off, size); err != nil {
		return nil, err
	}
	fhd := h[4]
	if fhd&0x08 != 0 {
		return nil, notFormat("zstd", off, "reserved frame header bit set")
	}
	single := fhd&0x20 != 0
	hlen := int64(1)
	var window int64
	if !single {
		wd := h[5]
		exp := int64(wd>>3) + 10
		if exp > 31 {
			return nil, notFormat("zstd", off, "window too large")
		}
		base := int64(1) << exp
		window = base + base/8*int64(wd&7)
		hlen++
	}
	did := []int64{0, 1, 2, 4}[fhd&3]
	fcsLen := []int64{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcsLen = 1
	}
	hlen += did + fcsLen
	if err := readAt("zstd", r, h[:4+hlen], off, size); err != nil {
		return nil, err
	}
	var fcs int64 = -1
	if fcsLen > 0 {
		var v [8]byte
		copy(v[:], h[4+hlen-fcsLen:4+hlen])
		fcs = int64(binary.LittleEndian.Uint64(v[:]))
		if fcsLen == 2 {
			fcs += 256
		}
	}
	if single {
		window = fcs
	}
	maxBlock := int64(128 << 10)
	if window > 0 && window < maxBlock {
		maxBlock = window
	}
	return &zstdFrame{hlen: hlen, fcs: fcs, maxBlock: maxBlock, checksum: fhd&0x04 != 0}, nil
}

// walkBlocks walks the frame's block headers, without decoding, to the
// last block (and checksum), and sets c's size; a frame cut by the end of
// the file is kept with a warning. It returns the count of blocks.
func (fr *zstdFrame) walkBlocks(r io.ReaderAt, off, size int64, c *firmware.Chunk) (int, error) {
	truncated := func() {
		c.Size = size - off
		c.Confidence = firmware.ConfidenceLow
		c.Warnings = append(c.Warnings, "truncated: the frame ends with the file")
	}
	p := off + 4 + fr.hlen
	blocks := 0
	for {
		var b [4]byte
		if p+3 > size {
			if blocks == 0 {
				return 0, notFormat("zstd", off, "no block")
			}
			truncated()
			return blocks, nil
		}
		if err := readAt("zstd", r, b[:3], p, size); err != nil {
			return 0, err
		}
		bh := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		last, typ, bsize := bh&1 != 0, (bh>>1)&3, int64(bh>>3)
		p += 3
		switch typ {
		case 0: // raw
			if bsize > fr.maxBlock {
				return 0, notFormat("zstd", p-3, "raw block too large")
			}
			p += bsize
		case 1: // RLE
			if bsize > fr.maxBlock {
				return 0, notFormat("zstd", p-3, "RLE block too large")
			}
			p++
		case 2: // compressed
			if bsize > fr.maxBlock || bsize == 0 {
				return 0, notFormat("zstd", p-3, "compressed block too large")
			}
			p += bsize
		default:
			return 0, notFormat("zstd", p-3, "reserved block type")
		}
		blocks++
		if last {
			if fr.checksum {
				p += 4
			}
			if p > size {
				truncated()
				return blocks, nil
			}
			c.Size = p - off
			return blocks, nil
		}
	}
}

func extractZstd(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	z, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxDict), zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderLowmem(true))
	if err != nil {
		return &firmware.FormatError{Format: "zstd", Off: 0, Msg: "header", Err: err}
	}
	defer z.Close()
	return extractStream("zstd", "data", c, z, out)
}

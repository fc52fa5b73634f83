package nfcapd

import (
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// decompress returns a block's data, at most MaxBlockSize bytes.
func (r *Reader) decompress(comp byte, raw []byte) ([]byte, error) {
	limit := r.maxBlock()
	if cap(r.buf) < limit {
		r.buf = make([]byte, limit)
	}
	dst := r.buf[:limit]
	switch comp {
	case compLZO:
		n, err := lzo.Decompress(raw, dst)
		if err != nil {
			return nil, fmt.Errorf("LZO block: %v (or over the %d-byte limit)", err, limit)
		}
		return dst[:n], nil
	case compLZ4:
		n, err := lz4.UncompressBlock(raw, dst)
		if err != nil {
			return nil, fmt.Errorf("LZ4 block: %v (or over the %d-byte limit)", err, limit)
		}
		return dst[:n], nil
	case compBZ2:
		zr := bzip2.NewReader(bytes.NewReader(raw))
		n, err := io.ReadFull(zr, dst)
		if err == nil { // full: the stream must end here
			var one [1]byte
			if m, _ := zr.Read(one[:]); m > 0 {
				return nil, fmt.Errorf("bzip2 block: decompresses to more than the %d-byte limit", limit)
			}
			return dst[:n], nil
		}
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return dst[:n], nil
		}
		return nil, fmt.Errorf("bzip2 block: %v", err)
	case compZSTD:
		d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(limit)), zstd.WithDecoderMaxWindow(uint64(limit)), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %v", err)
		}
		defer d.Close()
		out, err := d.DecodeAll(raw, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("zstd block: %v (limit %d bytes)", err, limit)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression %d", comp)
}

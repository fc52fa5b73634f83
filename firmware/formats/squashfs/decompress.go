package squashfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/therootcompany/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Compressor ids as stored in the superblock.
const (
	compGZIP = 1
	compLZMA = 2
	compLZO  = 3
	compXZ   = 4
	compLZ4  = 5
	compZSTD = 6
)

var compNames = map[uint16]string{
	compGZIP: "gzip", compLZMA: "lzma", compLZO: "lzo",
	compXZ: "xz", compLZ4: "lz4", compZSTD: "zstd",
}

// maxDict bounds the LZMA/XZ dictionary a block may ask for. mksquashfs never
// uses a dictionary larger than the block size (at most 1 MiB); a header that
// asks for more is hostile or corrupt and is refused before any allocation.
const maxDict = 8 << 20

// errOverrun is returned when a block decompresses to more than it may.
var errOverrun = errors.New("decompressed block larger than allowed")

// decompressor inflates one squashfs block (data or metadata) into dst, whose
// length is the most the block may produce, and returns the bytes written.
// Every implementation is bounded by len(dst): no block can expand past it,
// and nothing is written past len(dst) even when dst has spare capacity.
type decompressor interface {
	decompress(dst, src []byte) (int, error)
	close()
}

func newDecompressor(id uint16, blockSize int) (decompressor, error) {
	switch id {
	case compGZIP:
		return &zlibDec{}, nil
	case compXZ:
		return &xzDec{}, nil
	case compLZMA:
		return lzmaDec{}, nil
	case compLZO:
		return lzoDec{}, nil
	case compLZ4:
		return lz4Dec{}, nil
	case compZSTD:
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxDict),
			zstd.WithDecoderMaxMemory(uint64(max(blockSize, metaSize))),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			return nil, err
		}
		return &zstdDec{d: d}, nil
	}
	return nil, fmt.Errorf("unknown compressor id %d", id)
}

// readAllBounded reads r into dst and fails if r holds more than len(dst).
func readAllBounded(dst []byte, r io.Reader) (int, error) {
	n, err := io.ReadFull(r, dst)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return n, nil
	case err != nil:
		return n, err
	}
	var one [1]byte
	if m, _ := r.Read(one[:]); m > 0 {
		return n, errOverrun
	}
	return n, nil
}

type zlibDec struct {
	src bytes.Reader
	zr  io.ReadCloser
}

func (d *zlibDec) decompress(dst, src []byte) (int, error) {
	d.src.Reset(src)
	if d.zr == nil {
		zr, err := zlib.NewReader(&d.src)
		if err != nil {
			return 0, err
		}
		d.zr = zr
	} else if err := d.zr.(zlib.Resetter).Reset(&d.src, nil); err != nil {
		return 0, err
	}
	return readAllBounded(dst, d.zr)
}

func (d *zlibDec) close() {
	if d.zr != nil {
		d.zr.Close()
	}
}

type xzDec struct {
	src bytes.Reader
	zr  *xz.Reader
}

func (d *xzDec) decompress(dst, src []byte) (int, error) {
	d.src.Reset(src)
	if d.zr == nil {
		zr, err := xz.NewReader(&d.src, maxDict)
		if err != nil {
			return 0, err
		}
		d.zr = zr
	} else if err := d.zr.Reset(&d.src); err != nil {
		return 0, err
	}
	d.zr.Multistream(false)
	return readAllBounded(dst, d.zr)
}

func (d *xzDec) close() {}

type lzmaDec struct{}

func (lzmaDec) decompress(dst, src []byte) (int, error) {
	zr, err := lzma.ReaderConfig{DictCap: maxDict}.NewReader(bytes.NewReader(src))
	if err != nil {
		return 0, err
	}
	return readAllBounded(dst, zr)
}

func (lzmaDec) close() {}

type lzoDec struct{}

func (lzoDec) decompress(dst, src []byte) (n int, err error) {
	// The LZO decoder indexes slices directly; a hostile stream that slips
	// past its checks must become an error, not a crash of the whole unpack.
	defer func() {
		if p := recover(); p != nil {
			n, err = 0, fmt.Errorf("lzo: corrupt stream (%v)", p)
		}
	}()
	return lzo.Decompress(src, dst)
}

func (lzoDec) close() {}

type lz4Dec struct{}

func (lz4Dec) decompress(dst, src []byte) (int, error) {
	return lz4.UncompressBlock(src, dst)
}

func (lz4Dec) close() {}

type zstdDec struct{ d *zstd.Decoder }

func (d *zstdDec) decompress(dst, src []byte) (int, error) {
	// DecodeAll decodes into dst's spare capacity and may write past the
	// bytes it returns: cap it at len(dst), the bytes this block owns.
	out, err := d.d.DecodeAll(src, dst[:0:len(dst)])
	if err != nil {
		return 0, err
	}
	if len(out) > len(dst) {
		return 0, errOverrun
	}
	if len(out) > 0 && &out[0] != &dst[0] {
		copy(dst, out)
	}
	return len(out), nil
}

func (d *zstdDec) close() { d.d.Close() }

package squashfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

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

func newDecompressor(sb *superblock, blockSize int) (decompressor, error) {
	switch id := sb.Compressor; id {
	case compGZIP:
		return &zlibDec{}, nil
	case compXZ:
		return &xzDec{}, nil
	case compLZMA:
		return lzmaDec{v: sb.Lzma}, nil
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
	default:
		return nil, fmt.Errorf("unknown compressor id %d", id)
	}
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
	// The fast path takes the streams mksquashfs writes; anything it
	// refuses or fails on is decoded again by the general decoder, which
	// reports the error if there is one.
	if n, err := xzBlockDecode(dst, src); err == nil {
		return n, nil
	}
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

// lzmaKind is how an image frames its LZMA blocks. mksquashfs writes the
// classic 13-byte header (properties, dictionary size, uncompressed size);
// vendor kernels (Broadcom, DD-WRT, Realtek SDKs, the squashfs-lzma patches
// for 3.x) also wrote blocks without the size (5-byte header) or raw
// streams with no header at all and fixed lc/lp/pb.
type lzmaKind uint8

const (
	lzmaStd    lzmaKind = iota // 13-byte header
	lzmaNoSize                 // properties and dictionary size only
	lzmaRaw                    // no header: props below, dictionary = block
)

// lzmaVariant is the LZMA framing found in an image (probeLzma).
type lzmaVariant struct {
	kind  lzmaKind
	props byte // lzmaRaw: lc/lp/pb as (pb*5+lp)*9+lc
}

func (v lzmaVariant) String() string {
	switch v.kind {
	case lzmaNoSize:
		return "lzma (vendor, header without size)"
	case lzmaRaw:
		return fmt.Sprintf("lzma (vendor, raw, lc=%d lp=%d pb=%d)", v.props%9, v.props/9%5, v.props/45)
	}
	return "lzma"
}

// lzmaDefaultProps is lc=3, lp=0, pb=2, the LZMA SDK's default, which the
// raw vendor variants use.
const lzmaDefaultProps = (2*5+0)*9 + 3

type lzmaDec struct{ v lzmaVariant }

// decompress rebuilds a classic header for every variant. Its dictionary
// size is len(dst) whatever the block's header says: no match in a block
// can reach further back than the block's own output, so a header asking
// for more (hostile, or a vendor's non-standard size) costs nothing, and
// one claiming less than the encoder used does no harm.
func (d lzmaDec) decompress(dst, src []byte) (int, error) {
	var hdr [lzma.HeaderLen]byte
	var body []byte
	size := int64(-1)
	switch d.v.kind {
	case lzmaStd:
		if len(src) < lzma.HeaderLen {
			return 0, errors.New("lzma: block shorter than its header")
		}
		copy(hdr[:], src)
		size = int64(binary.LittleEndian.Uint64(src[5:]))
		body = src[lzma.HeaderLen:]
	case lzmaNoSize:
		if len(src) < 5 {
			return 0, errors.New("lzma: block shorter than its header")
		}
		copy(hdr[:5], src)
		body = src[5:]
	case lzmaRaw:
		hdr[0] = d.v.props
		body = src
	}
	if hdr[0] >= 9*5*5 {
		return 0, fmt.Errorf("lzma: properties byte %#x out of range", hdr[0])
	}
	binary.LittleEndian.PutUint32(hdr[1:], uint32(max(len(dst), lzma.MinDictCap)))
	binary.LittleEndian.PutUint64(hdr[5:], uint64(size))
	zr, err := lzma.ReaderConfig{DictCap: maxDict}.NewReader(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(body)))
	if err != nil {
		return 0, err
	}
	n, err := readAllBounded(dst, zr)
	if err != nil && size < 0 && n > 0 && isInputEnd(err) {
		// A stream without size or end marker stops where its input does.
		return n, nil
	}
	return n, err
}

func (lzmaDec) close() {}

// isInputEnd reports whether err says the compressed input ran out.
func isInputEnd(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "unexpected EOF")
}

// probeCompressor settles what the superblock cannot say: which LZMA framing
// an LZMA image uses, and whether a 3.x image (whose superblock has no
// compressor field) is zlib, as mksquashfs 3.x wrote, or a vendor's LZMA.
// It decodes the first metadata block with each candidate in turn.
func probeCompressor(r io.ReaderAt, size int64, sb *superblock) {
	if sb.Compressor != compLZMA && !sb.old() {
		return
	}
	pos := int64(sb.InodeTable)
	var h [2]byte
	if _, err := r.ReadAt(h[:], pos); err != nil {
		return
	}
	hdr := sb.order().Uint16(h[:])
	if sb.old() && sb.Flags&flagCheck != 0 {
		pos++
	}
	n := int64(hdr & 0x7fff)
	if hdr&0x8000 != 0 || n == 0 || pos+2+n > size {
		return // stored or damaged: keep the default, errors will tell
	}
	raw := make([]byte, n)
	if _, err := r.ReadAt(raw, pos+2); err != nil {
		return
	}
	out := make([]byte, metaSize)
	type candidate struct {
		comp uint16
		v    lzmaVariant
	}
	var cands []candidate
	if sb.Compressor == compGZIP {
		cands = append(cands, candidate{comp: compGZIP})
	}
	cands = append(cands,
		candidate{comp: compLZMA, v: lzmaVariant{kind: lzmaStd}},
		candidate{comp: compLZMA, v: lzmaVariant{kind: lzmaNoSize}},
		candidate{comp: compLZMA, v: lzmaVariant{kind: lzmaRaw, props: lzmaDefaultProps}})
	for _, c := range cands {
		var d decompressor = lzmaDec{v: c.v}
		if c.comp == compGZIP {
			d = &zlibDec{}
		}
		m, err := d.decompress(out, raw)
		d.close()
		if err == nil && m > 0 {
			sb.Compressor, sb.Lzma = c.comp, c.v
			return
		}
	}
}

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

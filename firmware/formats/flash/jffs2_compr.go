package flash

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zlib"
	"github.com/ulikunitz/xz/lzma"
)

// JFFS2 data node compression ids (JFFS2_COMPR_* in the kernel's
// include/uapi/linux/jffs2.h).
const (
	jffs2ComprNone      = 0x00
	jffs2ComprZero      = 0x01
	jffs2ComprRtime     = 0x02
	jffs2ComprRubinMIPS = 0x03
	jffs2ComprCopy      = 0x04
	jffs2ComprDynRubin  = 0x05
	jffs2ComprZlib      = 0x06
	jffs2ComprLZO       = 0x07
	// LZMA is not in the mainline kernel. OpenWrt's kernel and mtd-utils
	// patches number it 0x15; jefferson (and images made with its
	// assumption) use 0x08. The two ids do not collide with anything else.
	jffs2ComprLZMA        = 0x08
	jffs2ComprLZMAOpenWrt = 0x15
)

// The LZMA parameters JFFS2 compressors use: lc=0, lp=0, pb=0 and an 8 KiB
// dictionary, with no header in the node (OpenWrt's compr_lzma.c).
const (
	jffs2LZMAProps = 0 // (pb*5+lp)*9+lc
	jffs2LZMADict  = 0x2000
)

func jffs2ComprName(c uint8) string {
	switch c {
	case jffs2ComprNone:
		return "none"
	case jffs2ComprZero:
		return "zero"
	case jffs2ComprRtime:
		return "rtime"
	case jffs2ComprRubinMIPS:
		return "rubinmips"
	case jffs2ComprCopy:
		return "copy"
	case jffs2ComprDynRubin:
		return "dynrubin"
	case jffs2ComprZlib:
		return "zlib"
	case jffs2ComprLZO:
		return "lzo"
	case jffs2ComprLZMA, jffs2ComprLZMAOpenWrt:
		return "lzma"
	}
	return fmt.Sprintf("unknown (%#x)", c)
}

var (
	errJFFS2Compr = errors.New("unsupported compression")
	errJFFS2Short = errors.New("data decompressed short of the node's size")
)

// jffs2Decompress inflates the data of one node into dst, whose length is
// the node's decompressed size (dsize). It never writes past dst.
func jffs2Decompress(compr uint8, dst, src []byte) (err error) {
	defer func() {
		// The LZO decoder indexes slices directly; a hostile stream that
		// slips past its checks must become an error, not a crash.
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: corrupt stream (%v)", jffs2ComprName(compr), p)
		}
	}()
	var n int
	switch compr {
	case jffs2ComprNone:
		n = copy(dst, src)
	case jffs2ComprZero:
		clear(dst)
		n = len(dst)
	case jffs2ComprRtime:
		n = rtimeDecompress(dst, src)
	case jffs2ComprZlib:
		n, err = jffs2Inflate(dst, src)
	case jffs2ComprLZO:
		n, err = lzo.Decompress(src, dst)
	case jffs2ComprLZMA, jffs2ComprLZMAOpenWrt:
		n, err = jffs2LZMA(dst, src)
	default:
		return fmt.Errorf("%w %s", errJFFS2Compr, jffs2ComprName(compr))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", jffs2ComprName(compr), err)
	}
	if n < len(dst) {
		return fmt.Errorf("%s: %w (%d of %d bytes)", jffs2ComprName(compr), errJFFS2Short, n, len(dst))
	}
	return nil
}

// rtimeDecompress decodes JFFS2's "rtime" run-length scheme: pairs of a
// literal byte and a repeat count; the repeated bytes are copied from just
// after the previous occurrence of that literal. It returns the bytes
// written, stopping at the end of either slice.
func rtimeDecompress(dst, src []byte) int {
	var last [256]int // position after the previous occurrence of each byte
	out := 0
	for in := 0; out < len(dst) && in+1 < len(src); in += 2 {
		value, repeat := src[in], int(src[in+1])
		dst[out] = value
		out++
		back := last[value]
		last[value] = out
		// back < out always holds, so copying forward byte by byte reads
		// only bytes already written, even when the runs overlap.
		for ; repeat > 0 && out < len(dst); repeat-- {
			dst[out] = dst[back]
			out++
			back++
		}
	}
	return out
}

// jffs2Inflate inflates a zlib stream, or raw deflate data when the zlib
// header is absent (the kernel accepts both).
func jffs2Inflate(dst, src []byte) (int, error) {
	var r io.Reader
	if len(src) >= 2 && src[0]&0x8f == 0x08 && (uint16(src[0])<<8|uint16(src[1]))%31 == 0 {
		zr, err := zlib.NewReader(bytes.NewReader(src))
		if err != nil {
			return 0, err
		}
		defer zr.Close()
		r = zr
	} else {
		fr := flate.NewReader(bytes.NewReader(src))
		defer fr.Close()
		r = fr
	}
	return readFull(dst, r)
}

// jffs2LZMA decodes the headerless LZMA data of a node: the classic 13-byte
// header is rebuilt from the fixed JFFS2 parameters and the node's size.
func jffs2LZMA(dst, src []byte) (int, error) {
	var hdr [13]byte
	hdr[0] = jffs2LZMAProps
	binary.LittleEndian.PutUint32(hdr[1:], jffs2LZMADict)
	binary.LittleEndian.PutUint64(hdr[5:], uint64(len(dst)))
	zr, err := lzma.ReaderConfig{DictCap: jffs2LZMADict}.NewReader(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(src)))
	if err != nil {
		return 0, err
	}
	return readFull(dst, zr)
}

// readFull reads r into dst; a stream that ends early is not an error here
// (the caller compares the count with the node's size).
func readFull(dst []byte, r io.Reader) (int, error) {
	n, err := io.ReadFull(r, dst)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return n, err
}

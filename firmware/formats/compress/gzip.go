package compress

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
)

// GZIP is one gzip member (RFC 1952).
var GZIP = &firmware.Format{
	Name: "gzip",
	Kind: firmware.KindCompression,
	Doc: "gzip (RFC 1952) member: compressed kernels, initramfs images, web assets and tarballs. " +
		"The stream is decoded to find its end and verify its CRC-32; the original file name, when the header has one, names the output.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x1f, 0x8b, 0x08}}},
	Identify: identifyGzip,
	Extract:  extractGzip,
}

const (
	gzFText    = 1 << 0
	gzFHCRC    = 1 << 1
	gzFExtra   = 1 << 2
	gzFName    = 1 << 3
	gzFComment = 1 << 4
)

func unixTime(v int64) time.Time { return time.Unix(v, 0).UTC() }

// gzipHeader checks the fixed header fields and returns the file name, if any.
func gzipHeader(r io.ReaderAt, off, size int64) (string, uint32, error) {
	var h [10]byte
	if err := readAt("gzip", r, h[:], off, size); err != nil {
		return "", 0, err
	}
	flg := h[3]
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 {
		return "", 0, notFormat("gzip", off, "bad magic")
	}
	if flg&0xe0 != 0 {
		return "", 0, notFormat("gzip", off, "reserved flag bits set")
	}
	if xfl := h[8]; xfl != 0 && xfl != 2 && xfl != 4 {
		return "", 0, notFormat("gzip", off, "bad extra flags")
	}
	if os := h[9]; os > 13 && os != 255 {
		return "", 0, notFormat("gzip", off, "bad OS byte")
	}
	mtime := binary.LittleEndian.Uint32(h[4:])
	name := ""
	if flg&gzFName != 0 {
		p := off + 10
		if flg&gzFExtra != 0 {
			var xl [2]byte
			if err := readAt("gzip", r, xl[:], p, size); err != nil {
				return "", 0, err
			}
			p += 2 + int64(binary.LittleEndian.Uint16(xl[:]))
		}
		var buf [256]byte
		n := min(int64(len(buf)), size-p)
		if n > 0 {
			if err := readAt("gzip", r, buf[:n], p, size); err != nil {
				return "", 0, err
			}
			if i := strings.IndexByte(string(buf[:n]), 0); i >= 0 {
				name = string(buf[:i])
			}
		}
	}
	return name, mtime, nil
}

func identifyGzip(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	name, mtime, err := gzipHeader(r, off, size)
	if err != nil {
		return nil, err
	}
	in := newCountReader(r, off, size)
	z, err := gzip.NewReader(in)
	if err != nil {
		return nil, &firmware.FormatError{Format: "gzip", Off: off, Msg: "header", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, err)}
	}
	z.Multistream(false)
	m, kept := measure(z, in)
	desc := "gzip compressed data"
	if name != "" {
		desc += fmt.Sprintf(", name %q", name)
	}
	c, err := streamChunk("gzip", off, size, in.n, m, desc, true)
	if err != nil {
		return nil, err
	}
	keepClean(c, m, r, kept)
	if name != "" {
		c.Meta["name"] = name
	}
	if mtime != 0 {
		c.Meta["mtime"] = int64(mtime)
	}
	return c, nil
}

// outName is the output file name: the name the stream recorded (its base
// name; the Sink still checks it), else "data".
func outName(name string) string {
	if i := strings.LastIndexAny(name, "/\\"); i >= 0 {
		name = name[i+1:]
	}
	if name == "" || name == "." || name == ".." || name == "report.json" {
		return "data"
	}
	return name
}

func extractGzip(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	name, _ := c.Meta["name"].(string)
	if data, ok := keptStreams.take("gzip", src); ok {
		return extractStream("gzip", outName(name), c, data, out)
	}
	z, err := gzip.NewReader(newCountReader(src, 0, src.Size()))
	if err != nil {
		return &firmware.FormatError{Format: "gzip", Off: 0, Msg: "header", Err: err}
	}
	z.Multistream(false)
	return extractStream("gzip", outName(name), c, z, out)
}

// Zlib is a zlib stream (RFC 1950) with the usual 32 KiB window.
var Zlib = &firmware.Format{
	Name: "zlib",
	Kind: firmware.KindCompression,
	Doc: "zlib (RFC 1950) stream with a 32 KiB window (header 78 01, 78 5e, 78 9c or 78 da): " +
		"compressed blocks inside vendor images and bootloaders. Decoded to its end; the Adler-32 checksum must match.",
	Magics: []firmware.Magic{
		{Bytes: []byte{0x78, 0x01}}, {Bytes: []byte{0x78, 0x5e}},
		{Bytes: []byte{0x78, 0x9c}}, {Bytes: []byte{0x78, 0xda}},
	},
	Identify: identifyZlib,
	Extract:  extractZlib,
}

// zlibReaders recycles zlib decoders between candidates.
var zlibReaders sync.Pool

// zlibMaxOut bounds the output of a zlib candidate while identifying it.
const zlibMaxOut = 64 << 20

func identifyZlib(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var h [2]byte
	if err := readAt("zlib", r, h[:], off, size); err != nil {
		return nil, err
	}
	if h[0]&0x0f != 8 || h[0]>>4 > 7 || (uint16(h[0])<<8|uint16(h[1]))%31 != 0 || h[1]&0x20 != 0 {
		return nil, notFormat("zlib", off, "bad header")
	}
	// Two bytes of magic match random data often: check the first deflate
	// block's header (and, for a dynamic block, its code tables) before
	// building a decoder.
	var d [deflateHeaderMax]byte
	n := min(int64(len(d)), size-off-2)
	if err := readAt("zlib", r, d[:n], off+2, size); err != nil {
		return nil, err
	}
	if why := deflateFirstBlock(d[:n]); why != "" {
		return nil, notFormat("zlib", off+2, why)
	}
	in := newCountReader(r, off, size)
	defer in.release()
	// Decoders are recycled: their 32 KiB windows made most of the
	// allocation of a scan of random data.
	var z io.ReadCloser
	if v := zlibReaders.Get(); v != nil {
		z = v.(io.ReadCloser)
		if err := z.(zlib.Resetter).Reset(in, nil); err != nil {
			zlibReaders.Put(z)
			return nil, &firmware.FormatError{Format: "zlib", Off: off, Msg: "header", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, err)}
		}
	} else {
		var err error
		if z, err = zlib.NewReader(in); err != nil {
			return nil, &firmware.FormatError{Format: "zlib", Off: off, Msg: "header", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, err)}
		}
	}
	defer zlibReaders.Put(z)
	// Random data can decode as deflate for megabytes: give up early on
	// candidates that do not end (with a matching checksum) within zlibMaxOut.
	m, kept := measure(io.LimitReader(z, zlibMaxOut+1), in)
	if m.out > zlibMaxOut {
		m.stopped = true
	}
	if m.err != nil || m.stopped {
		// Without a clean end (and its checksum) two bytes of magic say too little.
		return nil, &firmware.FormatError{Format: "zlib", Off: off, Msg: "stream does not decode to a verified end", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, m.err)}
	}
	c, err := streamChunk("zlib", off, size, in.n, m, "zlib compressed data", false)
	keepClean(c, m, r, kept)
	return c, err
}

func extractZlib(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	if data, ok := keptStreams.take("zlib", src); ok {
		return extractStream("zlib", "data", c, data, out)
	}
	z, err := zlib.NewReader(newCountReader(src, 0, src.Size()))
	if err != nil {
		return &firmware.FormatError{Format: "zlib", Off: 0, Msg: "header", Err: err}
	}
	return extractStream("zlib", "data", c, z, out)
}

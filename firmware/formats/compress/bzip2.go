package compress

import (
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

// Bzip2 is a bzip2 stream.
var Bzip2 = &firmware.Format{
	Name: "bzip2",
	Kind: firmware.KindCompression,
	Doc: "bzip2 stream (\"BZh\" + block size + the first block's 0x314159265359 marker): older kernels and root filesystems. " +
		"Decoded to its end; block and stream CRCs are checked.",
	Magics:   bzip2Magics(),
	Identify: identifyBzip2,
	Extract:  extractBzip2,
}

func bzip2Magics() []firmware.Magic {
	var ms []firmware.Magic
	for lvl := byte('1'); lvl <= '9'; lvl++ {
		ms = append(ms, firmware.Magic{Bytes: []byte{'B', 'Z', 'h', lvl, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59}})
	}
	return ms
}

func identifyBzip2(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var h [10]byte
	if err := readAt("bzip2", r, h[:], off, size); err != nil {
		return nil, err
	}
	if string(h[:3]) != "BZh" || h[3] < '1' || h[3] > '9' || string(h[4:]) != "1AY&SY" {
		return nil, notFormat("bzip2", off, "bad magic")
	}
	in := newCountReader(r, off, size)
	m, kept := measure(bzip2.NewReader(in), in)
	consumed := in.n
	if m.err != nil && strings.Contains(m.err.Error(), "continuation file") {
		// The stream ended; the reader looked at two more bytes for a
		// concatenated stream and found none.
		consumed -= 2
		m.err = nil
	}
	var se bzip2.StructuralError
	if errors.As(m.err, &se) && m.out == 0 {
		return nil, &firmware.FormatError{Format: "bzip2", Off: off, Msg: "stream does not decode", Err: fmt.Errorf("%w: %v", firmware.ErrNotFormat, m.err)}
	}
	c, err := streamChunk("bzip2", off, size, consumed, m, fmt.Sprintf("bzip2 compressed data, block size %c00k", h[3]), true)
	keepClean(c, m, r, kept)
	return c, err
}

func extractBzip2(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	if data, ok := keptStreams.take("bzip2", src); ok {
		return extractStream("bzip2", "data", c, data, out)
	}
	return extractStream("bzip2", "data", c, bzip2.NewReader(newCountReader(src, 0, src.Size())), out)
}

// Package compress declares the single-stream compression formats found in
// firmware: gzip, zlib, bzip2, xz, lzma (alone), lz4 (frame and legacy), lzop
// and zstd. Each Identify finds the exact end of its stream (by walking its
// block structure, or by decoding it within a budget) so that what follows
// can be scanned; each Extract hands one decompressed file to the Sink. The
// output of a gzip, zlib, xz, lzma or bzip2 stream Identify decoded cleanly is
// kept for Extract (decoded.go), so such a stream is decoded once.
package compress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/cordon-vms/cordon/firmware"
)

// Identification budget: a stream is decoded to find its end, but never past
// identifyMaxOut bytes, nor past identifyRatio times its input once it has
// produced identifyFloor bytes (deflate cannot exceed 1032:1, so only bombs
// of the other formats hit the ratio). A stream stopped by the budget is
// reported as running to the end of the file.
const (
	identifyFloor  = 64 << 20
	identifyMaxOut = 512 << 20
	identifyRatio  = 1100
	// maxDict bounds the dictionary or window a decoder may allocate.
	maxDict = 64 << 20
)

// countReader counts the bytes its consumer took. It implements
// io.ByteReader so that decoders (flate, bzip2, lzma) read exactly what they
// need and the count is the stream's length.
type countReader struct {
	br *bufio.Reader
	n  int64
}

func newCountReader(r io.ReaderAt, off, size int64) *countReader {
	br := readerBufs.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(r, off, size-off))
	return &countReader{br: br}
}

// release recycles the buffer; c must not be used afterwards.
func (c *countReader) release() {
	c.br.Reset(nil)
	readerBufs.Put(c.br)
	c.br = nil
}

// readerBufs recycles countReader buffers: identification tries many
// candidates that fail after a few bytes.
var readerBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// measureBufs recycles the buffers measure decodes into.
var measureBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// measured is what decoding a candidate stream showed.
type measured struct {
	out     int64 // bytes decoded
	stopped bool  // the budget stopped decoding before the end
	err     error // decoding error (nil at a clean end)
}

// measure decodes dec to its end within the identification budget. in counts
// the compressed bytes consumed so far. It also returns the output while it
// stays within keepMaxStream bytes (nil past that), for keptStreams.
func measure(dec io.Reader, in *countReader) (measured, []byte) {
	b := measureBufs.Get().(*[32 << 10]byte)
	defer measureBufs.Put(b)
	buf := b[:]
	var m measured
	var kept []byte
	keep := true
	for {
		n, err := dec.Read(buf)
		m.out += int64(n)
		if keep && n > 0 {
			if m.out <= keepMaxStream {
				kept = append(kept, buf[:n]...)
			} else {
				keep, kept = false, nil
			}
		}
		if err == io.EOF {
			return m, slices.Clip(kept)
		}
		if err != nil {
			m.err = err
			return m, kept
		}
		if m.out > identifyMaxOut || (m.out > identifyFloor && m.out > identifyRatio*max(in.n, 1)) {
			m.stopped = true
			return m, nil
		}
	}
}

// keepClean hands the output of a stream that decoded cleanly to
// keptStreams, for Extract.
func keepClean(c *firmware.Chunk, m measured, r io.ReaderAt, kept []byte) {
	if c != nil && m.err == nil && !m.stopped && int64(len(kept)) == m.out {
		keptStreams.keep(c.Format, r, c.Offset, c.Size, kept)
	}
}

// minDamaged is how far a stream behind a strong header must decode (in
// compressed bytes, header included) before its failure is reported as
// damage: code and tables match gzip's header now and then, and then fail
// within the first bytes.
const minDamaged = 64

// streamChunk turns the outcome of decoding a stream that starts at off into
// a chunk. consumed is the stream's length when decoding ended cleanly.
// strongHeader says the header's checks make a chance match unlikely (gzip's
// flags, xz's CRC, bzip2's 48-bit block magic): a stream behind such a
// header that does not decode is reported as damaged (an error without
// ErrNotFormat, which the engine lists as a failed gap), not as "not this
// format", once it decoded something or read minDamaged bytes.
func streamChunk(name string, off, size, consumed int64, m measured, desc string, strongHeader bool) (*firmware.Chunk, error) {
	c := &firmware.Chunk{Offset: off, Format: name, Confidence: firmware.ConfidenceHigh, Meta: map[string]any{}}
	switch {
	case m.stopped:
		c.Size = size - off
		c.Confidence = firmware.ConfidenceMedium
		c.Warnings = append(c.Warnings, fmt.Sprintf("stream not decoded to its end while identifying (stopped after %d bytes out of %d in): it is assumed to run to the end of the file", m.out, consumed))
	case m.err == nil:
		c.Size = consumed
		c.Meta["decompressed_size"] = m.out
	case truncated(m.err) && off+consumed >= size && m.out > 0:
		c.Size = size - off
		c.Confidence = firmware.ConfidenceLow
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: the stream ends with the file after %d decompressed bytes", m.out))
	case m.out >= 64<<10:
		c.Size = max(consumed, 1)
		c.Confidence = firmware.ConfidenceLow
		c.Warnings = append(c.Warnings, fmt.Sprintf("corrupt after %d decompressed bytes: %v", m.out, m.err))
	case strongHeader && (m.out > 0 || consumed >= minDamaged):
		msg := fmt.Sprintf("header valid, but the stream does not decode (%d bytes out)", m.out)
		if truncated(m.err) {
			return nil, &firmware.FormatError{Format: name, Off: off, Msg: msg, Err: fmt.Errorf("%w: %v", firmware.ErrTruncated, m.err)}
		}
		return nil, &firmware.FormatError{Format: name, Off: off, Msg: msg, Err: m.err}
	default:
		return nil, &firmware.FormatError{Format: name, Off: off, Msg: "stream does not decode", Err: errors.Join(firmware.ErrNotFormat, m.err)}
	}
	c.Desc = desc
	if c.Size <= 0 || c.Size > size-off {
		return nil, &firmware.FormatError{Format: name, Off: off, Msg: "stream has no length", Err: firmware.ErrNotFormat}
	}
	return c, nil
}

func truncated(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, firmware.ErrTruncated)
}

// notFormat is a rejection at off.
func notFormat(name string, off int64, msg string) error {
	return &firmware.FormatError{Format: name, Off: off, Msg: msg, Err: firmware.ErrNotFormat}
}

// readAt reads exactly len(p) bytes at off, or reports the format as not present.
func readAt(name string, r io.ReaderAt, p []byte, off, size int64) error {
	if off < 0 || off+int64(len(p)) > size {
		return notFormat(name, off, "header runs past the end of the file")
	}
	if _, err := r.ReadAt(p, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(len(p)) <= size) {
		return &firmware.FormatError{Format: name, Off: off, Msg: "read", Err: errors.Join(firmware.ErrNotFormat, err)}
	}
	return nil
}

// extractStream hands the decoded stream to the sink as one file. A decoding
// error after some output keeps what was written and is returned, wrapping
// firmware.ErrTruncated when the input ended early.
func extractStream(name, file string, c *firmware.Chunk, dec io.Reader, out firmware.Sink) error {
	h := &firmware.Header{Name: file, Type: firmware.TypeFile, Mode: 0o644, Size: -1}
	if v, ok := c.Meta["mtime"].(int64); ok && v > 0 {
		h.ModTime = unixTime(v)
	}
	err := out.Add(h, dec)
	if err == nil {
		return nil
	}
	if errors.Is(err, firmware.ErrLimit) {
		return err
	}
	if truncated(err) {
		return &firmware.FormatError{Format: name, Off: c.Size, Msg: "stream truncated", Err: errors.Join(firmware.ErrTruncated, err)}
	}
	return &firmware.FormatError{Format: name, Off: 0, Msg: "decode", Err: err}
}

package zip

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
)

// Local headers lead, in order, to the central directory when every entry
// records its sizes (no data descriptor): walking them finds the archive's
// end without scanning the rest of the image, and recovers the entries of
// a zip whose central directory was cut off.

const (
	localLen   = 30
	centralLen = 46
	maxWalk    = 1 << 20 // entries
)

var (
	sigDescr = []byte("PK\x07\x08")
	sigSig   = []byte("PK\x05\x05")
)

// localEntry is one entry found by walking local headers.
type localEntry struct {
	name         string
	flags        uint16
	method       uint16
	modTime      time.Time
	dataOff      int64
	csize, usize int64
}

// walkLocal follows the local headers from the start of r. It returns the
// entries whose data is present, the offset after the last of them, and
// whether every size was known (no walk stops at a data descriptor with
// unknown sizes).
func walkLocal(r io.ReaderAt, size int64) (es []localEntry, end int64, known bool) {
	le := binary.LittleEndian
	var h [localLen]byte
	pos := int64(0)
	for len(es) < maxWalk {
		if size-pos < localLen {
			return es, pos, true
		}
		if _, err := r.ReadAt(h[:], pos); err != nil {
			return es, pos, true
		}
		if !bytes.Equal(h[:4], sigLocal) && !(pos == 0 && bytes.Equal(h[:4], sigDahua)) {
			return es, pos, true
		}
		e := localEntry{
			flags:   le.Uint16(h[6:]),
			method:  le.Uint16(h[8:]),
			modTime: dosTime(le.Uint16(h[12:]), le.Uint16(h[10:])),
			csize:   int64(le.Uint32(h[18:])),
			usize:   int64(le.Uint32(h[22:])),
		}
		nameLen, extraLen := int64(le.Uint16(h[26:])), int64(le.Uint16(h[28:]))
		if pos+localLen+nameLen+extraLen > size {
			return es, pos, true
		}
		ne := make([]byte, nameLen+extraLen)
		if _, err := r.ReadAt(ne, pos+localLen); err != nil {
			return es, pos, true
		}
		e.name = string(ne[:nameLen])
		if e.csize == 0xffffffff || e.usize == 0xffffffff {
			u, c, ok := zip64Sizes(ne[nameLen:])
			if !ok {
				return es, pos, false
			}
			e.usize, e.csize = u, c
		}
		if e.flags&8 != 0 && e.csize == 0 {
			return es, pos, false // sizes only in the data descriptor
		}
		e.dataOff = pos + localLen + nameLen + extraLen
		next := e.dataOff + e.csize
		if e.csize < 0 || next > size {
			return es, pos, true // cut inside this entry's data
		}
		if e.flags&8 != 0 {
			// Data descriptor: optional signature, CRC, then 32-bit sizes.
			var d [4]byte
			if _, err := r.ReadAt(d[:], next); err == nil && bytes.Equal(d[:], sigDescr) {
				next += 4
			}
			next += 12
			if next > size {
				return es, pos, true
			}
		}
		es = append(es, e)
		pos = next
	}
	return es, pos, true
}

// zip64Sizes reads the uncompressed and compressed sizes from a zip64 extra field.
func zip64Sizes(extra []byte) (usize, csize int64, ok bool) {
	le := binary.LittleEndian
	for len(extra) >= 4 {
		id, n := le.Uint16(extra), int(le.Uint16(extra[2:]))
		extra = extra[4:]
		if n > len(extra) {
			return 0, 0, false
		}
		if id == 1 && n >= 16 {
			u, c := le.Uint64(extra), le.Uint64(extra[8:])
			if u > 1<<62 || c > 1<<62 {
				return 0, 0, false
			}
			return int64(u), int64(c), true
		}
		extra = extra[n:]
	}
	return 0, 0, false
}

func dosTime(date, tim uint16) time.Time {
	return time.Date(int(date>>9)+1980, time.Month(date>>5&0xf), int(date&0x1f),
		int(tim>>11), int(tim>>5&0x3f), int(tim&0x1f)*2, 0, time.UTC)
}

// fastLocate finds the end of the archive at off by walking its local headers
// and then its central directory, without scanning. decided is false when
// an entry's sizes are only in a data descriptor, so that only a scan can
// find the end; otherwise ok says whether the walk found it.
func fastLocate(r io.ReaderAt, off, size int64) (ext *Extent, ok, decided bool) {
	ext, ok = walkToEnd(r, off, size)
	if ok {
		return ext, true, true
	}
	sr := io.NewSectionReader(r, off, size-off)
	_, _, known := walkLocal(sr, sr.Size())
	return nil, false, known
}

func walkToEnd(r io.ReaderAt, off, size int64) (*Extent, bool) {
	sr := io.NewSectionReader(r, off, size-off)
	es, pos, known := walkLocal(sr, sr.Size())
	if !known || len(es) == 0 {
		return nil, false
	}
	le := binary.LittleEndian
	var h [centralLen]byte
	for range maxWalk + 1 {
		if sr.Size()-pos < 4 {
			return nil, false
		}
		if _, err := sr.ReadAt(h[:4], pos); err != nil {
			return nil, false
		}
		switch {
		case bytes.Equal(h[:4], sigCentr):
			if _, err := sr.ReadAt(h[:], pos); err != nil {
				return nil, false
			}
			pos += centralLen + int64(le.Uint16(h[28:])) + int64(le.Uint16(h[30:])) + int64(le.Uint16(h[32:]))
		case bytes.Equal(h[:4], sigSig):
			if _, err := sr.ReadAt(h[:6], pos); err != nil {
				return nil, false
			}
			pos += 6 + int64(le.Uint16(h[4:]))
		case bytes.Equal(h[:4], sigEOCD64):
			if _, err := sr.ReadAt(h[:12], pos); err != nil {
				return nil, false
			}
			n := le.Uint64(h[4:])
			if n > 1<<20 {
				return nil, false
			}
			pos += 12 + int64(n)
		case bytes.Equal(h[:4], sigLoc64):
			pos += 20
		case bytes.Equal(h[:4], sigEOCD):
			ext, ok := checkEOCD(r, off, off+pos, size)
			return ext, ok
		default:
			return nil, false
		}
	}
	return nil, false
}

// identifyLocal reports a zip without a central directory from its local headers.
func identifyLocal(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	sr := io.NewSectionReader(r, off, size-off)
	es, end, _ := walkLocal(sr, sr.Size())
	if len(es) == 0 {
		return nil, fmt.Errorf("zip: no complete entry and no central directory: %w", firmware.ErrNotFormat)
	}
	return &firmware.Chunk{
		Offset:     off,
		Size:       end,
		Format:     formatName,
		Desc:       fmt.Sprintf("zip archive without central directory, %d entries from local headers", len(es)),
		Confidence: firmware.ConfidenceLow,
		Meta:       map[string]any{"entries": len(es), "central_directory": false},
		Warnings:   []string{"no central directory (truncated or carved short): entries recovered from local headers, without Unix modes"},
	}, nil
}

// extractLocal extracts the stored and deflated entries found by walking the
// local headers, for archives archive/zip cannot open.
func extractLocal(ctx context.Context, src *io.SectionReader, out firmware.Sink) error {
	es, _, _ := walkLocal(src, src.Size())
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := &firmware.Header{Name: e.name, Mode: 0o644, ModTime: e.modTime, Size: -1}
		if len(e.name) > 0 && e.name[len(e.name)-1] == '/' {
			h.Type, h.Mode = firmware.TypeDir, 0o755
			if err := out.Add(h, nil); err != nil {
				return fmt.Errorf("zip: %s: %w", e.name, err)
			}
			continue
		}
		h.Type = firmware.TypeFile
		data := io.NewSectionReader(src, e.dataOff, e.csize)
		var rd io.Reader
		var closer io.Closer
		switch {
		case e.flags&1 != 0:
			out.Warn(fmt.Sprintf("zip: %s: encrypted entry skipped", e.name))
			continue
		case e.method == 0:
			rd, h.Size = data, e.csize
		case e.method == 8:
			fr := flate.NewReader(data)
			rd, closer = fr, fr
			if e.flags&8 == 0 {
				h.Size = e.usize
			}
		default:
			out.Warn(fmt.Sprintf("zip: %s: method %d not supported without a central directory", e.name, e.method))
			continue
		}
		re := &fmtutil.ReadErr{R: rd}
		err := out.Add(h, re)
		if closer != nil {
			closer.Close()
		}
		if err != nil {
			if re.Err != nil && !errors.Is(err, firmware.ErrLimit) {
				out.Warn(fmt.Sprintf("zip: %s: %v", e.name, re.Err))
				continue
			}
			return fmt.Errorf("zip: %s: %w", e.name, err)
		}
	}
	return nil
}

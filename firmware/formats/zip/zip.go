// Package zip reads zip archives carved out of an image: it finds the end of
// central directory that belongs to a local header, opens the archive with
// archive/zip on exactly that extent, and hands the entries to the Sink with
// their original names and Unix modes. The helpers here are shared with the
// camera vendor packages built on zip (Dahua's "DH" variant, XiongMai).
package zip

import (
	stdzip "archive/zip"
	"bytes"
	"compress/bzip2"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/klauspost/compress/zstd"
)

// Signatures.
var (
	sigLocal  = []byte("PK\x03\x04")
	sigDahua  = []byte("DH\x03\x04")
	sigEOCD   = []byte("PK\x05\x06")
	sigCentr  = []byte("PK\x01\x02")
	sigLoc64  = []byte("PK\x06\x07")
	sigEOCD64 = []byte("PK\x06\x06")
)

const (
	eocdLen = 22
	// maxCentralDir bounds the central directory archive/zip reads into memory.
	maxCentralDir = 16 << 20
	// maxSymlink bounds a symlink target stored as entry content.
	maxSymlink = 4096
	// zstdMaxMemory bounds the zstd window of an entry.
	zstdMaxMemory = 64 << 20
)

// knownMethods are the compression methods seen in real archives (store,
// shrink/reduce/implode, deflate, deflate64, bzip2, lzma, zstd, xz, jpeg,
// wavpack, ppmd, AES marker).
var knownMethods = map[uint16]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 8: true,
	9: true, 12: true, 14: true, 93: true, 95: true, 96: true, 97: true, 98: true, 99: true}

// errNoEOCD wraps ErrNotFormat: the archive has no central directory.
var errNoEOCD = fmt.Errorf("no central directory: %w", firmware.ErrNotFormat)

// Extent is where a zip archive that starts at a local header ends.
type Extent struct {
	Size    int64 // from the first local header to the end of the comment
	Entries int   // number of entries in the central directory
	Comment string
}

// Locate finds the end of the zip archive whose first local header is at off
// in r (total size size). It walks the local headers and the central
// directory to the end record; only when an entry's sizes are in a data
// descriptor (a streamed archive) does it scan forward, one 64 KiB block at a
// time, for the first end record whose central directory lies right before
// it, counted from off.
func Locate(r io.ReaderAt, off, size int64) (*Extent, error) {
	ext, ok, decided := fastLocate(r, off, size)
	switch {
	case ok:
		return ext, nil
	case decided:
		// Every size was known and no central directory follows the
		// entries: scanning the rest of the image would not find one that
		// points back here.
		return nil, fmt.Errorf("zip: no central directory after the entries at %#x: %w", off, errNoEOCD)
	}
	return scanLocate(r, off, size)
}

// scanLocate scans forward from off for a matching end record.
func scanLocate(r io.ReaderAt, off, size int64) (*Extent, error) {
	const block = 64 << 10
	buf := make([]byte, block+len(sigEOCD))
	for pos := off + 4; pos < size; pos += block {
		n := min(int64(len(buf)), size-pos)
		b := buf[:n]
		if _, err := r.ReadAt(b, pos); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("zip: read at %#x: %w", pos, err)
		}
		for i := 0; ; {
			j := bytes.Index(b[i:], sigEOCD)
			if j < 0 {
				break
			}
			at := pos + int64(i+j)
			if ext, ok := checkEOCD(r, off, at, size); ok {
				return ext, nil
			}
			i += j + 1
		}
	}
	return nil, fmt.Errorf("zip: no end of central directory after %#x: %w", off, errNoEOCD)
}

// checkEOCD validates the record at at for an archive starting at off.
func checkEOCD(r io.ReaderAt, off, at, size int64) (*Extent, bool) {
	if size-at < eocdLen {
		return nil, false
	}
	var e [eocdLen]byte
	if _, err := r.ReadAt(e[:], at); err != nil {
		return nil, false
	}
	le := binary.LittleEndian
	entries := int64(le.Uint16(e[10:]))
	cdSize := int64(le.Uint32(e[12:]))
	cdOff := int64(le.Uint32(e[16:]))
	commentLen := int64(le.Uint16(e[20:]))
	cdEnd := at // the central directory ends where the EOCD (or the zip64 records) start
	var loc [20]byte
	hasLoc := at-20 >= off
	if hasLoc {
		_, err := r.ReadAt(loc[:], at-20)
		hasLoc = err == nil && bytes.Equal(loc[:4], sigLoc64)
	}
	if cdOff == 0xffffffff || cdSize == 0xffffffff || entries == 0xffff || hasLoc {
		// Zip64: a locator right before the EOCD points at the zip64 EOCD.
		if !hasLoc {
			return nil, false
		}
		rel := int64(le.Uint64(loc[8:]))
		e64 := off + rel
		if rel < 0 || e64 < off || e64 > at-20-56 {
			return nil, false
		}
		var d [56]byte
		if _, err := r.ReadAt(d[:], e64); err != nil || !bytes.Equal(d[:4], sigEOCD64) {
			return nil, false
		}
		entries = int64(le.Uint64(d[32:]))
		cdSize = int64(le.Uint64(d[40:]))
		cdOff = int64(le.Uint64(d[48:]))
		cdEnd = e64
	}
	if cdSize < 0 || cdOff < 0 || entries < 0 || cdSize > maxCentralDir || off+cdOff+cdSize != cdEnd {
		return nil, false
	}
	if entries > 0 {
		var s [4]byte
		if _, err := r.ReadAt(s[:], off+cdOff); err != nil || !bytes.Equal(s[:], sigCentr) {
			return nil, false
		}
		if cdSize < entries*46 {
			return nil, false
		}
	}
	end := min(at+eocdLen+commentLen, size)
	comment := make([]byte, end-at-eocdLen)
	_, _ = r.ReadAt(comment, at+eocdLen)
	return &Extent{Size: end - off, Entries: int(entries), Comment: string(comment)}, true
}

// patched presents a Dahua "DH\x03\x04" archive as a standard one: only the
// first local header's signature differs.
type patched struct{ r io.ReaderAt }

func (p patched) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.r.ReadAt(b, off)
	for i := off; i < 2 && i-off < int64(n); i++ {
		b[i-off] = "PK"[i]
	}
	return n, err
}

// Open opens the archive that covers all of r (size bytes) with archive/zip.
// A Dahua "DH" first header is patched on the fly. Entries with hostile names
// are kept (archive/zip's ErrInsecurePath is not an error here: the Sink
// neutralises names). Decompressors for bzip2 and zstd (with a memory limit)
// are registered next to archive/zip's store and deflate.
func Open(r io.ReaderAt, size int64) (*stdzip.Reader, error) {
	var sig [4]byte
	if _, err := r.ReadAt(sig[:], 0); err != nil {
		return nil, fmt.Errorf("zip: read signature: %w", err)
	}
	if bytes.Equal(sig[:], sigDahua) {
		r = patched{r}
	}
	zr, err := stdzip.NewReader(r, size)
	if err != nil && !errors.Is(err, stdzip.ErrInsecurePath) {
		return nil, fmt.Errorf("zip: %w", err)
	}
	zr.RegisterDecompressor(12, func(r io.Reader) io.ReadCloser { return io.NopCloser(bzip2.NewReader(r)) })
	zr.RegisterDecompressor(93, func(r io.Reader) io.ReadCloser {
		d, err := zstd.NewReader(r, zstd.WithDecoderMaxMemory(zstdMaxMemory), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return io.NopCloser(errReader{err})
		}
		return d.IOReadCloser()
	})
	return zr, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// ExtractFiles hands every entry of zr to out. Broken entries are reported
// with out.Warn and skipped; a Sink error (such as ErrLimit) stops the
// extraction. component prefixes errors and warnings.
func ExtractFiles(ctx context.Context, zr *stdzip.Reader, out firmware.Sink, component string) error {
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		mode := f.Mode()
		h := &firmware.Header{
			Name:    f.Name,
			Mode:    mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			ModTime: f.Modified,
			Size:    -1,
		}
		if f.Flags&1 != 0 {
			out.Warn(fmt.Sprintf("%s: %s: encrypted entry skipped", component, f.Name))
			continue
		}
		switch {
		case mode.IsDir():
			h.Type = firmware.TypeDir
			if err := out.Add(h, nil); err != nil {
				return fmt.Errorf("%s: %s: %w", component, f.Name, err)
			}
			continue
		case mode&fs.ModeSymlink != 0:
			h.Type = firmware.TypeSymlink
			target, err := readSmall(f, maxSymlink)
			if err != nil {
				out.Warn(fmt.Sprintf("%s: %s: symlink target: %v", component, f.Name, err))
				continue
			}
			h.Linkname = string(target)
			if err := out.Add(h, nil); err != nil {
				return fmt.Errorf("%s: %s: %w", component, f.Name, err)
			}
			continue
		}
		h.Type = firmware.TypeFile
		if f.UncompressedSize64 <= 1<<62 {
			h.Size = int64(f.UncompressedSize64)
		}
		rc, err := f.Open()
		if err != nil {
			out.Warn(fmt.Sprintf("%s: %s: %v", component, f.Name, err))
			continue
		}
		rr := &fmtutil.ReadErr{R: rc}
		err = out.Add(h, rr)
		rc.Close()
		if err != nil {
			if rr.Err != nil && !errors.Is(err, firmware.ErrLimit) {
				out.Warn(fmt.Sprintf("%s: %s: %v", component, f.Name, rr.Err))
				continue
			}
			return fmt.Errorf("%s: %s: %w", component, f.Name, err)
		}
	}
	return nil
}

// ReadSmall reads an entry of at most limit uncompressed bytes.
func ReadSmall(f *stdzip.File, limit int64) ([]byte, error) { return readSmall(f, limit) }

func readSmall(f *stdzip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%d bytes, more than %d", f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}

// IdentifyAt locates the archive at off and opens its central directory. sig
// is the expected first signature ("PK\x03\x04" or "DH\x03\x04").
func IdentifyAt(r io.ReaderAt, off, size int64, sig []byte) (*Extent, *stdzip.Reader, error) {
	var s [30]byte
	if size-off < int64(len(s)) {
		return nil, nil, fmt.Errorf("zip: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	if _, err := r.ReadAt(s[:], off); err != nil {
		return nil, nil, fmt.Errorf("zip: read local header: %w", err)
	}
	if !bytes.Equal(s[:4], sig) {
		return nil, nil, fmt.Errorf("zip: signature %q: %w", s[:4], firmware.ErrNotFormat)
	}
	// A plausible local header before the (possibly long) scan for the end
	// record: a known method, a version a zip tool writes, a sane name length.
	le := binary.LittleEndian
	version, method, nameLen := s[4], le.Uint16(s[8:]), le.Uint16(s[26:])
	if version > 63 || nameLen == 0 || nameLen > 4096 || !knownMethods[method] {
		return nil, nil, fmt.Errorf("zip: implausible local header (version %d, method %d, name length %d): %w", version, method, nameLen, firmware.ErrNotFormat)
	}
	ext, err := Locate(r, off, size)
	if err != nil {
		return nil, nil, err
	}
	zr, err := Open(io.NewSectionReader(r, off, ext.Size), ext.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", err, firmware.ErrNotFormat)
	}
	return ext, zr, nil
}

const formatName = "zip"

// Format declares the zip archive.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindArchive,
	Doc: "zip archive (PK\\x03\\x04): the extent runs from the local header to the end of the central " +
		"directory record that points back at it (zip64 included), found by walking the headers. Stored, " +
		"deflate, bzip2 and zstd entries are extracted with their Unix modes and symlinks; CRC errors and " +
		"encrypted entries are reported. A zip cut before its central directory is still recovered from " +
		"its local headers (stored and deflate entries, low confidence).",
	Magics:   []firmware.Magic{{Bytes: sigLocal}},
	Identify: identify,
	Extract:  extract,
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	ext, zr, err := IdentifyAt(r, off, size, sigLocal)
	if errors.Is(err, errNoEOCD) {
		return identifyLocal(r, off, size)
	}
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       ext.Size,
		Format:     formatName,
		Desc:       fmt.Sprintf("zip archive, %d entries", len(zr.File)),
		Confidence: firmware.ConfidenceHigh,
		Meta:       map[string]any{"entries": len(zr.File)},
	}
	if ext.Comment != "" {
		c.Meta["comment"] = ext.Comment
	}
	if n := encrypted(zr); n > 0 {
		c.Meta["encrypted_entries"] = n
		if n == len(zr.File) {
			c.Encrypted = true
		}
	}
	return c, nil
}

func encrypted(zr *stdzip.Reader) int {
	n := 0
	for _, f := range zr.File {
		if f.Flags&1 != 0 {
			n++
		}
	}
	return n
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	zr, err := Open(src, src.Size())
	if err != nil {
		// No usable central directory: what the local headers hold.
		return extractLocal(ctx, src, out)
	}
	return ExtractFiles(ctx, zr, out, formatName)
}

// Package sevenzip reads 7z archives with github.com/bodgit/sevenzip. The
// extent comes from the signature header (whose CRC, and the next header's,
// are verified). The decoders whose memory use is chosen by the archive
// (LZMA and LZMA2 dictionaries, the PPMd model) are replaced by versions that
// refuse more than MaxDecoderMemory, so a hostile header cannot make Cordon
// allocate gigabytes.
package sevenzip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"sync"

	"github.com/bodgit/sevenzip"
	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/stangelandcl/ppmd"
	"github.com/ulikunitz/xz/lzma"
)

const (
	formatName = "7z"
	sigSize    = 32
	// maxHeader bounds the next header (file list) size, packed or not.
	maxHeader = 16 << 20
	// MaxDecoderMemory bounds the dictionary or model a single decoder may
	// allocate (64 MiB; 7-Zip's ultra preset uses 64 MiB dictionaries).
	MaxDecoderMemory = 64 << 20
	maxSymlink       = 4096
)

var sig = []byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}

// Format declares the 7z archive.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindArchive,
	Doc: "7z archive (7z\\xbc\\xaf\\x27\\x1c): extent and integrity from the signature header's CRCs. " +
		"Entries are decoded natively (LZMA, LZMA2, PPMd, BZip2, Deflate, BCJ filters, ...) with every " +
		"decoder's dictionary or model capped at 64 MiB; encrypted archives are reported, not extracted.",
	Magics:   []firmware.Magic{{Bytes: sig}},
	Identify: identify,
	Extract:  extract,
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if size-off < sigSize {
		return nil, fmt.Errorf("7z: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	var h [sigSize]byte
	if _, err := r.ReadAt(h[:], off); err != nil {
		return nil, fmt.Errorf("7z: %w", err)
	}
	if !bytes.Equal(h[:6], sig) {
		return nil, fmt.Errorf("7z: signature: %w", firmware.ErrNotFormat)
	}
	le := binary.LittleEndian
	if crc32.ChecksumIEEE(h[12:32]) != le.Uint32(h[8:]) {
		return nil, fmt.Errorf("7z: start header CRC: %w", firmware.ErrNotFormat)
	}
	nextOff, nextSize, nextCRC := le.Uint64(h[12:]), le.Uint64(h[20:]), le.Uint32(h[28:])
	if nextOff > 1<<50 || nextSize > maxHeader {
		return nil, fmt.Errorf("7z: next header at %#x, %d bytes: %w", nextOff, nextSize, firmware.ErrNotFormat)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       sigSize + int64(nextOff) + int64(nextSize),
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Meta:       map[string]any{"version": fmt.Sprintf("%d.%d", h[6], h[7])},
	}
	if c.Size > size-off {
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: %d bytes, %d present", c.Size, size-off))
		c.Size = size - off
		c.Confidence = firmware.ConfidenceMedium
	} else {
		crc := crc32.NewIEEE()
		if _, err := io.Copy(crc, io.NewSectionReader(r, off+sigSize+int64(nextOff), int64(nextSize))); err != nil {
			return nil, fmt.Errorf("7z: read header: %w", err)
		}
		if crc.Sum32() != nextCRC {
			c.Warnings = append(c.Warnings, "next header CRC mismatch")
			c.Confidence = firmware.ConfidenceMedium
		}
	}
	c.Desc = fmt.Sprintf("7z archive v%d.%d, %d bytes", h[6], h[7], c.Size)
	return c, nil
}

var registerOnce sync.Once

// register replaces the library's LZMA, LZMA2 and PPMd decoders (registered
// process-wide by its init) with memory-capped ones. Cordon is the only user
// of the library in the binary.
func register() {
	registerOnce.Do(func() {
		sevenzip.RegisterDecompressor([]byte{0x03, 0x01, 0x01}, newLZMA)
		sevenzip.RegisterDecompressor([]byte{0x21}, newLZMA2)
		sevenzip.RegisterDecompressor([]byte{0x03, 0x04, 0x01}, newPPMd)
	})
}

type readCloser struct {
	io.Reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }

func errMemory(method string, n uint64) error {
	return fmt.Errorf("7z: %s needs %d bytes of memory, more than %d: %w", method, n, MaxDecoderMemory, firmware.ErrLimit)
}

func newLZMA(p []byte, size uint64, rs []io.ReadCloser) (io.ReadCloser, error) {
	if len(rs) != 1 || len(p) != 5 {
		return nil, errors.New("7z: lzma: bad coder properties")
	}
	if dict := binary.LittleEndian.Uint32(p[1:]); dict > MaxDecoderMemory {
		return nil, errMemory("LZMA", uint64(dict))
	}
	hdr := make([]byte, 13)
	copy(hdr, p)
	binary.LittleEndian.PutUint64(hdr[5:], size)
	lr, err := lzma.ReaderConfig{DictCap: MaxDecoderMemory}.NewReader(io.MultiReader(bytes.NewReader(hdr), rs[0]))
	if err != nil {
		return nil, fmt.Errorf("7z: lzma: %w", err)
	}
	return readCloser{lr, rs[0]}, nil
}

func newLZMA2(p []byte, _ uint64, rs []io.ReadCloser) (io.ReadCloser, error) {
	if len(rs) != 1 || len(p) != 1 || p[0] > 40 {
		return nil, errors.New("7z: lzma2: bad coder properties")
	}
	dict := uint64(2|(p[0]&1)) << (p[0]/2 + 11)
	if p[0] == 40 {
		dict = 1<<32 - 1
	}
	if dict > MaxDecoderMemory {
		return nil, errMemory("LZMA2", dict)
	}
	cfg := lzma.Reader2Config{DictCap: int(max(dict, lzma.MinDictCap))}
	lr, err := cfg.NewReader2(rs[0])
	if err != nil {
		return nil, fmt.Errorf("7z: lzma2: %w", err)
	}
	return readCloser{lr, rs[0]}, nil
}

func newPPMd(p []byte, size uint64, rs []io.ReadCloser) (io.ReadCloser, error) {
	if len(rs) != 1 || len(p) != 5 {
		return nil, errors.New("7z: ppmd: bad coder properties")
	}
	mem := binary.LittleEndian.Uint32(p[1:])
	if mem > MaxDecoderMemory {
		return nil, errMemory("PPMd", uint64(mem))
	}
	if size > 1<<50 {
		return nil, errors.New("7z: ppmd: bad size")
	}
	pr, err := ppmd.NewH7zReader(rs[0], int(p[0]), int(mem), int(size))
	if err != nil {
		return nil, fmt.Errorf("7z: ppmd: %w", err)
	}
	return readCloser{&pr, rs[0]}, nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	register()
	zr, err := openArchive(src, out)
	if err != nil || zr == nil {
		return err
	}
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := addEntry(f, out); err != nil {
			return err
		}
	}
	return nil
}

// openArchive checks the archive's header, then opens it. An encrypted or
// unsupported header is a warning: it returns nil, nil.
func openArchive(src *io.SectionReader, out firmware.Sink) (*sevenzip.Reader, error) {
	var sh [sigSize]byte
	if _, err := src.ReadAt(sh[:], 0); err != nil {
		return nil, &firmware.FormatError{Format: formatName, Off: 0, Msg: "read signature header", Err: err}
	}
	le := binary.LittleEndian
	n, err := checkHeader(src, src.Size(), le.Uint64(sh[12:]), le.Uint64(sh[20:]))
	switch {
	case errors.Is(err, errEncrypted):
		out.Warn("7z: archive header is encrypted")
		return nil, nil
	case errors.Is(err, errUnsupported):
		out.Warn(err.Error())
		return nil, nil
	case err != nil:
		return nil, &firmware.FormatError{Format: formatName, Off: sigSize + int64(le.Uint64(sh[12:])), Msg: "header", Err: err}
	case n > maxFiles:
		return nil, fmt.Errorf("7z: %d entries, more than %d: %w", n, maxFiles, firmware.ErrLimit)
	}
	zr, err := open(src)
	if err != nil {
		if errors.Is(err, firmware.ErrLimit) {
			return nil, err
		}
		var pe *sevenzip.ReadError
		if errors.As(err, &pe) && pe.Encrypted {
			out.Warn("7z: archive header is encrypted")
			return nil, nil
		}
		return nil, &firmware.FormatError{Format: formatName, Off: 0, Msg: "open", Err: err}
	}
	return zr, nil
}

// addEntry hands one archive entry to out. An entry that cannot be read is
// a warning; the extraction goes on.
func addEntry(f *sevenzip.File, out firmware.Sink) error {
	mode := f.Mode()
	h := &firmware.Header{
		Name:    f.Name,
		Mode:    mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
		ModTime: f.Modified,
		Size:    -1,
	}
	switch {
	case mode.IsDir():
		h.Type = firmware.TypeDir
	case mode&fs.ModeSymlink != 0:
		h.Type = firmware.TypeSymlink
		target, err := readAll(f, maxSymlink)
		if err != nil {
			out.Warn(fmt.Sprintf("7z: %s: symlink target: %v", f.Name, err))
			return nil
		}
		h.Linkname = string(target)
	default:
		h.Type = firmware.TypeFile
		if f.UncompressedSize <= 1<<62 {
			h.Size = int64(f.UncompressedSize)
		}
		rc, err := openFile(f)
		if err != nil {
			// Includes a decoder refusing a dictionary over MaxDecoderMemory.
			out.Warn(fmt.Sprintf("7z: %s: %v", f.Name, err))
			return nil
		}
		re := &fmtutil.ReadErr{R: safeReader{rc}}
		err = out.Add(h, re)
		rc.Close()
		if err != nil {
			if re.Err != nil && !errors.Is(err, firmware.ErrLimit) {
				out.Warn(fmt.Sprintf("7z: %s: %v", f.Name, re.Err))
				return nil
			}
			return fmt.Errorf("7z: %s: %w", f.Name, err)
		}
		return nil
	}
	if err := out.Add(h, nil); err != nil {
		return fmt.Errorf("7z: %s: %w", f.Name, err)
	}
	return nil
}

// The library panics on some malformed headers (found by FuzzSevenZip);
// open, openFile and safeReader turn those panics into errors.

func open(src *io.SectionReader) (zr *sevenzip.Reader, err error) {
	defer func() {
		if p := recover(); p != nil {
			zr, err = nil, fmt.Errorf("malformed archive (library panic: %v)", p)
		}
	}()
	return sevenzip.NewReader(src, src.Size())
}

func openFile(f *sevenzip.File) (rc io.ReadCloser, err error) {
	defer func() {
		if p := recover(); p != nil {
			rc, err = nil, fmt.Errorf("malformed entry (library panic: %v)", p)
		}
	}()
	return f.Open()
}

type safeReader struct{ r io.Reader }

func (s safeReader) Read(p []byte) (n int, err error) {
	defer func() {
		if x := recover(); x != nil {
			n, err = 0, fmt.Errorf("malformed stream (library panic: %v)", x)
		}
	}()
	return s.r.Read(p)
}

func readAll(f *sevenzip.File, limit int64) ([]byte, error) {
	rc, err := openFile(f)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(safeReader{rc}, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}

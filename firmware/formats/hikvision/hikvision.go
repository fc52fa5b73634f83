// Package hikvision reads Hikvision "digicap.dav" firmware packages. The SWKH
// package's header is XOR-obfuscated with a public 16-byte key; once
// de-obfuscated it lists the files (name, absolute offset, size, byte-sum
// checksum) that follow it, and they are extracted. The later 02KH/03KH and
// HKSU packages encrypt their content with per-model keys: they are identified
// and reported as encrypted with the header fields that can be read.
package hikvision

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
)

const formatName = "hikvision-dav"

// key is the public XOR key of the digicap.dav header.
var key = [16]byte{0xBA, 0xCD, 0xBC, 0xFE, 0xD6, 0xCA, 0xDD, 0xD3, 0xBA, 0xB9, 0xA3, 0xAB, 0xBF, 0xCB, 0xB5, 0xBE}

// XOR applies the header obfuscation to b, which starts at byte start of the
// file (the operation is its own inverse).
func XOR(b []byte, start int64) {
	for i := range b {
		j := start + int64(i)
		b[i] ^= key[(j+(j>>4))&15]
	}
}

// Layout of the SWKH header.
const (
	fixedHeader = 0x40
	entrySize   = 44
	nameSize    = 32
	// maxFiles bounds file_count (a real package has fewer than 32).
	maxFiles = 1024
)

// Magics of the obfuscated first four bytes.
var (
	magicSWKH = []byte{0xE9, 0x9A, 0xF7, 0xB6}
	magic02KH = []byte{0x8A, 0xFF, 0xF7, 0xB6}
	magic03KH = []byte{0x8A, 0xFE, 0xF7, 0xB6}
	// HKSU: 0x484B5355 little-endian, plain and obfuscated.
	magicHKSU    = []byte("USKH")
	magicHKSUXor = []byte{0xEF, 0x9E, 0xF7, 0xB6}
)

// Entry is one file listed in the SWKH header.
type Entry struct {
	Name     string `json:"name"`
	Offset   uint32 `json:"offset"`
	Size     uint32 `json:"size"`
	Checksum uint32 `json:"checksum"`
}

// Header is the de-obfuscated SWKH header.
type Header struct {
	Magic     string
	Checksum  uint32
	HeaderLen uint32
	FileCount uint32
	Language  uint32
	Device    uint32
	OEM       uint32
	Version   string
	Entries   []Entry
	// ChecksumValid reports whether Checksum matches bytes [12, HeaderLen).
	ChecksumValid bool
}

// Format declares the Hikvision digicap.dav package.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindVendor,
	Doc: "Hikvision digicap.dav firmware package. SWKH: the header is XOR-obfuscated with the public key " +
		"BA CD BC FE D6 CA DD D3 BA B9 A3 AB BF CB B5 BE; it is de-obfuscated, its byte-sum checksum verified, " +
		"and the files it lists (_cfgUpgClass, uImage, hroot.img, app.img, ...) are extracted with their " +
		"checksums checked. 02KH, 03KH and HKSU packages are encrypted with per-model keys: reported as " +
		"encrypted with their readable header fields, not extracted.",
	Magics: []firmware.Magic{
		{Bytes: magicSWKH}, {Bytes: magic02KH}, {Bytes: magic03KH}, {Bytes: magicHKSU}, {Bytes: magicHKSUXor},
	},
	Identify: identify,
	Extract:  extract,
}

// ReadHeader reads and de-obfuscates the header of the package at the start
// of r (size bytes).
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	ferr := func(off int64, msg string, err error) error {
		return &firmware.FormatError{Format: formatName, Off: off, Msg: msg, Err: err}
	}
	if size < fixedHeader {
		return nil, ferr(0, "header", firmware.ErrNotFormat)
	}
	b := make([]byte, fixedHeader)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, ferr(0, "read header", err)
	}
	XOR(b, 0)
	le := binary.LittleEndian
	h := &Header{
		Magic:     string(b[:4]),
		Checksum:  le.Uint32(b[4:]),
		HeaderLen: le.Uint32(b[8:]),
		FileCount: le.Uint32(b[12:]),
		Language:  le.Uint32(b[16:]),
		Device:    le.Uint32(b[20:]),
		OEM:       le.Uint32(b[24:]),
	}
	if h.Magic != "SWKH" {
		return h, ferr(0, fmt.Sprintf("magic %q", h.Magic), firmware.ErrNotFormat)
	}
	if h.FileCount == 0 || h.FileCount > maxFiles || h.HeaderLen != fixedHeader+entrySize*h.FileCount {
		return h, ferr(8, fmt.Sprintf("header length %d for %d files", h.HeaderLen, h.FileCount), firmware.ErrNotFormat)
	}
	if int64(h.HeaderLen) > size {
		return h, ferr(8, fmt.Sprintf("header length %d, %d bytes present", h.HeaderLen, size), firmware.ErrTruncated)
	}
	h.Version = printable(b[0x1c:fixedHeader])
	full := make([]byte, h.HeaderLen)
	if _, err := r.ReadAt(full, 0); err != nil {
		return h, ferr(0, "read header", err)
	}
	XOR(full, 0)
	var sum uint32
	for _, x := range full[12:] {
		sum += uint32(x)
	}
	h.ChecksumValid = sum == h.Checksum
	for i := range h.FileCount {
		e := full[fixedHeader+entrySize*i:]
		name := e[:nameSize]
		if j := strings.IndexByte(string(name), 0); j >= 0 {
			name = name[:j]
		}
		h.Entries = append(h.Entries, Entry{
			Name:     strings.ToValidUTF8(string(name), "?"),
			Offset:   le.Uint32(e[nameSize:]),
			Size:     le.Uint32(e[nameSize+4:]),
			Checksum: le.Uint32(e[nameSize+8:]),
		})
	}
	return h, nil
}

// printable keeps the printable ASCII runs of a fixed-size field.
func printable(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			sb.WriteByte(c)
		} else if sb.Len() > 0 && !strings.HasSuffix(sb.String(), " ") {
			sb.WriteByte(' ')
		}
	}
	return strings.TrimSpace(sb.String())
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if size-off < fixedHeader {
		return nil, fmt.Errorf("hikvision: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	sr := io.NewSectionReader(r, off, size-off)
	var m [4]byte
	if _, err := sr.ReadAt(m[:], 0); err != nil {
		return nil, fmt.Errorf("hikvision: %w", err)
	}
	if string(m[:]) != string(magicSWKH) {
		return identifyEncrypted(sr, off, m[:])
	}
	h, err := ReadHeader(sr, sr.Size())
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Meta: map[string]any{
			"magic":      h.Magic,
			"header_len": h.HeaderLen,
			"files":      h.Entries,
			"language":   h.Language,
			"device":     h.Device,
			"oem":        h.OEM,
		},
	}
	if h.Version != "" {
		c.Meta["version"] = h.Version
	}
	if !h.ChecksumValid {
		c.Confidence = firmware.ConfidenceMedium
		c.Warnings = append(c.Warnings, fmt.Sprintf("header checksum mismatch (stored %#x)", h.Checksum))
	}
	end := int64(h.HeaderLen)
	for _, e := range h.Entries {
		if int64(e.Offset) < int64(h.HeaderLen) {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: offset %#x inside the header", e.Name, e.Offset))
			continue
		}
		end = max(end, int64(e.Offset)+int64(e.Size))
	}
	if end > sr.Size() {
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: files end at %#x, %#x bytes present", end, sr.Size()))
		end = sr.Size()
	}
	c.Size = end
	c.Desc = fmt.Sprintf("Hikvision digicap.dav (SWKH), %d files", len(h.Entries))
	return c, nil
}

// identifyEncrypted reports 02KH, 03KH and HKSU packages.
func identifyEncrypted(sr *io.SectionReader, off int64, m []byte) (*firmware.Chunk, error) {
	var kind string
	obfuscated := true
	switch string(m) {
	case string(magic02KH):
		kind = "02KH"
	case string(magic03KH):
		kind = "03KH"
	case string(magicHKSUXor):
		kind = "HKSU"
	case string(magicHKSU):
		kind, obfuscated = "HKSU", false
	default:
		return nil, fmt.Errorf("hikvision: magic % x: %w", m, firmware.ErrNotFormat)
	}
	hdr := make([]byte, fixedHeader)
	if _, err := sr.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("hikvision: %w", err)
	}
	if obfuscated {
		XOR(hdr, 0)
	}
	le := binary.LittleEndian
	headerLen, count := le.Uint32(hdr[8:]), le.Uint32(hdr[12:])
	// Where the first words are readable they must be plausible. Packages
	// that encrypt them too are only accepted at the start of a file (a
	// digicap.dav is always a whole file): four magic bytes alone are weak
	// evidence inside an image.
	conf := firmware.ConfidenceMedium
	if count == 0 || count > maxFiles || headerLen < fixedHeader || int64(headerLen) > sr.Size() {
		if off != 0 {
			return nil, fmt.Errorf("hikvision: %s header length %d, %d files: %w", kind, headerLen, count, firmware.ErrNotFormat)
		}
		conf = firmware.ConfidenceLow
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       sr.Size(), // the content's extent is encrypted: assume the package runs to the end
		Format:     formatName,
		Confidence: conf,
		Encrypted:  true,
		Desc:       fmt.Sprintf("Hikvision digicap.dav (%s), encrypted, header of %d bytes for %d files", kind, headerLen, count),
		Meta: map[string]any{
			"magic":      kind,
			"header_len": headerLen,
			"file_count": count,
			"checksum":   fmt.Sprintf("%#08x", le.Uint32(hdr[4:])),
		},
		Warnings: []string{"content encrypted with a per-model key; extent assumed to run to the end of the image"},
	}
	return c, nil
}

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	if c.Encrypted {
		return nil
	}
	h, err := ReadHeader(src, src.Size())
	if err != nil {
		return err
	}
	for _, e := range h.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		start, n := int64(e.Offset), int64(e.Size)
		if start < int64(h.HeaderLen) || start >= src.Size() {
			out.Warn(fmt.Sprintf("hikvision: %s: offset %#x outside the package", e.Name, e.Offset))
			continue
		}
		if start+n > src.Size() {
			out.Warn(fmt.Sprintf("hikvision: %s: truncated to %d of %d bytes", e.Name, src.Size()-start, n))
			n = src.Size() - start
		}
		sum := &fmtutil.ByteSum{R: io.NewSectionReader(src, start, n)}
		hdr := &firmware.Header{Name: e.Name, Type: firmware.TypeFile, Mode: 0o644, Size: n}
		if err := out.Add(hdr, bufio.NewReaderSize(sum, 64<<10)); err != nil {
			return fmt.Errorf("hikvision: %s: %w", e.Name, err)
		}
		if sum.N == int64(e.Size) && sum.Sum != e.Checksum {
			out.Warn(fmt.Sprintf("hikvision: %s: checksum %#x, header says %#x", e.Name, sum.Sum, e.Checksum))
		}
	}
	return nil
}

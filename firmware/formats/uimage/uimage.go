// Package uimage reads U-Boot legacy images (uImage): the 64-byte big-endian
// header with magic 0x27051956 that wraps kernels, ramdisks, filesystems and
// scripts, including multi-file images. The header CRC is verified; payloads
// are handed to the Sink as they are (a gzip- or lzma-compressed kernel is left
// to the engine's recursion).
package uimage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/firmware"
)

// HeaderSize is the size of the legacy image header.
const HeaderSize = 64

// Magic is the header magic (big-endian on disk).
const Magic = 0x27051956

// maxMultiImages bounds the size table of a multi-file image.
const maxMultiImages = 64

// Header is the decoded legacy image header.
type Header struct {
	HeaderCRC uint32
	Time      time.Time
	DataSize  uint32
	Load      uint32
	Entry     uint32
	DataCRC   uint32
	OS        uint8
	Arch      uint8
	Type      uint8
	Comp      uint8
	Name      string
	// CRCValid reports whether HeaderCRC matches the header bytes.
	CRCValid bool
}

// Type values used below (from U-Boot include/image.h).
const (
	TypeStandalone = 1
	TypeKernel     = 2
	TypeRamdisk    = 3
	TypeMulti      = 4
	TypeFirmware   = 5
	TypeScript     = 6
	TypeFilesystem = 7
	TypeFlatDT     = 8
)

var osNames = map[uint8]string{
	0: "invalid", 1: "openbsd", 2: "netbsd", 3: "freebsd", 4: "4_4bsd", 5: "linux", 6: "svr4",
	7: "esix", 8: "solaris", 9: "irix", 10: "sco", 11: "dell", 12: "ncr", 13: "lynxos",
	14: "vxworks", 15: "psos", 16: "qnx", 17: "u-boot", 18: "rtems", 19: "artos", 20: "unity",
	21: "integrity", 22: "ose", 23: "plan9", 24: "openrtos", 25: "arm-trusted-firmware",
	26: "tee", 27: "opensbi", 28: "efi",
}

var archNames = map[uint8]string{
	0: "invalid", 1: "alpha", 2: "arm", 3: "x86", 4: "ia64", 5: "mips", 6: "mips64", 7: "powerpc",
	8: "s390", 9: "sh", 10: "sparc", 11: "sparc64", 12: "m68k", 13: "nios", 14: "microblaze",
	15: "nios2", 16: "blackfin", 17: "avr32", 18: "st200", 19: "sandbox", 20: "nds32",
	21: "openrisc", 22: "arm64", 23: "arc", 24: "x86_64", 25: "xtensa", 26: "riscv",
}

var typeNames = map[uint8]string{
	0: "invalid", 1: "standalone", 2: "kernel", 3: "ramdisk", 4: "multi", 5: "firmware",
	6: "script", 7: "filesystem", 8: "flat_dt", 9: "kwbimage", 10: "imximage", 11: "ubl",
	12: "omapimage", 13: "aisimage", 14: "kernel_noload", 15: "pblimage", 16: "mxsimage",
	17: "gpimage", 18: "atmelimage", 19: "socfpgaimage", 20: "x86_setup", 21: "lpc32xximage",
	22: "loadable", 23: "rkimage", 24: "rksd", 25: "rkspi", 26: "zynqimage", 27: "zynqmpimage",
	28: "zynqmpbif", 29: "fpga", 30: "vybridimage", 31: "tee", 32: "firmware_ivt", 33: "pmmc",
	34: "stm32image", 35: "socfpgaimage_v1", 36: "mtk_image", 37: "copro",
}

var compNames = map[uint8]string{0: "none", 1: "gzip", 2: "bzip2", 3: "lzma", 4: "lzo", 5: "lz4", 6: "zstd"}

var compExt = map[uint8]string{1: ".gz", 2: ".bz2", 3: ".lzma", 4: ".lzo", 5: ".lz4", 6: ".zst"}

func name(m map[uint8]string, v uint8) string {
	if s, ok := m[v]; ok {
		return s
	}
	return fmt.Sprintf("unknown(%d)", v)
}

// OSName, ArchName, TypeName and CompName spell the header's enum fields as mkimage does.
func (h *Header) OSName() string   { return name(osNames, h.OS) }
func (h *Header) ArchName() string { return name(archNames, h.Arch) }
func (h *Header) TypeName() string { return name(typeNames, h.Type) }
func (h *Header) CompName() string { return name(compNames, h.Comp) }

// ErrMagic is returned by ParseHeader when b does not start with the uImage magic.
var ErrMagic = errors.New("uimage: bad magic")

// ParseHeader decodes a legacy header from b (at least HeaderSize bytes) and
// checks its CRC (reported in CRCValid, not as an error).
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("uimage: header needs %d bytes, have %d: %w", HeaderSize, len(b), firmware.ErrTruncated)
	}
	be := binary.BigEndian
	if be.Uint32(b[0:]) != Magic {
		return nil, ErrMagic
	}
	h := &Header{
		HeaderCRC: be.Uint32(b[4:]),
		Time:      time.Unix(int64(be.Uint32(b[8:])), 0).UTC(),
		DataSize:  be.Uint32(b[12:]),
		Load:      be.Uint32(b[16:]),
		Entry:     be.Uint32(b[20:]),
		DataCRC:   be.Uint32(b[24:]),
		OS:        b[28],
		Arch:      b[29],
		Type:      b[30],
		Comp:      b[31],
		Name:      cString(b[32:64]),
	}
	var tmp [HeaderSize]byte
	copy(tmp[:], b[:HeaderSize])
	clear(tmp[4:8])
	h.CRCValid = crc32.ChecksumIEEE(tmp[:]) == h.HeaderCRC
	return h, nil
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// Meta returns the header fields for Chunk.Meta.
func (h *Header) Meta() map[string]any {
	return map[string]any{
		"name":      h.Name,
		"os":        h.OSName(),
		"arch":      h.ArchName(),
		"type":      h.TypeName(),
		"comp":      h.CompName(),
		"load":      fmt.Sprintf("%#08x", h.Load),
		"entry":     fmt.Sprintf("%#08x", h.Entry),
		"time":      h.Time.Format(time.RFC3339),
		"data_size": h.DataSize,
		"data_crc":  fmt.Sprintf("%#08x", h.DataCRC),
	}
}

const formatName = "uimage"

// Format declares the U-Boot legacy image.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindContainer,
	Doc: "U-Boot legacy image (mkimage): a 64-byte big-endian header (magic 0x27051956) with " +
		"name, OS, architecture, type, compression, load and entry addresses and two CRCs, " +
		"around a kernel, ramdisk, filesystem or several images (type multi). The header CRC is " +
		"verified; the data CRC is checked during extraction. Each payload is extracted as " +
		"<type>[-N][.gz|.lzma|...] and unpacked further by recursion.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x27, 0x05, 0x19, 0x56}}},
	Identify: identify,
	Extract:  extract,
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if size-off < HeaderSize {
		return nil, fmt.Errorf("uimage: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	var b [HeaderSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, fmt.Errorf("uimage: read header: %w", err)
	}
	h, err := ParseHeader(b[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, firmware.ErrNotFormat)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Meta:       h.Meta(),
	}
	if !h.CRCValid {
		// Without a valid CRC only a consistent header is accepted.
		if _, ok := typeNames[h.Type]; !ok || h.Type == 0 {
			return nil, fmt.Errorf("uimage: bad header CRC and unknown type %d: %w", h.Type, firmware.ErrNotFormat)
		}
		if _, ok := compNames[h.Comp]; !ok {
			return nil, fmt.Errorf("uimage: bad header CRC and unknown compression %d: %w", h.Comp, firmware.ErrNotFormat)
		}
		if _, ok := archNames[h.Arch]; !ok {
			return nil, fmt.Errorf("uimage: bad header CRC and unknown architecture %d: %w", h.Arch, firmware.ErrNotFormat)
		}
		c.Confidence = firmware.ConfidenceLow
		c.Warnings = append(c.Warnings, fmt.Sprintf("header CRC mismatch (stored %#08x)", h.HeaderCRC))
	}
	c.Size = HeaderSize + int64(h.DataSize)
	if c.Size > size-off {
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: header says %d data bytes, %d present", h.DataSize, size-off-HeaderSize))
		c.Size = size - off
	}
	c.Desc = fmt.Sprintf("U-Boot legacy image %q, %s %s %s, %s compression, load %#x, entry %#x, %d data bytes",
		h.Name, h.OSName(), h.ArchName(), h.TypeName(), h.CompName(), h.Load, h.Entry, h.DataSize)
	return c, nil
}

// part is one payload of an image.
type part struct {
	name     string
	off, len int64
}

// parts lists the payloads of the image in src, whose header is h.
func parts(src *io.SectionReader, h *Header) ([]part, []string, error) {
	base := typeNames[h.Type]
	if base == "" || h.Type == 0 {
		base = "data"
	}
	ext := compExt[h.Comp]
	dataLen := src.Size() - HeaderSize
	if h.Type != TypeMulti {
		return []part{{name: base + ext, off: HeaderSize, len: dataLen}}, nil, nil
	}
	// Multi-file: a zero-terminated table of big-endian u32 sizes, then the
	// images, each padded to 4 bytes.
	var sizes []int64
	pos := int64(HeaderSize)
	var b [4]byte
	for {
		if len(sizes) > maxMultiImages {
			return nil, nil, &firmware.FormatError{Format: formatName, Off: pos, Msg: fmt.Sprintf("more than %d images in multi-file table", maxMultiImages)}
		}
		if _, err := src.ReadAt(b[:], pos); err != nil {
			return nil, nil, &firmware.FormatError{Format: formatName, Off: pos, Msg: "multi-file size table", Err: firmware.ErrTruncated}
		}
		pos += 4
		n := binary.BigEndian.Uint32(b[:])
		if n == 0 {
			break
		}
		sizes = append(sizes, int64(n))
	}
	var out []part
	var warns []string
	for i, n := range sizes {
		if pos+n > src.Size() {
			warns = append(warns, fmt.Sprintf("image %d: %d bytes at %#x run past the end (%d)", i, n, pos, src.Size()))
			n = max(src.Size()-pos, 0)
		}
		out = append(out, part{name: fmt.Sprintf("image-%d%s", i, ext), off: pos, len: n})
		pos += (n + 3) &^ 3
	}
	return out, warns, nil
}

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	var b [HeaderSize]byte
	if _, err := src.ReadAt(b[:], 0); err != nil {
		return &firmware.FormatError{Format: formatName, Off: 0, Msg: "read header", Err: err}
	}
	h, err := ParseHeader(b[:])
	if err != nil {
		return &firmware.FormatError{Format: formatName, Off: 0, Msg: "header", Err: err}
	}
	// The data CRC covers the whole payload area, including a multi-file table.
	if src.Size()-HeaderSize == int64(h.DataSize) {
		crc := crc32.NewIEEE()
		if _, err := io.Copy(crc, io.NewSectionReader(src, HeaderSize, int64(h.DataSize))); err != nil {
			return &firmware.FormatError{Format: formatName, Off: HeaderSize, Msg: "read data", Err: err}
		}
		if got := crc.Sum32(); got != h.DataCRC {
			out.Warn(fmt.Sprintf("uimage: data CRC %#08x, header says %#08x", got, h.DataCRC))
		}
	}
	ps, warns, err := parts(src, h)
	if err != nil {
		return err
	}
	for _, w := range warns {
		out.Warn("uimage: " + w)
	}
	for _, p := range ps {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := &firmware.Header{Name: p.name, Type: firmware.TypeFile, Mode: 0o644, ModTime: h.Time, Size: p.len}
		if err := out.Add(hdr, io.NewSectionReader(src, p.off, p.len)); err != nil {
			return fmt.Errorf("uimage: %s: %w", p.name, err)
		}
	}
	return nil
}

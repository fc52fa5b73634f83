// Package trx reads Broadcom TRX firmware containers (magic "HDR0"): a
// 28-byte (version 1) or 32-byte (version 2) little-endian header with the
// total length, a CRC32 over the rest of the image, and the offsets of up to
// three or four partitions (typically loader, kernel and root filesystem),
// which are extracted as partition-N.
package trx

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	formatName = "trx"
	// crcStart is where the CRC-covered area begins (flags and version on).
	crcStart = 12
)

// Header is a decoded TRX header.
type Header struct {
	Len     uint32
	CRC     uint32
	Flags   uint16
	Version uint16
	Offsets []uint32
}

// Size of the header for its version.
func (h *Header) Size() int64 { return 16 + 4*int64(len(h.Offsets)) }

// Format declares the TRX container.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindContainer,
	Doc: "Broadcom TRX container (magic \"HDR0\", versions 1 and 2), used by routers and some NVRs: " +
		"the header gives the total length, a CRC32 (verified) and up to four partition offsets; each " +
		"partition (loader, kernel, root filesystem, ...) is extracted as partition-N and unpacked by recursion.",
	Magics:   []firmware.Magic{{Bytes: []byte("HDR0")}},
	Identify: identify,
	Extract:  extract,
}

// ParseHeader decodes the header at the start of b.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < 28 || string(b[:4]) != "HDR0" {
		return nil, fmt.Errorf("trx: no header: %w", firmware.ErrNotFormat)
	}
	le := binary.LittleEndian
	h := &Header{Len: le.Uint32(b[4:]), CRC: le.Uint32(b[8:]), Flags: le.Uint16(b[12:]), Version: le.Uint16(b[14:])}
	n := 3
	switch h.Version {
	case 1:
	case 2:
		n = 4
		if len(b) < 32 {
			return nil, fmt.Errorf("trx: v2 header: %w", firmware.ErrNotFormat)
		}
	default:
		return nil, fmt.Errorf("trx: version %d: %w", h.Version, firmware.ErrNotFormat)
	}
	for i := range n {
		h.Offsets = append(h.Offsets, le.Uint32(b[16+4*i:]))
	}
	if int64(h.Len) < h.Size() {
		return nil, fmt.Errorf("trx: length %d shorter than the header: %w", h.Len, firmware.ErrNotFormat)
	}
	for i, o := range h.Offsets {
		if o != 0 && (int64(o) < h.Size() || o >= h.Len) {
			return nil, fmt.Errorf("trx: partition %d offset %#x outside [%#x, %#x): %w", i, o, h.Size(), h.Len, firmware.ErrNotFormat)
		}
	}
	return h, nil
}

// partitions returns the [start, end) ranges of the non-empty partitions, in
// header order; each ends where the next-higher offset (or the image) starts.
func (h *Header) partitions() [][2]int64 {
	var offs []int64
	for _, o := range h.Offsets {
		if o != 0 {
			offs = append(offs, int64(o))
		}
	}
	sorted := append([]int64(nil), offs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var out [][2]int64
	for _, o := range offs {
		end := int64(h.Len)
		for _, s := range sorted {
			if s > o {
				end = s
				break
			}
		}
		out = append(out, [2]int64{o, end})
	}
	return out
}

// Checksum computes the TRX CRC over b: CRC-32 (IEEE) without the final
// inversion, as Broadcom's tools compute it.
func Checksum(r io.Reader) (uint32, error) {
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, r); err != nil {
		return 0, err
	}
	return ^h.Sum32(), nil
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var b [32]byte
	n := min(int64(len(b)), size-off)
	if n < 28 {
		return nil, fmt.Errorf("trx: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	if _, err := r.ReadAt(b[:n], off); err != nil {
		return nil, fmt.Errorf("trx: read header: %w", err)
	}
	h, err := ParseHeader(b[:n])
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       int64(h.Len),
		Format:     formatName,
		Confidence: firmware.ConfidenceMedium,
		Meta: map[string]any{
			"version":    h.Version,
			"flags":      fmt.Sprintf("%#04x", h.Flags),
			"crc":        fmt.Sprintf("%#08x", h.CRC),
			"partitions": len(h.partitions()),
		},
	}
	if c.Size > size-off {
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: length %d, %d bytes present", h.Len, size-off))
		c.Size = size - off
	} else {
		crc, err := Checksum(io.NewSectionReader(r, off+crcStart, int64(h.Len)-crcStart))
		if err != nil {
			return nil, fmt.Errorf("trx: read: %w", err)
		}
		if crc == h.CRC {
			c.Confidence = firmware.ConfidenceHigh
		} else {
			c.Warnings = append(c.Warnings, fmt.Sprintf("CRC %#08x, header says %#08x", crc, h.CRC))
		}
	}
	c.Desc = fmt.Sprintf("TRX v%d, %d bytes, %d partitions", h.Version, h.Len, len(h.partitions()))
	return c, nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	b := make([]byte, min(32, src.Size()))
	if _, err := src.ReadAt(b, 0); err != nil {
		return &firmware.FormatError{Format: formatName, Off: 0, Msg: "read header", Err: err}
	}
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	for i, p := range h.partitions() {
		if err := ctx.Err(); err != nil {
			return err
		}
		start, end := p[0], min(p[1], src.Size())
		if start >= end {
			out.Warn(fmt.Sprintf("trx: partition %d at %#x is outside the chunk", i, start))
			continue
		}
		name := fmt.Sprintf("partition-%d", i)
		hdr := &firmware.Header{Name: name, Type: firmware.TypeFile, Mode: 0o644, Size: end - start}
		if err := out.Add(hdr, io.NewSectionReader(src, start, end-start)); err != nil {
			return fmt.Errorf("trx: %s: %w", name, err)
		}
	}
	return nil
}

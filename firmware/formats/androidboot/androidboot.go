// Package androidboot reads Android boot images ("ANDROID!", header versions
// 0 to 4, as AOSP mkbootimg writes them): the kernel, ramdisk, second-stage
// loader, recovery DTBO, DTB and boot signature sections are located from the
// header's sizes and page size and extracted under those names.
package androidboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	formatName = "androidboot"
	magic      = "ANDROID!"
	// v3 and v4 use a fixed 4 KiB page.
	pageV3 = 4096
	// headerRead is enough for every header version.
	headerRead = 1660
)

// Section is one payload of the image.
type Section struct {
	Name string `json:"name"`
	Off  int64  `json:"offset"`
	Size int64  `json:"size"`
}

// Image is a decoded boot image header.
type Image struct {
	Version   uint32
	PageSize  uint32
	Name      string
	Cmdline   string
	OSVersion string
	Addrs     map[string]string
	Sections  []Section
	// End is the image's extent: the last section rounded up to a page.
	End int64
}

// Format declares the Android boot image.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindContainer,
	Doc: "Android boot image (\"ANDROID!\", header versions 0-4, AOSP mkbootimg): kernel, ramdisk, " +
		"second-stage loader, recovery DTBO, DTB and boot signature are extracted under those names; " +
		"header version, page size, load addresses, OS version and command line go in the chunk's meta.",
	Magics:   []firmware.Magic{{Bytes: []byte(magic)}},
	Identify: identify,
	Extract:  extract,
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// osVersion decodes the packed os_version field: 7 bits each of a.b.c, then
// the patch level as year-2000 (7 bits) and month (4 bits).
func osVersion(v uint32) string {
	if v == 0 {
		return ""
	}
	ver, lvl := v>>11, v&0x7ff
	s := fmt.Sprintf("%d.%d.%d", ver>>14&0x7f, ver>>7&0x7f, ver&0x7f)
	if lvl != 0 {
		s += fmt.Sprintf(" (patch level %d-%02d)", 2000+lvl>>4, lvl&0xf)
	}
	return s
}

// Parse decodes the header in b (headerRead bytes, or fewer at the end of
// an image) and lays out the sections; avail is the number of bytes from the
// image start to the end of the data.
func Parse(b []byte, avail int64) (*Image, error) {
	if len(b) < 48 || string(b[:8]) != magic {
		return nil, fmt.Errorf("androidboot: no header: %w", firmware.ErrNotFormat)
	}
	im := &Image{Version: binary.LittleEndian.Uint32(b[40:]), Addrs: map[string]string{}}
	var sizes []sectionSize
	var err error
	switch im.Version {
	case 0, 1, 2:
		sizes, err = im.parseV0(b)
	case 3, 4:
		sizes, err = im.parseV3(b)
	default:
		return nil, fmt.Errorf("androidboot: header version %d: %w", im.Version, firmware.ErrNotFormat)
	}
	if err != nil {
		return nil, err
	}
	ps := int64(im.PageSize)
	if ps < 512 || ps > 65536 || ps&(ps-1) != 0 {
		return nil, fmt.Errorf("androidboot: page size %d: %w", ps, firmware.ErrNotFormat)
	}
	pages := func(n int64) int64 { return (n + ps - 1) / ps * ps }
	pos := ps // the header takes the first page
	for _, s := range sizes {
		if s.size != 0 {
			im.Sections = append(im.Sections, Section{Name: s.name, Off: pos, Size: int64(s.size)})
		}
		pos += pages(int64(s.size))
	}
	if len(im.Sections) == 0 || im.Sections[0].Name != "kernel" {
		return nil, fmt.Errorf("androidboot: no kernel: %w", firmware.ErrNotFormat)
	}
	im.End = pos
	if im.End > avail {
		// The last section may be unpadded at the end of a file.
		last := im.Sections[len(im.Sections)-1]
		if last.Off+last.Size <= avail {
			im.End = avail
		}
	}
	return im, nil
}

// sectionSize is a section's size as the header gives it, in image order.
type sectionSize struct {
	name string
	size uint32
}

// needHeader checks that the header b holds the n bytes of its version.
func (im *Image) needHeader(b []byte, n int) error {
	if len(b) < n {
		return fmt.Errorf("androidboot: v%d header needs %d bytes: %w", im.Version, n, firmware.ErrNotFormat)
	}
	return nil
}

// parseV0 reads the fields of a version 0, 1 or 2 header and returns its
// section sizes.
func (im *Image) parseV0(b []byte) ([]sectionSize, error) {
	if err := im.needHeader(b, map[uint32]int{0: 1632, 1: 1648, 2: 1660}[im.Version]); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	u32 := func(off int) uint32 { return le.Uint32(b[off:]) }
	im.PageSize = u32(36)
	im.OSVersion = osVersion(u32(44))
	im.Name = cstr(b[48:64])
	im.Cmdline = cstr(b[64:576]) + cstr(b[608:1632])
	im.Addrs["kernel"] = fmt.Sprintf("%#x", u32(12))
	im.Addrs["ramdisk"] = fmt.Sprintf("%#x", u32(20))
	im.Addrs["second"] = fmt.Sprintf("%#x", u32(28))
	im.Addrs["tags"] = fmt.Sprintf("%#x", u32(32))
	sizes := []sectionSize{{"kernel", u32(8)}, {"ramdisk", u32(16)}, {"second", u32(24)}}
	if im.Version >= 1 {
		sizes = append(sizes, sectionSize{"recovery_dtbo", u32(1632)})
	}
	if im.Version == 2 {
		sizes = append(sizes, sectionSize{"dtb", u32(1648)})
		im.Addrs["dtb"] = fmt.Sprintf("%#x", le.Uint64(b[1652:]))
	}
	return sizes, nil
}

// parseV3 reads the fields of a version 3 or 4 header (fixed 4 KiB pages)
// and returns its section sizes.
func (im *Image) parseV3(b []byte) ([]sectionSize, error) {
	if err := im.needHeader(b, 1580+4*int(im.Version-3)); err != nil {
		return nil, err
	}
	u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
	im.PageSize = pageV3
	im.OSVersion = osVersion(u32(16))
	im.Cmdline = cstr(b[44:1580])
	sizes := []sectionSize{{"kernel", u32(8)}, {"ramdisk", u32(12)}}
	if im.Version == 4 {
		sizes = append(sizes, sectionSize{"boot_signature", u32(1580)})
	}
	return sizes, nil
}

func read(r io.ReaderAt, off, size int64) (*Image, error) {
	n := min(int64(headerRead), size-off)
	if n < 48 {
		return nil, fmt.Errorf("androidboot: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("androidboot: read header: %w", err)
	}
	return Parse(b, size-off)
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	im, err := read(r, off, size)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       im.End,
		Format:     formatName,
		Confidence: firmware.ConfidenceMedium,
		Meta: map[string]any{
			"header_version": im.Version,
			"page_size":      im.PageSize,
			"sections":       im.Sections,
		},
	}
	if len(im.Addrs) > 0 {
		c.Meta["addresses"] = im.Addrs
	}
	for k, v := range map[string]string{"name": im.Name, "cmdline": im.Cmdline, "os_version": im.OSVersion} {
		if v != "" {
			c.Meta[k] = v
		}
	}
	if c.Size > size-off {
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: sections end at %#x, %#x bytes present", im.End, size-off))
		c.Size = size - off
	} else {
		c.Confidence = firmware.ConfidenceHigh
	}
	var names []string
	for _, s := range im.Sections {
		names = append(names, s.Name)
	}
	c.Desc = fmt.Sprintf("Android boot image v%d, page size %d: %s", im.Version, im.PageSize, strings.Join(names, ", "))
	return c, nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	im, err := read(src, 0, src.Size())
	if err != nil {
		return err
	}
	for _, s := range im.Sections {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := s.Size
		if s.Off >= src.Size() {
			out.Warn(fmt.Sprintf("androidboot: %s at %#x is past the end", s.Name, s.Off))
			continue
		}
		if s.Off+n > src.Size() {
			out.Warn(fmt.Sprintf("androidboot: %s truncated to %d of %d bytes", s.Name, src.Size()-s.Off, n))
			n = src.Size() - s.Off
		}
		h := &firmware.Header{Name: s.Name, Type: firmware.TypeFile, Mode: 0o644, Size: n}
		if err := out.Add(h, io.NewSectionReader(src, s.Off, n)); err != nil {
			return fmt.Errorf("androidboot: %s: %w", s.Name, err)
		}
	}
	return nil
}

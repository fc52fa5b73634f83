// Package cpio reads cpio archives in the four formats GNU cpio writes: newc
// ("070701"), crc ("070702", newc plus a data checksum), odc ("070707",
// POSIX.1 portable ASCII) and the old binary format (magic 070707 as a 16-bit
// word, either byte order). Hard links, device nodes, fifos and symlinks are
// handed to the Sink as such; the Sink decides what reaches the disk.
package cpio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// Variant is one of the cpio header formats.
type Variant int

// Variants.
const (
	Newc Variant = iota + 1
	CRC
	ODC
	BinaryLE
	BinaryBE
)

func (v Variant) String() string {
	switch v {
	case Newc:
		return "newc"
	case CRC:
		return "crc"
	case ODC:
		return "odc"
	case BinaryLE:
		return "bin-le"
	case BinaryBE:
		return "bin-be"
	}
	return "unknown"
}

// Limits on single headers: names longer than this are treated as corruption.
const (
	maxNameSize = 4096
	trailer     = "TRAILER!!!"
)

// Entry is one decoded cpio header.
type Entry struct {
	Ino, Mode, UID, GID, Nlink uint32
	Mtime                      int64
	Size                       int64
	DevMajor, DevMinor         uint32 // of the containing device (for hard link identity)
	RdevMajor, RdevMinor       uint32
	Check                      uint32
	Name                       string
	// DataOff is the offset of the entry's data relative to the archive start.
	DataOff int64
	// End is the offset just past the (padded) data.
	End int64
}

// variantAt reads the magic at off.
func variantAt(r io.ReaderAt, off, size int64) (Variant, error) {
	var m [6]byte
	if size-off < 2 {
		return 0, firmware.ErrNotFormat
	}
	n := min(int64(6), size-off)
	if _, err := r.ReadAt(m[:n], off); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if n == 6 {
		switch string(m[:]) {
		case "070701":
			return Newc, nil
		case "070702":
			return CRC, nil
		case "070707":
			return ODC, nil
		}
	}
	switch {
	case m[0] == 0xc7 && m[1] == 0x71:
		return BinaryLE, nil
	case m[0] == 0x71 && m[1] == 0xc7:
		return BinaryBE, nil
	}
	return 0, firmware.ErrNotFormat
}

// header reads the entry header at pos (relative to the archive in r, whose
// size is size). The returned error is a *firmware.FormatError.
func header(r io.ReaderAt, v Variant, pos, size int64) (*Entry, error) {
	ferr := func(msg string, err error) error {
		return &firmware.FormatError{Format: formatName, Off: pos, Msg: msg, Err: err}
	}
	var hsz int64
	switch v {
	case Newc, CRC:
		hsz = 110
	case ODC:
		hsz = 76
	default:
		hsz = 26
	}
	if size-pos < hsz {
		return nil, ferr("header", firmware.ErrTruncated)
	}
	var buf [110]byte
	b := buf[:hsz]
	if _, err := r.ReadAt(b, pos); err != nil {
		return nil, ferr("read header", err)
	}
	e := &Entry{}
	var nameSize int64
	var bad string
	switch v {
	case Newc, CRC:
		nameSize, bad = e.decodeNewc(b, v)
	case ODC:
		nameSize, bad = e.decodeODC(b)
	default:
		nameSize, bad = e.decodeBinary(b, v)
	}
	if bad != "" {
		return nil, ferr(bad, firmware.ErrNotFormat)
	}
	if nameSize < 1 || nameSize > maxNameSize {
		return nil, ferr(fmt.Sprintf("name size %d", nameSize), firmware.ErrNotFormat)
	}
	namePos := pos + hsz
	if size-namePos < nameSize {
		return nil, ferr("name", firmware.ErrTruncated)
	}
	name := make([]byte, nameSize)
	if _, err := r.ReadAt(name, namePos); err != nil {
		return nil, ferr("read name", err)
	}
	if name[nameSize-1] != 0 {
		return nil, ferr("name not NUL-terminated", firmware.ErrNotFormat)
	}
	e.Name = string(name[:nameSize-1])
	e.DataOff = align(namePos+nameSize, padding(v))
	if e.Size < 0 || e.Size > size-e.DataOff {
		// The trailer of a truncated archive still counts as its end.
		return e, ferr(fmt.Sprintf("%s: %d data bytes, %d left", e.Name, e.Size, max(size-e.DataOff, 0)), firmware.ErrTruncated)
	}
	e.End = min(align(e.DataOff+e.Size, padding(v)), size)
	return e, nil
}

// padding is the alignment of names and data in variant v.
func padding(v Variant) int64 {
	switch v {
	case Newc, CRC:
		return 4
	case BinaryLE, BinaryBE:
		return 2
	}
	return 1
}

// decodeNewc decodes a newc or crc header (hex fields) into e and returns
// the name size, or what is wrong with the header.
func (e *Entry) decodeNewc(b []byte, v Variant) (nameSize int64, bad string) {
	want := "070701"
	if v == CRC {
		want = "070702"
	}
	if string(b[:6]) != want {
		return 0, "bad magic " + strconv.Quote(string(b[:6]))
	}
	var f [13]uint64
	for i := range f {
		v, ok := parseNum(b[6+8*i:14+8*i], 16)
		if !ok {
			return 0, fmt.Sprintf("field %d", i)
		}
		f[i] = v
	}
	e.Ino, e.Mode, e.UID, e.GID, e.Nlink = uint32(f[0]), uint32(f[1]), uint32(f[2]), uint32(f[3]), uint32(f[4])
	e.Mtime, e.Size = int64(f[5]), int64(f[6])
	e.DevMajor, e.DevMinor, e.RdevMajor, e.RdevMinor = uint32(f[7]), uint32(f[8]), uint32(f[9]), uint32(f[10])
	e.Check = uint32(f[12])
	return int64(f[11]), ""
}

// decodeODC decodes an old portable (octal) header into e, as decodeNewc.
func (e *Entry) decodeODC(b []byte) (nameSize int64, bad string) {
	if string(b[:6]) != "070707" {
		return 0, "bad magic"
	}
	widths := []int{6, 6, 6, 6, 6, 6, 6, 11, 6, 11}
	var f [10]uint64
	p := 6
	for i, w := range widths {
		v, ok := parseNum(b[p:p+w], 8)
		if !ok {
			return 0, fmt.Sprintf("field %d", i)
		}
		f[i] = v
		p += w
	}
	dev := uint32(f[0])
	e.DevMajor, e.DevMinor = dev>>8, dev&0xff
	e.Ino, e.Mode, e.UID, e.GID, e.Nlink = uint32(f[1]), uint32(f[2]), uint32(f[3]), uint32(f[4]), uint32(f[5])
	rdev := uint32(f[6])
	e.RdevMajor, e.RdevMinor = rdev>>8, rdev&0xff
	e.Mtime, e.Size = int64(f[7]), int64(f[9])
	return int64(f[8]), ""
}

// decodeBinary decodes an old binary header (16-bit words in v's byte
// order) into e, as decodeNewc.
func (e *Entry) decodeBinary(b []byte, v Variant) (nameSize int64, bad string) {
	var bo binary.ByteOrder = binary.LittleEndian
	if v == BinaryBE {
		bo = binary.BigEndian
	}
	w := func(i int) uint32 { return uint32(bo.Uint16(b[2*i:])) }
	if w(0) != 0o70707 {
		return 0, "bad magic"
	}
	dev := w(1)
	e.DevMajor, e.DevMinor = dev>>8, dev&0xff
	e.Ino, e.Mode, e.UID, e.GID, e.Nlink = w(2), w(3), w(4), w(5), w(6)
	rdev := w(7)
	e.RdevMajor, e.RdevMinor = rdev>>8, rdev&0xff
	e.Mtime = int64(w(8)<<16 | w(9))
	e.Size = int64(w(11)<<16 | w(12))
	return int64(w(10)), ""
}

// parseNum parses a fixed-width hex or octal field without allocating.
func parseNum(b []byte, base uint64) (uint64, bool) {
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

func align(n, a int64) int64 { return (n + a - 1) &^ (a - 1) }

// maxEntries bounds the walk in Identify; extraction is bounded by the Sink.
const maxEntries = 1 << 20

const formatName = "cpio"

// Format declares the cpio archive in all four variants.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindArchive,
	Doc: "cpio archive in the four formats GNU cpio writes: newc (070701, initramfs), crc (070702, " +
		"newc with a data checksum, verified), odc (070707, portable ASCII) and the old binary format " +
		"(either byte order). Files, directories, symlinks, hard links and device nodes are extracted " +
		"with their original mode, owner and device numbers recorded in the manifest.",
	Magics: []firmware.Magic{
		{Bytes: []byte("070701")},
		{Bytes: []byte("070702")},
		{Bytes: []byte("070707")},
		{Bytes: []byte{0xc7, 0x71}},
		{Bytes: []byte{0x71, 0xc7}},
	},
	Identify: identify,
	Extract:  extract,
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	v, err := variantAt(r, off, size)
	if err != nil {
		return nil, fmt.Errorf("cpio: %w", err)
	}
	sr := io.NewSectionReader(r, off, size-off)
	n := sr.Size()
	var pos int64
	var count int
	c := &firmware.Chunk{Offset: off, Format: formatName, Confidence: firmware.ConfidenceMedium}
	for {
		e, err := header(sr, v, pos, n)
		if err != nil {
			if count == 0 && pos == 0 {
				return nil, fmt.Errorf("%w: %w", err, firmware.ErrNotFormat)
			}
			c.Warnings = append(c.Warnings, "truncated or corrupt after "+strconv.Itoa(count)+" entries: "+err.Error())
			if errors.Is(err, firmware.ErrTruncated) {
				pos = n
			}
			break
		}
		if count == 0 && v >= BinaryLE && e.Mode&fmtutil.IFMT == 0 && e.Name != trailer {
			// Two magic bytes are weak evidence: a binary header must at least carry a file type.
			return nil, fmt.Errorf("cpio: binary header without file type: %w", firmware.ErrNotFormat)
		}
		pos = e.End
		if e.Name == trailer {
			c.Confidence = firmware.ConfidenceHigh
			break
		}
		count++
		if count >= maxEntries {
			c.Warnings = append(c.Warnings, fmt.Sprintf("stopped after %d entries", count))
			break
		}
	}
	if pos <= 0 {
		return nil, fmt.Errorf("cpio: empty: %w", firmware.ErrNotFormat)
	}
	// GNU cpio pads the archive to 512-byte blocks with zeros.
	pos = fmtutil.ZeroPadEnd(sr, pos, 512)
	c.Size = pos
	c.Desc = fmt.Sprintf("cpio archive (%s), %d entries", v, count)
	c.Meta = map[string]any{"variant": v.String(), "entries": count}
	return c, nil
}

// link remembers hard-linked entries of one inode.
type link struct {
	first   string   // name of the entry that was written with the content
	pending []*Entry // earlier zero-size links waiting for the content
}

type inodeKey struct{ major, minor, ino uint32 }

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	v, err := variantAt(src, 0, src.Size())
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	n := src.Size()
	links := map[inodeKey]*link{}
	var pos int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := header(src, v, pos, n)
		if err != nil {
			if e != nil && errors.Is(err, firmware.ErrTruncated) {
				// Hand over what is there of the last file.
				e.Size = max(n-e.DataOff, 0)
				out.Warn(err.Error())
				if err := add(src, v, e, links, out); err != nil {
					return err
				}
			} else {
				out.Warn(err.Error())
			}
			break
		}
		if e.Name == trailer {
			break
		}
		if err := add(src, v, e, links, out); err != nil {
			return err
		}
		pos = e.End
	}
	// Links whose content never came: the first becomes an empty file.
	for _, l := range links {
		for i, e := range l.pending {
			if i == 0 && l.first == "" {
				if err := out.Add(entryHeader(e, firmware.TypeFile, ""), nil); err != nil {
					return fmt.Errorf("cpio: %s: %w", e.Name, err)
				}
				l.first = e.Name
				continue
			}
			if err := out.Add(entryHeader(e, firmware.TypeHardlink, l.first), nil); err != nil {
				return fmt.Errorf("cpio: %s: %w", e.Name, err)
			}
		}
	}
	return nil
}

func entryHeader(e *Entry, t firmware.EntryType, linkname string) *firmware.Header {
	h := &firmware.Header{
		Name:     e.Name,
		Type:     t,
		Mode:     unixmode.FromUnix(e.Mode),
		UID:      int(e.UID),
		GID:      int(e.GID),
		ModTime:  time.Unix(e.Mtime, 0).UTC(),
		Linkname: linkname,
		Size:     -1,
	}
	switch t {
	case firmware.TypeFile:
		h.Size = e.Size
	case firmware.TypeCharDevice, firmware.TypeBlockDevice:
		h.Devmajor, h.Devminor = e.RdevMajor, e.RdevMinor
	}
	return h
}

// maxLinkTarget bounds a symlink target read from the archive.
const maxLinkTarget = 4096

func add(src *io.SectionReader, v Variant, e *Entry, links map[inodeKey]*link, out firmware.Sink) error {
	data := io.NewSectionReader(src, e.DataOff, e.Size)
	fail := func(err error) error { return fmt.Errorf("cpio: %s: %w", e.Name, err) }
	switch e.Mode & fmtutil.IFMT {
	case fmtutil.IFDIR:
		return out.Add(entryHeader(e, firmware.TypeDir, ""), nil)
	case fmtutil.IFLNK:
		if e.Size > maxLinkTarget {
			out.Warn(fmt.Sprintf("cpio: %s: symlink target of %d bytes skipped", e.Name, e.Size))
			return nil
		}
		b := make([]byte, e.Size)
		if _, err := io.ReadFull(data, b); err != nil {
			return fail(err)
		}
		return out.Add(entryHeader(e, firmware.TypeSymlink, string(b)), nil)
	case fmtutil.IFCHR:
		return out.Add(entryHeader(e, firmware.TypeCharDevice, ""), nil)
	case fmtutil.IFBLK:
		return out.Add(entryHeader(e, firmware.TypeBlockDevice, ""), nil)
	case fmtutil.IFIFO:
		return out.Add(entryHeader(e, firmware.TypeFIFO, ""), nil)
	case fmtutil.IFSOCK:
		return out.Add(entryHeader(e, firmware.TypeSocket, ""), nil)
	case fmtutil.IFREG, 0:
	default:
		out.Warn(fmt.Sprintf("cpio: %s: unknown file type %#o, extracted as a file", e.Name, e.Mode&fmtutil.IFMT))
	}
	if e.Nlink > 1 {
		k := inodeKey{e.DevMajor, e.DevMinor, e.Ino}
		l := links[k]
		if l == nil {
			l = &link{}
			links[k] = l
		}
		if e.Size == 0 {
			if l.first != "" {
				return out.Add(entryHeader(e, firmware.TypeHardlink, l.first), nil)
			}
			l.pending = append(l.pending, e)
			return nil
		}
		if l.first == "" {
			l.first = e.Name
		}
	}
	var r io.Reader = data
	var sum *fmtutil.ByteSum
	if v == CRC {
		sum = &fmtutil.ByteSum{R: data}
		r = sum
	}
	if err := out.Add(entryHeader(e, firmware.TypeFile, ""), r); err != nil {
		return fail(err)
	}
	if sum != nil && sum.N == e.Size && sum.Sum != e.Check {
		out.Warn(fmt.Sprintf("cpio: %s: data checksum %#x, header says %#x", e.Name, sum.Sum, e.Check))
	}
	if e.Nlink > 1 {
		l := links[inodeKey{e.DevMajor, e.DevMinor, e.Ino}]
		for _, p := range l.pending {
			if err := out.Add(entryHeader(p, firmware.TypeHardlink, l.first), nil); err != nil {
				return fmt.Errorf("cpio: %s: %w", p.Name, err)
			}
		}
		l.pending = nil
	}
	return nil
}

// Package romfs reads the Linux ROM filesystem ("-rom1fs-"), found as the
// root or a resource partition of small uClinux-era cameras and in boot
// images. The layout (Documentation/filesystems/romfs.rst) is big-endian
// and 16-byte aligned:
//
//   - superblock: "-rom1fs-", the full size, a checksum making the u32 sum
//     of the first 512 bytes (or the whole image when smaller) zero, and the
//     NUL-terminated volume name padded to 16 bytes;
//   - then file headers: next (offset of the next header in the same
//     directory, its low 4 bits the type and an executable bit), spec.info
//     (a directory's first entry, a hard link's target header, a device's
//     major<<16|minor), size, a checksum over the header and name, the
//     padded name, then the data.
//
// Types: 0 hard link, 1 directory, 2 file, 3 symlink, 4 block device, 5 char
// device, 6 socket, 7 FIFO. romfs keeps no owner, time or permission: the
// kernel gives 0644 (0755 with the executable bit, 0777 for symlinks, 0600
// for devices), and so does this package. Every header is visited once: a
// next or spec.info pointer back to a header already read (a loop) ends
// that list with a warning.
package romfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	formatName = "romfs"
	magic      = "-rom1fs-"
	hdrLen     = 16
	// maxName bounds a name (the kernel's ROMFS_MAXFN is 128).
	maxName = 1024
	// maxEntries bounds the headers read.
	maxEntries = 1 << 20
	maxDepth   = 128
)

// Format declares romfs.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindFilesystem,
	Doc: "Linux romfs (-rom1fs-), the uncompressed read-only filesystem of uClinux-era cameras and boot " +
		"images. The superblock gives the size and a checksum of its first 512 bytes, which must hold. " +
		"Files, directories, symlinks and hard links are extracted, devices, sockets and FIFOs " +
		"recorded as headers (romfs keeps no owners, times or permissions: the kernel's defaults are " +
		"used). Pointer loops and headers outside the image are reported, not followed.",
	Magics:   []firmware.Magic{{Bytes: []byte(magic)}},
	Identify: identify,
	Extract:  extract,
}

func formatErr(off int64, msg string, err error) error {
	return &firmware.FormatError{Format: formatName, Off: off, Msg: msg, Err: err}
}

// sum32 is the romfs checksum: the sum of big-endian u32 words.
func sum32(b []byte) uint32 {
	var s uint32
	for i := 0; i+4 <= len(b); i += 4 {
		s += binary.BigEndian.Uint32(b[i:])
	}
	return s
}

// nameAt reads the NUL-terminated name at off and returns it with the
// 16-byte padded length it occupies.
func nameAt(r io.ReaderAt, off, size int64) (string, int64, error) {
	var name []byte
	buf := make([]byte, hdrLen)
	for pos := off; pos < size && len(name) < maxName; pos += hdrLen {
		if _, err := r.ReadAt(buf, pos); err != nil {
			return "", 0, formatErr(pos, "reading a name", firmware.ErrTruncated)
		}
		if i := bytes.IndexByte(buf, 0); i >= 0 {
			name = append(name, buf[:i]...)
			return string(name), pos + hdrLen - off, nil
		}
		name = append(name, buf...)
	}
	return "", 0, formatErr(off, "name not terminated", firmware.ErrTruncated)
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if off < 0 || size-off < 32 {
		return nil, formatErr(0, "too short for a superblock", firmware.ErrNotFormat)
	}
	var sb [32]byte
	if _, err := r.ReadAt(sb[:], off); err != nil || string(sb[:8]) != magic {
		return nil, formatErr(0, "bad magic", firmware.ErrNotFormat)
	}
	fsSize := int64(binary.BigEndian.Uint32(sb[8:]))
	if fsSize < 32+hdrLen || fsSize%hdrLen != 0 {
		return nil, formatErr(8, fmt.Sprintf("size %d is not a romfs size", fsSize), firmware.ErrNotFormat)
	}
	avail := size - off
	head := make([]byte, min(512, fsSize))
	if int64(len(head)) > avail {
		return nil, formatErr(0, "checksummed area cut short", firmware.ErrTruncated)
	}
	if _, err := r.ReadAt(head, off); err != nil {
		return nil, formatErr(0, "reading the superblock", firmware.ErrTruncated)
	}
	if s := sum32(head); s != 0 {
		return nil, formatErr(12, fmt.Sprintf("superblock checksum leaves %#x, want 0", s), firmware.ErrNotFormat)
	}
	vol, n, err := nameAt(io.NewSectionReader(r, off, avail), 16, min(fsSize, avail))
	if err != nil {
		return nil, formatErr(16, "volume name", firmware.ErrNotFormat)
	}
	// The root directory is the first header: it must be a directory.
	root := 16 + n
	var h [hdrLen]byte
	if root+hdrLen > min(fsSize, avail) {
		return nil, formatErr(root, "no root header", firmware.ErrNotFormat)
	}
	if _, err := r.ReadAt(h[:], off+root); err != nil {
		return nil, formatErr(root, "reading the root header", firmware.ErrTruncated)
	}
	if binary.BigEndian.Uint32(h[:])&7 != 1 {
		return nil, formatErr(root, "first header is not a directory", firmware.ErrNotFormat)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       fsSize,
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Desc:       fmt.Sprintf("romfs filesystem, %d bytes, volume %q", fsSize, vol),
		Meta:       map[string]any{"size": fsSize, "volume": vol, "root": root},
	}
	if fsSize > avail {
		c.Size = avail
		c.Confidence = firmware.ConfidenceMedium
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: the superblock says %d bytes, %d available", fsSize, avail))
	}
	return c, nil
}

// header is one decoded file header.
type header struct {
	off        int64 // of the header
	next       int64 // next header in the directory, 0 at the end
	typ        uint32
	exec       bool
	spec, size uint32
	name       string
	data       int64 // offset of the data
}

type reader struct {
	r     io.ReaderAt
	size  int64
	warn  func(string)
	seen  map[int64]bool // headers already read
	count int
	bad   int // headers whose checksum does not hold
}

func (rd *reader) header(off int64) (*header, error) {
	if off < 32 || off%hdrLen != 0 || off+hdrLen > rd.size {
		return nil, formatErr(off, fmt.Sprintf("header outside the %d-byte image", rd.size), nil)
	}
	var b [hdrLen]byte
	if _, err := rd.r.ReadAt(b[:], off); err != nil {
		return nil, formatErr(off, "reading a header", err)
	}
	name, n, err := nameAt(rd.r, off+hdrLen, rd.size)
	if err != nil {
		return nil, err
	}
	meta := make([]byte, hdrLen+n)
	if _, err := rd.r.ReadAt(meta, off); err != nil {
		return nil, formatErr(off, "reading a header", err)
	}
	if sum32(meta) != 0 {
		rd.bad++
	}
	next := binary.BigEndian.Uint32(b[:])
	return &header{off: off, next: int64(next &^ 15), typ: next & 7, exec: next&8 != 0,
		spec: binary.BigEndian.Uint32(b[4:]), size: binary.BigEndian.Uint32(b[8:]),
		name: name, data: off + hdrLen + n}, nil
}

// entry is a header found at a path.
type entry struct {
	path string
	h    *header
}

// list walks the directory whose first header is at first, depth first, and
// appends every entry but "." and "..".
func (rd *reader) list(ctx context.Context, dir string, first int64, depth int, out *[]entry) error {
	if depth > maxDepth {
		rd.warn(fmt.Sprintf("romfs: %s: nesting deeper than %d; not entered", "/"+dir, maxDepth))
		return nil
	}
	for off := first; off != 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if rd.seen[off] {
			rd.warn(fmt.Sprintf("romfs: %s: header at %#x was already read (a pointer loop); rest of the directory dropped", "/"+dir, off))
			return nil
		}
		rd.seen[off] = true
		if rd.count++; rd.count > maxEntries {
			rd.warn(fmt.Sprintf("romfs: more than %d headers; the rest are dropped", maxEntries))
			return nil
		}
		h, err := rd.header(off)
		if err != nil {
			rd.warn(fmt.Sprintf("romfs: %s: %v; rest of the directory dropped", "/"+dir, err))
			return nil
		}
		off = h.next
		if h.name == "." || h.name == ".." {
			continue
		}
		if h.name == "" {
			rd.warn(fmt.Sprintf("romfs: %s: header at %#x has an empty name; dropped", "/"+dir, h.off))
			continue
		}
		p := h.name
		if dir != "" {
			p = dir + "/" + h.name
		}
		*out = append(*out, entry{p, h})
		if h.typ == 1 {
			if err := rd.list(ctx, p, int64(h.spec), depth+1, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// modes are the kernel's romfs_modemap permissions by type.
var modes = [8]fs.FileMode{0, 0o644, 0o644, 0o777, 0o600, 0o600, 0o644, 0o644}

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	rd := &reader{r: src, size: src.Size(), warn: out.Warn, seen: map[int64]bool{}}
	entries, err := rd.entries(ctx, c)
	if err != nil {
		return err
	}
	if rd.bad > 0 {
		out.Warn(fmt.Sprintf("romfs: %d file headers fail their checksum", rd.bad))
	}
	paths := map[int64]entry{}
	var links []entry
	for _, e := range entries {
		paths[e.h.off] = e
		if e.h.typ == 0 {
			links = append(links, e)
			continue
		}
		if err := rd.add(e, out); err != nil {
			return err
		}
	}
	// Hard links last, so their targets exist.
	for _, e := range links {
		target, ok := paths[int64(e.h.spec)]
		if !ok || target.h.typ == 0 || target.h.typ == 1 {
			out.Warn(fmt.Sprintf("romfs: hard link %s: target header %#x is not a listed file; dropped", e.path, e.h.spec))
			continue
		}
		if err := out.Add(&firmware.Header{Name: e.path, Type: firmware.TypeHardlink, Linkname: target.path, Mode: 0o644, Size: -1}, nil); err != nil {
			return err
		}
	}
	return nil
}

// entries lists the entries of the tree, from the root header (c's Meta,
// else the one after the volume name).
func (rd *reader) entries(ctx context.Context, c *firmware.Chunk) ([]entry, error) {
	root, _ := c.Meta["root"].(int64)
	if root == 0 {
		_, n, err := nameAt(rd.r, 16, rd.size)
		if err != nil {
			return nil, err
		}
		root = 16 + n
	}
	rh, err := rd.header(root)
	if err != nil {
		return nil, err
	}
	var entries []entry
	rd.seen[root] = true
	// The root directory lists itself as ".", so its list starts at the
	// root header (already marked) or right after it.
	first := int64(rh.spec)
	if first == root {
		first = rh.next
	}
	if err := rd.list(ctx, "", first, 0, &entries); err != nil {
		return nil, err
	}
	return entries, nil
}

// add hands one entry other than a hard link to out; one whose content
// cannot be read is dropped with a warning.
func (rd *reader) add(e entry, out firmware.Sink) error {
	h := e.h
	hd := &firmware.Header{Name: e.path, Mode: modes[h.typ], Size: -1}
	if h.exec {
		hd.Mode |= 0o111
	}
	var body io.Reader
	switch h.typ {
	case 1:
		hd.Type = firmware.TypeDir
	case 2, 3:
		if h.data+int64(h.size) > rd.size || h.data+int64(h.size) < h.data {
			out.Warn(fmt.Sprintf("romfs: %s: %d bytes at %#x run past the %d-byte image; not extracted", e.path, h.size, h.data, rd.size))
			return nil
		}
		body = io.NewSectionReader(rd.r, h.data, int64(h.size))
		hd.Type, hd.Size = firmware.TypeFile, int64(h.size)
		if h.typ == 3 {
			t := make([]byte, min(h.size, 4096))
			if _, err := rd.r.ReadAt(t, h.data); err != nil {
				out.Warn(fmt.Sprintf("romfs: symlink %s: %v; not extracted", e.path, err))
				return nil
			}
			hd.Type, hd.Size, hd.Linkname, body = firmware.TypeSymlink, -1, string(bytes.TrimRight(t, "\x00")), nil
		}
	case 4, 5:
		hd.Type = firmware.TypeBlockDevice
		if h.typ == 5 {
			hd.Type = firmware.TypeCharDevice
		}
		hd.Devmajor, hd.Devminor = h.spec>>16, h.spec&0xffff
	case 6:
		hd.Type = firmware.TypeSocket
	case 7:
		hd.Type = firmware.TypeFIFO
	}
	return out.Add(hd, body)
}

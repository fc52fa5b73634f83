package yaffs2

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// maxDepth bounds parent chains; a longer chain is an id cycle.
const maxDepth = 256

type dataChunk struct {
	idx int
	n   uint32
	seq uint32
}

type object struct {
	id     uint32
	hdr    objHeader
	hdrSeq uint32
	hasHdr bool
	chunks map[uint32]dataChunk
}

// image is the latest state of every object in a scanned image.
type image struct {
	c       *chunkReader
	objs    map[uint32]*object
	orphans int // headers whose parent is unknown, data without a header
}

// load reads every chunk of the size bytes at off under g; a later chunk
// with the same object (and chunk) id and a sequence number at least as
// high replaces an earlier one.
func load(r io.ReaderAt, off, size int64, g geometry) (*image, error) {
	c := &chunkReader{r: r, base: off, size: off + size, g: g}
	img := &image{c: c, objs: map[uint32]*object{}}
	n := int(size / g.chunk())
	get := func(id uint32) *object {
		o := img.objs[id]
		if o == nil {
			o = &object{id: id, chunks: map[uint32]dataChunk{}}
			img.objs[id] = o
		}
		return o
	}
	for i := 0; i < n; i++ {
		v, t := c.valid(i)
		if v <= 0 {
			continue
		}
		o := get(t.id())
		if t.isHeader() {
			if !o.hasHdr || t.seq >= o.hdrSeq {
				o.hdr, _ = c.header(i)
				o.hdrSeq, o.hasHdr = t.seq, true
			}
			continue
		}
		if d, ok := o.chunks[t.chunk]; !ok || t.seq >= d.seq {
			o.chunks[t.chunk] = dataChunk{idx: i, n: t.n, seq: t.seq}
		}
	}
	for _, o := range img.objs {
		if !o.hasHdr {
			img.orphans++
			continue
		}
		p := o.hdr.parent
		if p != idRoot && p != idUnlinked && p != idDeleted {
			if q := img.objs[p]; q == nil || !q.hasHdr || q.hdr.typ != typeDir {
				img.orphans++
			}
		}
	}
	return img, nil
}

// path resolves the object's path from the root. It returns "" and a
// reason when the object is deleted, orphaned or in an id cycle.
func (img *image) path(o *object) (string, string) {
	var parts []string
	seen := map[uint32]bool{}
	for cur := o; ; {
		if seen[cur.id] || len(parts) > maxDepth {
			return "", "cycle"
		}
		seen[cur.id] = true
		parts = append(parts, cur.hdr.name)
		switch p := cur.hdr.parent; p {
		case idRoot:
			slices.Reverse(parts)
			return strings.Join(parts, "/"), ""
		case idUnlinked, idDeleted:
			return "", "deleted"
		default:
			q := img.objs[p]
			if q == nil || !q.hasHdr || q.hdr.typ != typeDir {
				slices.Reverse(parts)
				return "lost+found/" + strings.Join(parts, "/"), "orphan"
			}
			cur = q
		}
	}
}

// fileReader streams a file's data chunks in order; a missing chunk reads
// as zeros.
type fileReader struct {
	img     *image
	o       *object
	left    int64
	next    uint32 // next chunk id
	buf     []byte
	pending []byte
	missing int
}

func (f *fileReader) Read(p []byte) (int, error) {
	for len(f.pending) == 0 {
		if f.left <= 0 {
			return 0, io.EOF
		}
		dl := int64(f.img.c.g.dataLen())
		want := min(dl, f.left)
		if f.buf == nil {
			f.buf = make([]byte, dl)
		}
		b := f.buf[:want]
		clear(b)
		if d, ok := f.o.chunks[f.next]; ok {
			n := min(int64(d.n), want)
			if _, err := f.img.c.r.ReadAt(b[:n], f.img.c.off(d.idx)); err != nil {
				return 0, formatErr(f.img.c.off(d.idx)-f.img.c.base, "reading a data chunk", err)
			}
		} else {
			f.missing++
		}
		f.next++
		f.left -= want
		f.pending = b
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

func geometryFromMeta(c *firmware.Chunk) (geometry, bool) {
	page, ok1 := c.Meta["page"].(int)
	spare, ok2 := c.Meta["spare"].(int)
	tagOff, ok3 := c.Meta["tag_offset"].(int)
	inband, ok4 := c.Meta["inband"].(bool)
	endian, ok5 := c.Meta["endian"].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return geometry{}, false
	}
	g := geometry{page: page, spare: spare, tagOff: tagOff, inband: inband, bo: binary.LittleEndian}
	if endian == "big-endian" {
		g.bo = binary.BigEndian
	}
	return g, true
}

func extract(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	g, ok := geometryFromMeta(c)
	if !ok {
		if g, ok = detect(src, 0, src.Size()); !ok {
			return formatErr(0, "no chunk geometry", firmware.ErrNotFormat)
		}
	}
	img, err := load(src, 0, src.Size()/g.chunk()*g.chunk(), g)
	if err != nil {
		return err
	}
	items := img.items(out)
	// No file can hold more than every chunk of the image.
	capacity := (src.Size()/g.chunk() + 1) * int64(g.dataLen())
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := img.emit(it, g, capacity, out); err != nil {
			return err
		}
	}
	return nil
}

// item is an object to extract, with its path.
type item struct {
	path string
	o    *object
}

// items lists the objects to extract, directories first, by path, so
// parents exist; hard links last. Objects that cannot be placed are counted
// in warnings by reason.
func (img *image) items(out firmware.Sink) []item {
	var items []item
	counts := map[string]int{}
	for _, id := range slices.Sorted(func(yield func(uint32) bool) {
		for id := range img.objs {
			if !yield(id) {
				return
			}
		}
	}) {
		o := img.objs[id]
		if !o.hasHdr {
			counts[fmt.Sprintf("object %d has data chunks but no header; its data is dropped", id)]++
			continue
		}
		if id == idRoot {
			continue
		}
		p, why := img.path(o)
		switch why {
		case "cycle":
			counts["objects whose parent ids form a cycle; dropped"]++
			continue
		case "deleted":
			counts["deleted or unlinked objects; not extracted"]++
			continue
		case "orphan":
			counts["objects whose parent is missing; extracted below lost+found"]++
		}
		items = append(items, item{p, o})
	}
	for msg, n := range counts {
		out.Warn(fmt.Sprintf("yaffs2: %d %s", n, msg))
	}
	rank := func(o *object) int {
		switch o.hdr.typ {
		case typeDir:
			return 0
		case typeLink:
			return 2
		}
		return 1
	}
	slices.SortStableFunc(items, func(a, b item) int {
		if ra, rb := rank(a.o), rank(b.o); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.path, b.path)
	})
	return items
}

// emit hands one object to out; objects of no usable kind are dropped with
// a warning.
func (img *image) emit(it item, g geometry, capacity int64, out firmware.Sink) error {
	h := &it.o.hdr
	hd := &firmware.Header{Name: it.path, Mode: unixmode.FromUnix(h.mode), UID: int(h.uid), GID: int(h.gid),
		ModTime: time.Unix(int64(h.mtime), 0).UTC(), Size: -1}
	switch h.typ {
	case typeDir:
		hd.Type = firmware.TypeDir
	case typeFile:
		return img.emitFile(it, hd, g, capacity, out)
	case typeSymlink:
		hd.Type, hd.Linkname = firmware.TypeSymlink, h.alias
	case typeLink:
		t := img.objs[h.equiv]
		if t == nil || !t.hasHdr || t.hdr.typ != typeFile {
			out.Warn(fmt.Sprintf("yaffs2: hard link %s: object %d is not a file; dropped", it.path, h.equiv))
			return nil
		}
		target, why := img.path(t)
		if why != "" && why != "orphan" {
			out.Warn(fmt.Sprintf("yaffs2: hard link %s: target object %d is %s; dropped", it.path, h.equiv, why))
			return nil
		}
		hd.Type, hd.Linkname = firmware.TypeHardlink, target
		hd.Mode, hd.UID, hd.GID, hd.ModTime = unixmode.FromUnix(t.hdr.mode), int(t.hdr.uid), int(t.hdr.gid), time.Unix(int64(t.hdr.mtime), 0).UTC()
	case typeSpecial:
		switch h.mode & fmtutil.IFMT {
		case fmtutil.IFCHR:
			hd.Type = firmware.TypeCharDevice
		case fmtutil.IFBLK:
			hd.Type = firmware.TypeBlockDevice
		case fmtutil.IFIFO:
			hd.Type = firmware.TypeFIFO
		case fmtutil.IFSOCK:
			hd.Type = firmware.TypeSocket
		default:
			out.Warn(fmt.Sprintf("yaffs2: %s: special object with mode %#o; dropped", it.path, h.mode))
			return nil
		}
		hd.Devmajor, hd.Devminor = (h.rdev&0xfff00)>>8, h.rdev&0xff|(h.rdev>>12)&0xfff00
	}
	return out.Add(hd, nil)
}

// emitFile hands a regular file to out, its size cut to what the image can
// hold; missing data chunks read as zeros.
func (img *image) emitFile(it item, hd *firmware.Header, g geometry, capacity int64, out firmware.Sink) error {
	h := &it.o.hdr
	size := h.size
	if size < 0 || size > capacity {
		var top uint32
		for k := range it.o.chunks {
			top = max(top, k)
		}
		out.Warn(fmt.Sprintf("yaffs2: %s: size %d is more than the image holds; cut to its %d chunks", it.path, h.size, top))
		size = int64(top) * int64(g.dataLen())
	}
	fr := &fileReader{img: img, o: it.o, left: size, next: 1}
	hd.Type, hd.Size = firmware.TypeFile, size
	if err := out.Add(hd, fr); err != nil {
		return err
	}
	if fr.missing > 0 {
		out.Warn(fmt.Sprintf("yaffs2: %s: %d data chunks missing; read as zeros", it.path, fr.missing))
	}
	return nil
}

package squashfs

import (
	"bytes"
	"encoding/binary"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zlib"
	"github.com/ulikunitz/xz/lzma"
)

// This file is a test helper: a small squashfs writer for the layouts
// mksquashfs 4.x cannot make (1.0, 2.x and 3.x in either byte order, 4.0
// big-endian, the vendor LZMA framings), following squashfs_fs.h of
// squashfs-tools 2.x/3.x and Linux 2.6 (the _2 and _3 structures of
// squashfs_compat.h), of the Linux 2.4 squashfs 1.0 patches (1.0: no
// fragments, 16-bit block words, 3-byte inode bases) and of squashfs-tools
// 4.x (4.0). It writes data blocks
// (stored when compression does not help, sparse when all zero in 4.0),
// shared fragment blocks, inode and directory tables in 8 KiB metadata
// blocks, the fragment table and the id (4.0) or uid/gid (3.x) tables.

// wEntry is one entry of the tree to write.
type wEntry struct {
	path     string
	typ      uint16 // tDir, tFile, tSymlink, tBlock, tChar, tFIFO, tSocket
	mode     uint16 // permission bits (07777)
	uid, gid uint32
	data     []byte // tFile
	target   string // tSymlink
	rdev     uint32 // tBlock, tChar: major<<8 | minor
}

// wOptions selects the layout.
type wOptions struct {
	major     uint16 // 1, 2, 3 or 4
	big       bool
	blockSize uint32
	comp      string // "gzip", "lzma", "lzma-nosize", "lzma-raw", "none"
	dictSize  uint32 // LZMA: dictionary size written in the headers (0: block size)
	check     bool   // 3.x: SQUASHFS_CHECK marker byte after metadata headers
	lzmaMagic bool   // the squashfs-lzma magic ("shsq"/"qshs") instead of "hsqs"
	mtime     uint32
}

type sqWriter struct {
	t     testing.TB
	o     wOptions
	bo    binary.AppendByteOrder
	out   []byte // image after the superblock
	inode metaWriter
	dir   metaWriter
	frags []byte   // fragment entries (16 bytes each)
	fbuf  []byte   // pending fragment block
	ids   []uint32 // 4.0 id table / 3.x uid table
	gids  []uint32 // 3.x guid table
	inum  uint32
	count uint32

	byPath map[string]*wEntry  // the tree (layout)
	kids   map[string][]string // directory → its entries' paths
	files  map[string]wFile    // where each file's data went
}

// metaWriter streams a metadata table: 8 KiB blocks, each compressed when
// that helps, with a 2-byte header (bit 15: stored).
type metaWriter struct {
	w       *sqWriter
	flushed []byte
	cur     []byte
}

// pos is the reference of the next byte: block start << 16 | offset.
func (m *metaWriter) pos() uint64 { return uint64(len(m.flushed))<<16 | uint64(len(m.cur)) }

func (m *metaWriter) write(b []byte) {
	m.cur = append(m.cur, b...)
	for len(m.cur) >= metaSize {
		m.flush(m.cur[:metaSize])
		m.cur = slices.Clone(m.cur[metaSize:])
	}
}

func (m *metaWriter) flush(b []byte) {
	c, ok := m.w.compress(b)
	hdr := uint16(len(c))
	if !ok {
		hdr |= 0x8000
	}
	m.flushed = m.w.bo.AppendUint16(m.flushed, hdr)
	if m.w.o.major < 4 && m.w.o.check {
		m.flushed = append(m.flushed, 0xff)
	}
	m.flushed = append(m.flushed, c...)
}

func (m *metaWriter) finish() []byte {
	if len(m.cur) > 0 {
		m.flush(m.cur)
		m.cur = nil
	}
	return m.flushed
}

// compress returns b compressed, or b itself and false when compression
// does not make it smaller.
func (w *sqWriter) compress(b []byte) ([]byte, bool) {
	var buf bytes.Buffer
	switch w.o.comp {
	case "none":
		return b, false
	case "gzip":
		zw, _ := zlib.NewWriterLevel(&buf, 9)
		zw.Write(b)
		zw.Close()
	default:
		zw, err := lzma.WriterConfig{DictCap: 1 << 16, Size: int64(len(b)), EOSMarker: w.o.comp != "lzma"}.NewWriter(&buf)
		if err != nil {
			w.t.Fatal(err)
		}
		zw.Write(b)
		if err := zw.Close(); err != nil {
			w.t.Fatal(err)
		}
		c := buf.Bytes()
		dict := w.o.dictSize
		if dict == 0 {
			dict = w.o.blockSize
		}
		binary.LittleEndian.PutUint32(c[1:], dict)
		switch w.o.comp {
		case "lzma-nosize":
			c = append(c[:5:5], c[lzma.HeaderLen:]...)
		case "lzma-raw":
			c = c[lzma.HeaderLen:]
		}
		if len(c) < len(b) {
			return c, true
		}
		return b, false
	}
	if buf.Len() < len(b) {
		return buf.Bytes(), true
	}
	return b, false
}

func (w *sqWriter) u16(b []byte, v uint16) []byte { return w.bo.AppendUint16(b, v) }
func (w *sqWriter) u32(b []byte, v uint32) []byte { return w.bo.AppendUint32(b, v) }
func (w *sqWriter) u64(b []byte, v uint64) []byte { return w.bo.AppendUint64(b, v) }

// bitsW packs 3.x bit fields, the mirror of bits3.
type bitsW struct {
	b   []byte
	big bool
}

func (r bitsW) put(pos, width int, v uint64) {
	for i := range width {
		p := pos + i
		var bit uint64
		if r.big {
			bit = v >> (width - 1 - i) & 1
			r.b[p/8] |= byte(bit) << (7 - p%8)
		} else {
			bit = v >> i & 1
			r.b[p/8] |= byte(bit) << (p % 8)
		}
	}
}

func (w *sqWriter) idIndex(table *[]uint32, id uint32) int {
	if i := slices.Index(*table, id); i >= 0 {
		return i
	}
	*table = append(*table, id)
	return len(*table) - 1
}

// fileData writes the blocks of data and returns the start, the block size
// words, and the fragment index and offset (noFragment when none).
func (w *sqWriter) fileData(data []byte) (start uint64, words []uint32, frag, fragOff uint32) {
	start = uint64(superSizeOf(w.o.major) + len(w.out))
	bs := int(w.o.blockSize)
	full := len(data) / bs
	tail := data[full*bs:]
	frag = noFragment
	if len(tail) > 0 && len(data) < 4*bs && w.o.major > 1 { // big files keep their tail as a block; 1.0 has no fragments
		if len(w.fbuf)+len(tail) > bs {
			w.flushFragment()
		}
		frag, fragOff = uint32(len(w.frags)/w.fragEntrySize()), uint32(len(w.fbuf))
		w.fbuf = append(w.fbuf, tail...)
		data = data[:full*bs]
	}
	for off := 0; off < len(data); off += bs {
		blk := data[off:min(off+bs, len(data))]
		if w.o.major == 4 && !slices.ContainsFunc(blk, func(c byte) bool { return c != 0 }) {
			words = append(words, 0) // sparse
			continue
		}
		c, ok := w.compress(blk)
		word := uint32(len(c))
		switch {
		case w.o.major == 1 && !ok: // bit 15: stored; a size of 0 is 32 KiB
			word = word&0x7fff | 0x8000
		case !ok:
			word |= 1 << 24
		}
		words = append(words, word)
		w.out = append(w.out, c...)
	}
	return start, words, frag, fragOff
}

func (w *sqWriter) flushFragment() {
	if len(w.fbuf) == 0 {
		return
	}
	start := uint64(superSizeOf(w.o.major) + len(w.out))
	c, ok := w.compress(w.fbuf)
	size := uint32(len(c))
	if !ok {
		size |= 1 << 24
	}
	w.out = append(w.out, c...)
	if w.o.major == 2 {
		w.frags = w.u32(w.frags, uint32(start))
		w.frags = w.u32(w.frags, size)
	} else {
		w.frags = w.u64(w.frags, start)
		w.frags = w.u32(w.frags, size)
		w.frags = w.u32(w.frags, 0)
	}
	w.fbuf = w.fbuf[:0]
}

// fragEntrySize is the size of a fragment table entry: 8 bytes in 2.x.
func (w *sqWriter) fragEntrySize() int {
	if w.o.major == 2 {
		return 8
	}
	return 16
}

func superSizeOf(major uint16) int {
	switch major {
	case 1:
		return superSize1
	case 2:
		return superSize2
	case 3:
		return superSize3
	}
	return superSize
}

type wChild struct {
	name string
	ref  uint64
	typ  uint16
	inum uint32
}

// wFile is where a file's data went.
type wFile struct {
	start         uint64
	words         []uint32
	frag, fragOff uint32
}

// writeTree writes a squashfs image of entries (directories are implied by
// paths; an explicit tDir entry sets a directory's mode and owner).
func writeTree(t testing.TB, o wOptions, entries []wEntry) []byte {
	w := &sqWriter{t: t, o: o, bo: binary.LittleEndian}
	if o.big {
		w.bo = binary.BigEndian
	}
	w.inode.w, w.dir.w = w, w
	w.layout(entries)
	// Data first (in path order), then the tables.
	w.files = map[string]wFile{}
	for _, p := range slices.Sorted(maps.Keys(w.byPath)) {
		if e := w.byPath[p]; e.typ == tFile {
			var fi wFile
			fi.start, fi.words, fi.frag, fi.fragOff = w.fileData(e.data)
			w.files[p] = fi
		}
	}
	w.flushFragment()
	root := w.writeDir("", 0)
	return w.tables(root)
}

// layout places entries in the tree, adding the directories their paths
// imply.
func (w *sqWriter) layout(entries []wEntry) {
	w.byPath = map[string]*wEntry{"": {typ: tDir, mode: 0o755}}
	w.kids = map[string][]string{}
	var add func(p string)
	add = func(p string) {
		if _, ok := w.byPath[p]; ok {
			return
		}
		parent := path.Dir(p)
		if parent == "." {
			parent = ""
		}
		add(parent)
		w.byPath[p] = &wEntry{path: p, typ: tDir, mode: 0o755}
		w.kids[parent] = append(w.kids[parent], p)
	}
	for i := range entries {
		e := entries[i]
		parent := path.Dir(e.path)
		if parent == "." {
			parent = ""
		}
		add(parent)
		if old, ok := w.byPath[e.path]; ok {
			*old = e
			continue
		}
		w.byPath[e.path] = &e
		w.kids[parent] = append(w.kids[parent], e.path)
	}
}

// writeInode writes a 4.0 inode (the common header, then extra) or a 3.x
// one (size3 bytes: the 12-byte base, then fields3, then extra).
func (w *sqWriter) writeInode(e *wEntry, extra func(b []byte) []byte, size3 int, fields3 func(r bitsW)) wChild {
	o := w.o
	w.inum++
	w.count++
	ref := w.inode.pos()
	var b []byte
	if o.major == 4 {
		b = w.u16(b, e.typ)
		b = w.u16(b, e.mode)
		b = w.u16(b, uint16(w.idIndex(&w.ids, e.uid)))
		b = w.u16(b, uint16(w.idIndex(&w.ids, e.gid)))
		b = w.u32(b, o.mtime)
		b = w.u32(b, w.inum)
		b = extra(b)
	} else {
		b = make([]byte, size3)
		r := bitsW{b: b, big: o.big}
		w.base23(r, e)
		r.put(32, 32, uint64(o.mtime))
		r.put(64, 32, uint64(w.inum))
		fields3(r)
		b = extra(b)
	}
	w.inode.write(b)
	return wChild{name: path.Base(e.path), ref: ref, typ: e.typ, inum: w.inum}
}

// base23 puts the base that 2.x and 3.x inodes share: type, mode, uid
// index and gid index (255: the gid is the uid).
func (w *sqWriter) base23(r bitsW, e *wEntry) {
	uid, gid := w.idIndex(&w.ids, e.uid), 255
	if e.gid != e.uid {
		gid = w.idIndex(&w.gids, e.gid)
	}
	r.put(0, 4, uint64(e.typ))
	r.put(4, 12, uint64(e.mode))
	r.put(16, 8, uint64(uid))
	r.put(24, 8, uint64(gid))
}

// writeInode2 writes a 2.x inode: a 4-byte base, then fields.
func (w *sqWriter) writeInode2(e *wEntry, size int, fields func(r bitsW), tail []byte) wChild {
	w.inum++
	w.count++
	ref := w.inode.pos()
	b := make([]byte, size)
	r := bitsW{b: b, big: w.o.big}
	w.base23(r, e)
	if fields != nil {
		fields(r)
	}
	w.inode.write(append(b, tail...))
	return wChild{name: path.Base(e.path), ref: ref, typ: e.typ, inum: w.inum}
}

// writeInode1 writes a 1.0 inode: a 3-byte base whose type carries the
// uid index's high bits (in the offset field of IPC inodes), then fields.
func (w *sqWriter) writeInode1(e *wEntry, size int, fields func(r bitsW), tail []byte) wChild {
	w.inum++
	w.count++
	ref := w.inode.pos()
	b := make([]byte, size)
	r := bitsW{b: b, big: w.o.big}
	uid, gid := w.idIndex(&w.ids, e.uid), gidSameAs1
	if e.gid != e.uid {
		gid = w.idIndex(&w.gids, e.gid)
	}
	if uid >= maxUIDs1 || gid > maxGIDs1 {
		w.t.Fatalf("1.0 holds %d uids and %d gids", maxUIDs1, maxGIDs1)
	}
	if e.typ == tFIFO || e.typ == tSocket {
		r.put(0, 4, ipcType1)
		r.put(24, 4, uint64(e.typ))
		r.put(28, 4, uint64(uid/16))
	} else {
		r.put(0, 4, uint64(e.typ)+uint64(uid/16*types1))
	}
	r.put(4, 12, uint64(e.mode))
	r.put(16, 4, uint64(uid%16))
	r.put(20, 4, uint64(gid))
	if fields != nil {
		fields(r)
	}
	w.inode.write(append(b, tail...))
	return wChild{name: path.Base(e.path), ref: ref, typ: e.typ, inum: w.inum}
}

// writeEntry writes the inode of the entry at p (a directory's whole
// subtree first).
func (w *sqWriter) writeEntry(p string, parentInum uint32) wChild {
	e := w.byPath[p]
	switch e.typ {
	case tDir:
		return w.writeDir(p, parentInum)
	case tFile:
		return w.fileInode(e, w.files[p])
	case tSymlink:
		return w.symlinkInode(e)
	case tBlock, tChar:
		return w.deviceInode(e)
	default: // FIFO, socket
		switch w.o.major {
		case 4:
			return w.writeInode(e, func(b []byte) []byte { return w.u32(b, 1) }, 0, nil)
		case 2:
			return w.writeInode2(e, 4, nil, nil)
		case 1:
			return w.writeInode1(e, 4, nil, nil)
		}
		return w.writeInode(e, func(b []byte) []byte { return b }, 16, func(r bitsW) { r.put(96, 32, 1) })
	}
}

func (w *sqWriter) fileInode(e *wEntry, fi wFile) wChild {
	o := w.o
	var list []byte
	for _, wd := range fi.words {
		if o.major == 1 {
			list = w.u16(list, uint16(wd))
		} else {
			list = w.u32(list, wd)
		}
	}
	switch o.major {
	case 1:
		return w.writeInode1(e, 15, func(r bitsW) {
			r.put(24, 32, uint64(o.mtime))
			r.put(56, 32, fi.start)
			r.put(88, 32, uint64(len(e.data)))
		}, list)
	case 4:
		return w.writeInode(e, func(b []byte) []byte {
			b = w.u32(b, uint32(fi.start))
			b = w.u32(b, fi.frag)
			b = w.u32(b, fi.fragOff)
			b = w.u32(b, uint32(len(e.data)))
			return append(b, list...)
		}, 0, nil)
	case 2:
		return w.writeInode2(e, 24, func(r bitsW) {
			r.put(32, 32, uint64(o.mtime))
			r.put(64, 32, fi.start)
			r.put(96, 32, uint64(fi.frag))
			r.put(128, 32, uint64(fi.fragOff))
			r.put(160, 32, uint64(len(e.data)))
		}, list)
	}
	return w.writeInode(e, func(b []byte) []byte { return append(b, list...) }, 32, func(r bitsW) {
		r.put(96, 64, fi.start)
		r.put(160, 32, uint64(fi.frag))
		r.put(192, 32, uint64(fi.fragOff))
		r.put(224, 32, uint64(len(e.data)))
	})
}

func (w *sqWriter) symlinkInode(e *wEntry) wChild {
	switch w.o.major {
	case 4:
		return w.writeInode(e, func(b []byte) []byte {
			b = w.u32(b, 1)
			b = w.u32(b, uint32(len(e.target)))
			return append(b, e.target...)
		}, 0, nil)
	case 2:
		return w.writeInode2(e, 6, func(r bitsW) { r.put(32, 16, uint64(len(e.target))) }, []byte(e.target))
	case 1:
		return w.writeInode1(e, 5, func(r bitsW) { r.put(24, 16, uint64(len(e.target))) }, []byte(e.target))
	}
	return w.writeInode(e, func(b []byte) []byte { return append(b, e.target...) }, 18, func(r bitsW) {
		r.put(96, 32, 1)
		r.put(128, 16, uint64(len(e.target)))
	})
}

func (w *sqWriter) deviceInode(e *wEntry) wChild {
	switch w.o.major {
	case 4:
		return w.writeInode(e, func(b []byte) []byte { return w.u32(w.u32(b, 1), e.rdev) }, 0, nil)
	case 2:
		return w.writeInode2(e, 6, func(r bitsW) { r.put(32, 16, uint64(e.rdev)) }, nil)
	case 1:
		return w.writeInode1(e, 5, func(r bitsW) { r.put(24, 16, uint64(e.rdev)) }, nil)
	}
	return w.writeInode(e, func(b []byte) []byte { return b }, 18, func(r bitsW) {
		r.put(96, 32, 1)
		r.put(128, 16, uint64(e.rdev))
	})
}

// writeDir writes the directory at p: its children's inodes, its listing,
// then its own inode.
func (w *sqWriter) writeDir(p string, parentInum uint32) wChild {
	names := slices.Clone(w.kids[p])
	slices.Sort(names)
	var children []wChild
	subdirs := 0
	for _, c := range names {
		ch := w.writeEntry(c, 0)
		if ch.typ == tDir {
			subdirs++
		}
		children = append(children, ch)
	}
	listPos := w.dir.pos()
	listing := w.listing(children)
	w.dir.write(listing)
	return w.dirInode(w.byPath[p], listPos, uint64(len(listing)+3), uint32(2+subdirs), parentInum)
}

// listing is a directory's listing: runs of entries sharing an inode
// metadata block, each after a header.
func (w *sqWriter) listing(children []wChild) []byte {
	o := w.o
	var listing []byte
	for i := 0; i < len(children); {
		j := i
		for j < len(children) && j-i < 256 && children[j].ref>>16 == children[i].ref>>16 {
			j++
		}
		run := children[i:j]
		if o.major == 4 {
			listing = w.u32(listing, uint32(len(run)-1))
			listing = w.u32(listing, uint32(run[0].ref>>16))
			listing = w.u32(listing, run[0].inum)
			for _, c := range run {
				listing = w.u16(listing, uint16(c.ref))
				listing = w.u16(listing, uint16(int16(c.inum-run[0].inum)))
				listing = w.u16(listing, c.typ)
				listing = w.u16(listing, uint16(len(c.name)-1))
				listing = append(listing, c.name...)
			}
		} else if o.major <= 2 { // 1.0 listings are 2.x's
			h := make([]byte, 4)
			r := bitsW{b: h, big: o.big}
			r.put(0, 8, uint64(len(run)-1))
			r.put(8, 24, run[0].ref>>16)
			listing = append(listing, h...)
			for _, c := range run {
				e := make([]byte, 3)
				r := bitsW{b: e, big: o.big}
				r.put(0, 13, c.ref&0xffff)
				r.put(13, 3, uint64(c.typ))
				r.put(16, 8, uint64(len(c.name)-1))
				listing = append(listing, e...)
				listing = append(listing, c.name...)
			}
		} else {
			h := make([]byte, 9)
			r := bitsW{b: h, big: o.big}
			r.put(0, 8, uint64(len(run)-1))
			r.put(8, 32, run[0].ref>>16)
			r.put(40, 32, uint64(run[0].inum))
			listing = append(listing, h...)
			for _, c := range run {
				e := make([]byte, 5)
				r := bitsW{b: e, big: o.big}
				r.put(0, 13, c.ref&0xffff)
				r.put(13, 3, uint64(c.typ))
				r.put(16, 8, uint64(len(c.name)-1))
				r.put(24, 16, uint64(uint16(int16(c.inum-run[0].inum))))
				listing = append(listing, e...)
				listing = append(listing, c.name...)
			}
		}
		i = j
	}
	return listing
}

// dirInode writes a directory's inode; size counts the listing and 3.
func (w *sqWriter) dirInode(e *wEntry, listPos, size uint64, nlink, parentInum uint32) wChild {
	o := w.o
	switch o.major {
	case 4:
		return w.writeInode(e, func(b []byte) []byte {
			b = w.u32(b, uint32(listPos>>16))
			b = w.u32(b, nlink)
			b = w.u16(b, uint16(size))
			b = w.u16(b, uint16(listPos))
			return w.u32(b, parentInum)
		}, 0, nil)
	case 1:
		return w.writeInode1(e, 14, func(r bitsW) {
			r.put(24, 19, size-3) // 1.0 counts the listing only
			r.put(43, 13, listPos&0xffff)
			r.put(56, 32, uint64(o.mtime))
			r.put(88, 24, listPos>>16)
		}, nil)
	case 2:
		return w.writeInode2(e, 15, func(r bitsW) {
			r.put(32, 19, size-3) // 2.x counts the listing only
			r.put(51, 13, listPos&0xffff)
			r.put(64, 32, uint64(o.mtime))
			r.put(96, 24, listPos>>16)
		}, nil)
	}
	return w.writeInode(e, func(b []byte) []byte { return b }, 28, func(r bitsW) {
		r.put(96, 32, uint64(nlink))
		r.put(128, 19, size)
		r.put(147, 13, listPos&0xffff)
		r.put(160, 32, listPos>>16)
		r.put(192, 32, uint64(parentInum))
	})
}

// indexed writes entries as metadata blocks, then their index, and returns
// where the index starts.
func (w *sqWriter) indexed(entries []byte) uint64 {
	base := uint64(superSizeOf(w.o.major))
	var starts []uint64
	for off := 0; off < len(entries); off += metaSize {
		starts = append(starts, base+uint64(len(w.out)))
		var m metaWriter
		m.w = w
		m.write(entries[off:min(off+metaSize, len(entries))])
		w.out = append(w.out, m.finish()...)
	}
	at := base + uint64(len(w.out))
	for _, s := range starts {
		if w.o.major == 2 {
			w.out = w.u32(w.out, uint32(s))
		} else {
			w.out = w.u64(w.out, s)
		}
	}
	return at
}

// wTables is where the tables went.
type wTables struct {
	inode, dir, frag uint64
}

// tables writes the inode, directory and fragment tables, then the id
// tables and the superblock, and returns the image.
func (w *sqWriter) tables(root wChild) []byte {
	base := uint64(superSizeOf(w.o.major))
	var at wTables
	at.inode = base + uint64(len(w.out))
	w.out = append(w.out, w.inode.finish()...)
	at.dir = base + uint64(len(w.out))
	w.out = append(w.out, w.dir.finish()...)
	at.frag = w.indexed(w.frags)
	var sb []byte
	if w.o.major == 4 {
		sb = w.super4(root, at)
	} else {
		sb = w.superOld(root, at)
	}
	copy(sb, magicOf(w.o))
	return pad4k(append(sb, w.out...))
}

// super4 writes the id table and returns the 4.0 superblock.
func (w *sqWriter) super4(root wChild, at wTables) []byte {
	o := w.o
	base := uint64(superSizeOf(o.major))
	nfrags := len(w.frags) / w.fragEntrySize()
	var ids []byte
	for _, id := range w.ids {
		ids = w.u32(ids, id)
	}
	idTable := w.indexed(ids)
	used := base + uint64(len(w.out))
	var sb []byte
	sb = w.u32(sb, 0)
	sb = w.u32(sb, w.count)
	sb = w.u32(sb, o.mtime)
	sb = w.u32(sb, o.blockSize)
	sb = w.u32(sb, uint32(nfrags))
	comp := uint16(compGZIP)
	if strings.HasPrefix(o.comp, "lzma") {
		comp = compLZMA
	}
	sb = w.u16(sb, comp)
	sb = w.u16(sb, uint16(bitsLen(o.blockSize)))
	sb = w.u16(sb, 0)
	sb = w.u16(sb, uint16(len(w.ids)))
	sb = w.u16(sb, 4)
	sb = w.u16(sb, 0)
	sb = w.u64(sb, root.ref)
	sb = w.u64(sb, used)
	sb = w.u64(sb, idTable)
	sb = w.u64(sb, ^uint64(0)) // no xattrs
	sb = w.u64(sb, at.inode)
	sb = w.u64(sb, at.dir)
	sb = w.u64(sb, at.frag)
	return w.u64(sb, ^uint64(0)) // no export table
}

// superOld writes the uid and gid tables and returns the 1.0-3.x
// superblock.
func (w *sqWriter) superOld(root wChild, at wTables) []byte {
	o := w.o
	base := uint64(superSizeOf(o.major))
	nfrags := len(w.frags) / w.fragEntrySize()
	uidTable := base + uint64(len(w.out))
	for _, id := range w.ids {
		w.out = w.u32(w.out, id)
	}
	gidTable := base + uint64(len(w.out))
	for _, id := range w.gids {
		w.out = w.u32(w.out, id)
	}
	used := base + uint64(len(w.out))
	var sb []byte
	var flags byte
	if o.check {
		flags |= flagCheck
	}
	sb = w.u32(sb, 0)
	sb = w.u32(sb, w.count)
	sb = w.u32(sb, uint32(used))
	sb = w.u32(sb, uint32(uidTable))
	sb = w.u32(sb, uint32(gidTable))
	sb = w.u32(sb, uint32(at.inode))
	sb = w.u32(sb, uint32(at.dir))
	sb = w.u16(sb, o.major)
	sb = w.u16(sb, min(o.major-1, 1)) // 1.0, 2.1, 3.1
	sb = w.u16(sb, uint16(min(o.blockSize, 0xffff)))
	sb = w.u16(sb, uint16(bitsLen(o.blockSize)))
	sb = append(sb, flags, byte(len(w.ids)), byte(len(w.gids)))
	sb = w.u32(sb, o.mtime)
	sb = w.u64(sb, root.ref)
	if o.major == 1 { // 1.0 ends at the root inode
		return sb
	}
	sb = w.u32(sb, o.blockSize)
	sb = w.u32(sb, uint32(nfrags))
	sb = w.u32(sb, uint32(at.frag))
	if o.major == 3 { // 2.x ends at the 32-bit fragment table offset
		sb = w.u64(sb, used)
		sb = w.u64(sb, uidTable)
		sb = w.u64(sb, gidTable)
		sb = w.u64(sb, at.inode)
		sb = w.u64(sb, at.dir)
		sb = w.u64(sb, at.frag)
		sb = w.u64(sb, ^uint64(0)) // no lookup table
	}
	return sb
}

func magicOf(o wOptions) string {
	return map[[2]bool]string{{}: "hsqs", {true}: "sqsh", {false, true}: lzmaMagicLE, {true, true}: lzmaMagicBE}[[2]bool{o.big, o.lzmaMagic}]
}

// pad4k pads an image to 4 KiB as mksquashfs does.
func pad4k(img []byte) []byte {
	return append(img, make([]byte, (4096-len(img)%4096)%4096)...)
}

// bitsLen returns log2 of a power of two.
func bitsLen(v uint32) int {
	n := 0
	for v > 1 {
		v >>= 1
		n++
	}
	return n
}

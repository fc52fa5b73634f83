package flash

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// Limits of the JFFS2 extractor. Real images stay far below each; a hostile
// one meets them and is reported, never followed into unbounded work.
const (
	// jffs2MaxNodes bounds the inode and directory-entry nodes indexed
	// (a 64 MiB partition of tiny nodes holds about a million).
	jffs2MaxNodes = 2 << 20
	// jffs2MaxData bounds the decompressed size of one data node. mkfs.jffs2
	// and the kernel write at most one page (4 KiB, 64 KiB on some CPUs).
	jffs2MaxData = 256 << 10
	// jffs2ZerosPerByte and jffs2ZerosFloor give the zero bytes that no
	// stored data backs (holes between data nodes, zero-compressed nodes,
	// an isize past the last node) which a chunk may produce: 1 MiB plus
	// 256 per byte of the chunk. A file is cut where the allowance ends.
	jffs2ZerosPerByte = 256
	jffs2ZerosFloor   = 1 << 20
	// jffs2MaxDepth bounds directory nesting.
	jffs2MaxDepth = 128
	// jffs2MaxLink bounds a symbolic link's target (PATH_MAX).
	jffs2MaxLink = 4096
	// jffs2CacheNodes is how many decompressed nodes a file reader keeps.
	jffs2CacheNodes = 4
)

// Sizes of the fixed parts of inode and directory-entry nodes.
const (
	jffs2InodeHdr  = 68
	jffs2DirentHdr = 40
	jffs2RootIno   = 1
)

// jffs2Data is one data node of an inode: the range [start, start+dsize) of
// the file, as stored at off (after the node's fixed part).
type jffs2Data struct {
	off          int64
	version      uint32
	start, dsize uint32
	csize        uint32
	compr        uint8
}

// jffs2Ino is what the nodes of one inode number say: the metadata of the
// node with the highest version, and every data node.
type jffs2Ino struct {
	version  uint32
	mode     uint32
	uid, gid uint16
	isize    uint32
	mtime    uint32
	metaData int32   // data node of the latest node, or -1 (symlink targets, device numbers)
	metaOff  int64   // offset of the latest node
	data     []int32 // indexes into jffs2Extractor.data
}

type jffs2DirentKey struct {
	pino uint32
	name string
}

type jffs2Entry struct {
	version, ino uint32
	typ          uint8
	off          int64
}

// jffs2Count counts one kind of problem and remembers where it first occurred.
type jffs2Count struct {
	n     int
	first int64
	what  string
}

func (c *jffs2Count) add(off int64, what string) {
	if c.n == 0 {
		c.first, c.what = off, what
	}
	c.n++
}

type jffs2Extractor struct {
	ctx  context.Context
	src  *io.SectionReader
	bo   binary.ByteOrder
	out  firmware.Sink
	w    *window
	buf  []byte // node being scanned
	cbuf []byte // compressed data being decoded
	data []jffs2Data
	inos map[uint32]*jffs2Ino
	ents map[jffs2DirentKey]jffs2Entry
	kids map[uint32][]string // directory inode -> names of live entries, sorted

	// budget is the decompressed bytes left for the whole chunk: a node
	// decompressed again and again by a hostile overlay stops here.
	budget int64
	// zeros is what is left of the chunk's allowance of unbacked zeros.
	zeros int64

	badCRC, malformed, undecodable, ignored, obsolete jffs2Count
	overflow                                          jffs2Count
	nodes                                             int

	dirs  map[uint32]bool   // directory inodes entered (loop guard)
	files map[uint32]string // inode -> first path (hard links)
	named map[uint32]bool   // inodes reached by a name
}

// JFFS2 extraction follows the kernel's mount semantics: for each inode the
// node with the highest version gives the metadata and, range by range, the
// data; for each name in a directory the entry with the highest version wins,
// and an entry with inode 0 deletes the name.
func extractJFFS2(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	x, err := newJFFS2Extractor(ctx, src, out)
	if err != nil {
		return err
	}
	return x.run()
}

func newJFFS2Extractor(ctx context.Context, src *io.SectionReader, out firmware.Sink) (*jffs2Extractor, error) {
	var m [2]byte
	if _, err := src.ReadAt(m[:], 0); err != nil {
		return nil, formatErr("jffs2", 0, "reading magic", firmware.ErrTruncated)
	}
	bo, _ := jffs2Endian(m[:])
	if bo == nil {
		return nil, formatErr("jffs2", 0, "bad magic", firmware.ErrNotFormat)
	}
	return &jffs2Extractor{
		ctx:    ctx,
		src:    src,
		bo:     bo,
		out:    out,
		w:      newWindow(src, src.Size()),
		inos:   map[uint32]*jffs2Ino{},
		ents:   map[jffs2DirentKey]jffs2Entry{},
		budget: 64<<20 + 64*src.Size(),
		zeros:  jffs2ZerosFloor + jffs2ZerosPerByte*src.Size(),
		dirs:   map[uint32]bool{jffs2RootIno: true},
		files:  map[uint32]string{},
		named:  map[uint32]bool{},
	}, nil
}

func (x *jffs2Extractor) run() error {
	if err := x.scan(); err != nil {
		return err
	}
	x.index()
	err := x.dir(jffs2RootIno, "", 0)
	x.report()
	return err
}

// scan reads every node of the image into the index.
func (x *jffs2Extractor) scan() error {
	walk := newJFFS2Walker(x.w, x.bo, 0, x.src.Size())
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		pos, typ, length, obsolete, ok := walk.next()
		if !ok {
			return nil
		}
		if obsolete {
			x.obsolete.add(pos, "")
			continue
		}
		switch typ {
		case jffs2Inode, jffs2Dirent:
			if x.nodes >= jffs2MaxNodes {
				x.overflow.add(pos, fmt.Sprintf("more than %d inode and directory-entry nodes", jffs2MaxNodes))
				continue
			}
			x.nodes++
			var err error
			if typ == jffs2Inode {
				err = x.inode(pos, length)
			} else {
				err = x.dirent(pos, length)
			}
			if err != nil {
				return err
			}
		case jffs2Xattr, jffs2Xref:
			x.ignored.add(pos, "extended attribute")
		}
	}
}

// node reads the length bytes of the node at pos (at most jffs2MaxNode).
func (x *jffs2Extractor) node(pos int64, length uint32) ([]byte, error) {
	if cap(x.buf) < int(length) {
		x.buf = make([]byte, length)
	}
	b := x.buf[:length]
	if _, err := x.src.ReadAt(b, pos); err != nil {
		return nil, formatErr("jffs2", pos, "reading node", err)
	}
	return b, nil
}

func (x *jffs2Extractor) inode(pos int64, length uint32) error {
	if length < jffs2InodeHdr {
		x.malformed.add(pos, "inode node shorter than its header")
		return nil
	}
	b, err := x.node(pos, length)
	if err != nil {
		return err
	}
	bo := x.bo
	if crcRaw(0, b[:60]) != bo.Uint32(b[64:]) {
		x.badCRC.add(pos, "inode node CRC")
		return nil
	}
	ino, version := bo.Uint32(b[12:]), bo.Uint32(b[16:])
	start, csize, dsize := bo.Uint32(b[44:]), bo.Uint32(b[48:]), bo.Uint32(b[52:])
	compr := b[56]
	if ino == 0 || uint64(csize) > uint64(length-jffs2InodeHdr) {
		x.malformed.add(pos, fmt.Sprintf("inode node (inode %d, data size %d in a node of %d bytes)", ino, csize, length))
		return nil
	}
	if crcRaw(0, b[jffs2InodeHdr:jffs2InodeHdr+csize]) != bo.Uint32(b[60:]) {
		x.badCRC.add(pos, "inode data CRC")
		return nil
	}
	if uint64(start)+uint64(dsize) > 1<<32 || (dsize > jffs2MaxData && compr != jffs2ComprZero) {
		x.malformed.add(pos, fmt.Sprintf("data node of inode %d (range %d+%d)", ino, start, dsize))
		return nil
	}
	in := x.inos[ino]
	if in == nil {
		in = &jffs2Ino{metaData: -1, metaOff: -1}
		x.inos[ino] = in
	}
	d := int32(-1)
	if dsize > 0 {
		d = int32(len(x.data))
		x.data = append(x.data, jffs2Data{off: pos + jffs2InodeHdr, version: version, start: start, dsize: dsize, csize: csize, compr: compr})
		in.data = append(in.data, d)
	}
	// The latest node wins; among equal versions the one written later.
	if in.metaOff < 0 || version >= in.version {
		in.version, in.mode = version, bo.Uint32(b[20:])
		in.uid, in.gid = bo.Uint16(b[24:]), bo.Uint16(b[26:])
		in.isize, in.mtime = bo.Uint32(b[28:]), bo.Uint32(b[36:])
		in.metaData, in.metaOff = d, pos
	}
	return nil
}

func (x *jffs2Extractor) dirent(pos int64, length uint32) error {
	if length < jffs2DirentHdr {
		x.malformed.add(pos, "directory entry shorter than its header")
		return nil
	}
	b, err := x.node(pos, length)
	if err != nil {
		return err
	}
	bo := x.bo
	if crcRaw(0, b[:32]) != bo.Uint32(b[32:]) {
		x.badCRC.add(pos, "directory entry CRC")
		return nil
	}
	nsize := int(b[28])
	if jffs2DirentHdr+nsize > int(length) {
		x.malformed.add(pos, "directory entry name past the node")
		return nil
	}
	name := b[jffs2DirentHdr : jffs2DirentHdr+nsize]
	if crcRaw(0, name) != bo.Uint32(b[36:]) {
		x.badCRC.add(pos, "directory entry name CRC")
		return nil
	}
	k := jffs2DirentKey{pino: bo.Uint32(b[12:]), name: string(name)}
	e := jffs2Entry{version: bo.Uint32(b[16:]), ino: bo.Uint32(b[20:]), typ: b[29], off: pos}
	if old, ok := x.ents[k]; !ok || e.version >= old.version {
		x.ents[k] = e
	}
	return nil
}

// index lists the live names of each directory, sorted.
func (x *jffs2Extractor) index() {
	x.kids = map[uint32][]string{}
	for k, e := range x.ents {
		if e.ino != 0 {
			x.kids[k.pino] = append(x.kids[k.pino], k.name)
		}
	}
	for _, names := range x.kids {
		slices.Sort(names)
	}
}

func (x *jffs2Extractor) warn(format string, args ...any) {
	x.out.Warn("jffs2: " + fmt.Sprintf(format, args...))
}

// dir extracts the entries of directory ino below path.
func (x *jffs2Extractor) dir(ino uint32, path string, depth int) error {
	if depth > jffs2MaxDepth {
		x.warn("%s: nesting deeper than %d, not entered", path, jffs2MaxDepth)
		return nil
	}
	for _, name := range x.kids[ino] {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		e := x.ents[jffs2DirentKey{pino: ino, name: name}]
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			x.warn("directory %q holds a hostile name %q (entry at %#x)", "/"+path, name, e.off)
		}
		// Names go to the Sink raw: it neutralises and reports hostile ones.
		p := name
		if path != "" {
			p = path + "/" + name
		}
		if err := x.entry(e, p, depth); err != nil {
			return err
		}
	}
	return nil
}

func (x *jffs2Extractor) entry(e jffs2Entry, name string, depth int) error {
	x.named[e.ino] = true
	in := x.inos[e.ino]
	if in == nil && x.dirs[e.ino] {
		x.warn("%s: directory inode %d already extracted (a loop or a second name); not entered again", name, e.ino)
		return nil
	}
	if in == nil {
		x.warn("%s: inode %d has no inode node (entry at %#x); not extracted", name, e.ino, e.off)
		return nil
	}
	h := &firmware.Header{
		Name:    name,
		Mode:    unixmode.FromUnix(in.mode),
		UID:     int(in.uid),
		GID:     int(in.gid),
		ModTime: time.Unix(int64(in.mtime), 0).UTC(),
		Size:    0,
	}
	switch in.mode & fmtutil.IFMT {
	case fmtutil.IFDIR:
		h.Type = firmware.TypeDir
		if err := x.out.Add(h, nil); err != nil {
			return err
		}
		if x.dirs[e.ino] {
			x.warn("%s: directory inode %d already extracted (a loop or a second name); not entered again", name, e.ino)
			return nil
		}
		x.dirs[e.ino] = true
		return x.dir(e.ino, name, depth+1)
	case fmtutil.IFREG:
		return x.file(e.ino, in, h)
	case fmtutil.IFLNK:
		target, err := x.special(in, jffs2MaxLink)
		if err != nil {
			x.warn("%s: symlink target: %v", name, err)
			return nil
		}
		h.Type, h.Linkname = firmware.TypeSymlink, string(target)
	case fmtutil.IFCHR, fmtutil.IFBLK:
		h.Type = firmware.TypeCharDevice
		if in.mode&fmtutil.IFMT == fmtutil.IFBLK {
			h.Type = firmware.TypeBlockDevice
		}
		x.device(in, h)
	case fmtutil.IFIFO:
		h.Type = firmware.TypeFIFO
	case fmtutil.IFSOCK:
		h.Type = firmware.TypeSocket
	default:
		x.warn("%s: inode %d has unknown file type (mode %#o); not extracted", name, e.ino, in.mode)
		return nil
	}
	return x.out.Add(h, nil)
}

// file adds regular file inode ino under h.Name: its content the first
// time, a hard link to that first name after.
func (x *jffs2Extractor) file(ino uint32, in *jffs2Ino, h *firmware.Header) error {
	name := h.Name
	if first, ok := x.files[ino]; ok {
		h.Type, h.Linkname = firmware.TypeHardlink, first
		return x.out.Add(h, nil)
	}
	x.files[ino] = name
	r := x.open(ino, in, name)
	h.Type, h.Size = firmware.TypeFile, r.size
	err := x.out.Add(h, r)
	var fe *firmware.FormatError
	if err != nil && errors.As(err, &fe) {
		// The image's fault, not the Sink's: keep going.
		x.warn("%s: %v", name, strings.TrimPrefix(err.Error(), "jffs2: "))
		return nil
	}
	return err
}

// device sets h's device numbers from the device inode's data (old 16-bit
// or new_encode_dev 32-bit encoding).
func (x *jffs2Extractor) device(in *jffs2Ino, h *firmware.Header) {
	dev, err := x.special(in, 8)
	switch {
	case err != nil:
		x.warn("%s: device number: %v", h.Name, err)
	case len(dev) == 2: // old 16-bit encoding
		v := x.bo.Uint16(dev)
		h.Devmajor, h.Devminor = uint32(v>>8), uint32(v&0xff)
	case len(dev) == 4: // new_encode_dev
		v := x.bo.Uint32(dev)
		h.Devmajor, h.Devminor = (v&0xfff00)>>8, (v&0xff)|((v>>12)&0xfff00)
	default:
		x.warn("%s: device number of %d bytes (want 2 or 4)", h.Name, len(dev))
	}
}

// special returns the data of the latest node of a symlink or device inode,
// which holds the whole target or device number, as the kernel reads it.
func (x *jffs2Extractor) special(in *jffs2Ino, limit int) ([]byte, error) {
	if in.metaData < 0 {
		return nil, nil
	}
	d := x.data[in.metaData]
	if d.dsize > uint32(limit) {
		return nil, fmt.Errorf("%d bytes (more than %d) in the node at %#x", d.dsize, limit, in.metaOff)
	}
	b := make([]byte, d.dsize)
	if err := x.decode(d, b); err != nil {
		return nil, err
	}
	return b, nil
}

// decode decompresses data node d into dst (len(dst) == d.dsize).
func (x *jffs2Extractor) decode(d jffs2Data, dst []byte) error {
	if x.budget < int64(d.dsize) {
		x.budget = -1
		return formatErr("jffs2", d.off-jffs2InodeHdr, "decompression budget of the chunk exhausted (nodes decompressed over and over)", firmware.ErrLimit)
	}
	x.budget -= int64(d.dsize)
	if cap(x.cbuf) < int(d.csize) {
		x.cbuf = make([]byte, d.csize)
	}
	src := x.cbuf[:d.csize]
	if _, err := x.src.ReadAt(src, d.off); err != nil {
		return formatErr("jffs2", d.off, "reading node data", err)
	}
	if err := jffs2Decompress(d.compr, dst, src); err != nil {
		return formatErr("jffs2", d.off-jffs2InodeHdr, "data node", err)
	}
	return nil
}

// report adds the counted problems to the chunk's warnings.
func (x *jffs2Extractor) report() {
	for _, c := range []struct {
		c   *jffs2Count
		msg string
	}{
		{&x.badCRC, "nodes with a bad CRC skipped"},
		{&x.malformed, "malformed nodes skipped"},
		{&x.undecodable, "data nodes that could not be decompressed (their ranges read as zeros)"},
		{&x.overflow, "nodes not indexed"},
		{&x.ignored, "extended-attribute nodes ignored"},
	} {
		if c.c.n > 0 {
			x.warn("%d %s (first at %#x: %s)", c.c.n, c.msg, c.c.first, c.c.what)
		}
	}
	if x.obsolete.n > 0 {
		x.warn("%d nodes marked obsolete skipped (first at %#x)", x.obsolete.n, x.obsolete.first)
	}
	// Directory entries in directories the walk never reached, and inodes
	// with data that no name leads to (deleted files whose nodes the
	// garbage collector has not erased yet).
	lost := 0
	for k, e := range x.ents {
		if e.ino != 0 && !x.dirs[k.pino] {
			lost++
		}
	}
	if lost > 0 {
		x.warn("%d directory entries in directories unreachable from the root: not extracted", lost)
	}
	orphans := 0
	for ino := range x.inos {
		if ino != jffs2RootIno && !x.named[ino] {
			orphans++
		}
	}
	if orphans > 0 {
		x.warn("%d inodes that no directory entry names (deleted or orphaned): not extracted", orphans)
	}
}

// jffs2Seg is a range of a file read from one data node (node >= 0, at
// offset start-node.start of its data) or zeros (node < 0).
type jffs2Seg struct {
	start, end uint64
	node       int32
}

// segments computes which node supplies each byte of a file of the given
// size: the highest version among the data nodes covering it (the later
// node on flash among equal versions). It sweeps the node boundaries with a
// heap of the covering nodes: O(n log n) for n nodes, whatever they overlap.
func (x *jffs2Extractor) segments(nodes []int32, size uint64) []jffs2Seg {
	byStart := slices.Clone(nodes)
	slices.SortFunc(byStart, func(a, b int32) int { return cmp.Compare(x.data[a].start, x.data[b].start) })
	points := make([]uint64, 0, 2*len(nodes)+2)
	points = append(points, 0, size)
	for _, i := range nodes {
		d := x.data[i]
		points = append(points, min(uint64(d.start), size), min(uint64(d.start)+uint64(d.dsize), size))
	}
	slices.Sort(points)
	points = slices.Compact(points)
	h := &jffs2Heap{x: x}
	var segs []jffs2Seg
	next := 0
	for i := 0; i+1 < len(points); i++ {
		lo, hi := points[i], points[i+1]
		if lo >= size {
			break
		}
		for next < len(byStart) && uint64(x.data[byStart[next]].start) <= lo {
			heap.Push(h, byStart[next])
			next++
		}
		for h.Len() > 0 && x.end(h.nodes[0]) <= lo {
			heap.Pop(h)
		}
		node := int32(-1)
		if h.Len() > 0 {
			node = h.nodes[0]
		}
		if n := len(segs); n > 0 && segs[n-1].node == node && segs[n-1].end == lo {
			segs[n-1].end = hi
			continue
		}
		segs = append(segs, jffs2Seg{start: lo, end: hi, node: node})
	}
	return segs
}

func (x *jffs2Extractor) end(i int32) uint64 {
	return uint64(x.data[i].start) + uint64(x.data[i].dsize)
}

// jffs2Heap is a max-heap of data nodes by (version, position on flash).
type jffs2Heap struct {
	x     *jffs2Extractor
	nodes []int32
}

func (h *jffs2Heap) Len() int { return len(h.nodes) }
func (h *jffs2Heap) Less(i, j int) bool {
	a, b := h.x.data[h.nodes[i]], h.x.data[h.nodes[j]]
	if a.version != b.version {
		return a.version > b.version
	}
	return a.off > b.off
}
func (h *jffs2Heap) Swap(i, j int) { h.nodes[i], h.nodes[j] = h.nodes[j], h.nodes[i] }
func (h *jffs2Heap) Push(v any)    { h.nodes = append(h.nodes, v.(int32)) }
func (h *jffs2Heap) Pop() any {
	v := h.nodes[len(h.nodes)-1]
	h.nodes = h.nodes[:len(h.nodes)-1]
	return v
}

// jffs2File reads a regular file's content from its segments.
type jffs2File struct {
	x     *jffs2Extractor
	name  string
	segs  []jffs2Seg
	size  int64
	pos   uint64
	i     int
	cache [jffs2CacheNodes]jffs2Cached // most recently used first
}

type jffs2Cached struct {
	node int32
	data []byte
}

// open prepares the reader of a regular file: its size is the latest
// node's isize, cut where the chunk's allowance of unbacked zeros ends.
func (x *jffs2Extractor) open(ino uint32, in *jffs2Ino, name string) *jffs2File {
	size := uint64(in.isize)
	segs := x.segments(in.data, size)
	for i, s := range segs {
		if s.node >= 0 && x.data[s.node].compr != jffs2ComprZero {
			continue
		}
		n := int64(s.end - s.start)
		if n > x.zeros {
			x.warn("%s: inode %d: %d bytes of holes or zero nodes at %d (isize %d) pass the chunk's allowance of zeros; cut at %d",
				name, ino, n, s.start, in.isize, s.start)
			size, segs = s.start, segs[:i]
			break
		}
		x.zeros -= n
	}
	f := &jffs2File{x: x, name: name, segs: segs, size: int64(size)}
	for i := range f.cache {
		f.cache[i].node = -1
	}
	return f
}

func (f *jffs2File) Read(p []byte) (int, error) {
	for f.i < len(f.segs) && f.pos >= f.segs[f.i].end {
		f.i++
	}
	if f.i >= len(f.segs) {
		return 0, io.EOF
	}
	s := f.segs[f.i]
	n := int(min(uint64(len(p)), s.end-f.pos))
	if s.node < 0 || f.x.data[s.node].compr == jffs2ComprZero {
		clear(p[:n])
	} else {
		data := f.nodeData(s.node)
		d := f.x.data[s.node]
		copy(p[:n], data[f.pos-uint64(d.start):])
	}
	f.pos += uint64(n)
	return n, nil
}

// nodeData returns the decompressed data of node i, from the cache when it
// is there. A node that cannot be decoded reads as zeros, counted.
func (f *jffs2File) nodeData(i int32) []byte {
	c := &f.cache
	for k := range c {
		if c[k].node == i {
			// Move to the front: the least recently used is evicted.
			hit := c[k]
			copy(c[1:k+1], c[:k])
			c[0] = hit
			return hit.data
		}
	}
	last := c[len(c)-1]
	copy(c[1:], c[:len(c)-1])
	d := f.x.data[i]
	if cap(last.data) < int(d.dsize) {
		last.data = make([]byte, d.dsize)
	}
	last.node, last.data = i, last.data[:d.dsize]
	c[0] = last
	if err := f.x.decode(d, last.data); err != nil {
		clear(last.data)
		f.x.undecodable.add(d.off-jffs2InodeHdr, fmt.Sprintf("%s: %v", f.name, strings.TrimPrefix(err.Error(), "jffs2: ")))
	}
	return last.data
}

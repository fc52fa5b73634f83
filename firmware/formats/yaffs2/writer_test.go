package yaffs2

import (
	"bytes"
	"encoding/binary"
)

// yWriter builds YAFFS2 images for the tests, following the on-disk layout
// in the package comment (yaffs_guts.h yaffs_obj_hdr, yaffs_packedtags2.h
// yaffs_packed_tags2_tags_only) the way mkyaffs2image writes it: each
// object's header chunk (filled with 0xff, names NUL-padded) then its data
// chunks, the sequence number rising by one per erase block. Debian has no
// mkyaffs2image; the writer's little-endian output is checked against
// unyaffs in TestAgainstUnyaffs.
type yWriter struct {
	g         geometry
	extraTags bool // pack the kernel's extra header info into header tags
	perBlock  int  // chunks per erase block; 64 when 0
}

// yNode is one object. Parent 1 is the root.
type yNode struct {
	id, parent, typ uint32
	name            string
	mode, uid, gid  uint32
	mtime           uint32
	data            []byte // file content
	alias           string // symlink target
	equiv           uint32 // hard link target id
	rdev            uint32
	seqBump         uint32 // added to the block sequence number (rewrites)
	skipChunk       int    // a data chunk id not written (a lost chunk)
	size            uint64 // file size to record, when not len(data)
}

// yImage accumulates chunks.
type yImage struct {
	w   yWriter
	buf []byte
	n   int
	seq uint32
}

func (w yWriter) newImage() *yImage { return &yImage{w: w, seq: seqLowest} }

func (y *yImage) chunk(data []byte, t tags) int {
	g, bo := y.w.g, y.w.g.bo
	per := y.w.perBlock
	if per == 0 {
		per = 64
	}
	c := bytes.Repeat([]byte{0xff}, int(g.chunk()))
	copy(c, data)
	at := int(g.tagsAt())
	t.seq = y.seq + uint32(y.n/per) + t.seq
	bo.PutUint32(c[at:], t.seq)
	bo.PutUint32(c[at+4:], t.obj)
	bo.PutUint32(c[at+8:], t.chunk)
	bo.PutUint32(c[at+12:], t.n)
	y.buf = append(y.buf, c...)
	y.n++
	return y.n - 1
}

// header writes n's object header chunk and returns its index.
func (y *yImage) header(n *yNode) int {
	bo := y.w.g.bo
	b := bytes.Repeat([]byte{0xff}, y.w.g.dataLen())
	bo.PutUint32(b, n.typ)
	bo.PutUint32(b[4:], n.parent)
	copy(b[10:266], make([]byte, 256))
	copy(b[10:], n.name)
	if n.typ != typeLink {
		bo.PutUint32(b[268:], n.mode)
		bo.PutUint32(b[272:], n.uid)
		bo.PutUint32(b[276:], n.gid)
		for _, o := range []int{280, 284, 288} {
			bo.PutUint32(b[o:], n.mtime)
		}
	}
	if n.typ == typeFile {
		size := n.size
		if size == 0 {
			size = uint64(len(n.data))
		}
		bo.PutUint32(b[292:], uint32(size))
		bo.PutUint32(b[496:], uint32(size>>32))
	}
	if n.typ == typeLink {
		bo.PutUint32(b[296:], n.equiv)
	}
	if n.typ == typeSymlink {
		copy(b[300:460], make([]byte, 160))
		copy(b[300:], n.alias)
	}
	if n.typ == typeSpecial {
		bo.PutUint32(b[460:], n.rdev)
	}
	t := tags{seq: n.seqBump, obj: n.id}
	if y.w.extraTags {
		t.chunk = extraHeader | n.parent
		t.obj |= n.typ << 28
		switch n.typ {
		case typeFile:
			t.n = uint32(len(n.data))
		case typeLink:
			t.n = n.equiv
		}
	}
	return y.chunk(b, t)
}

// data writes n's data chunks, skipping chunk id skipChunk when non-zero.
func (y *yImage) data(n *yNode) {
	dl := y.w.g.dataLen()
	for i := 0; i*dl < len(n.data); i++ {
		if uint32(i+1) == uint32(n.skipChunk) {
			continue
		}
		part := n.data[i*dl : min(len(n.data), (i+1)*dl)]
		y.chunk(part, tags{seq: n.seqBump, obj: n.id, chunk: uint32(i + 1), n: uint32(len(part))})
	}
}

func (y *yImage) object(n *yNode) {
	y.header(n)
	if n.typ == typeFile {
		y.data(n)
	}
}

// build writes every node in order.
func (w yWriter) build(nodes []*yNode) []byte {
	y := w.newImage()
	for _, n := range nodes {
		y.object(n)
	}
	return y.buf
}

// yTree is the test tree: text, incompressible and multi-chunk files of odd
// sizes, an empty file, nested directories, a symlink, a hard link and
// (unless noDevices) a device node and a FIFO.
func yTree(noDevices bool) []*yNode {
	text := bytes.Repeat([]byte("admin:x:1000:1000:admin:/home/admin:/bin/sh\n"), 120) // 5280 bytes
	random := make([]byte, 9001)
	r := uint32(7)
	for i := range random {
		r = r*1103515245 + 12345
		random[i] = byte(r >> 16)
	}
	ns := []*yNode{
		{id: 257, parent: 1, typ: typeDir, name: "etc", mode: 0o40755, mtime: 1700000000},
		{id: 258, parent: 257, typ: typeFile, name: "passwd", mode: 0o100644, mtime: 1700000000, data: text[:45]},
		{id: 259, parent: 257, typ: typeFile, name: "big.txt", mode: 0o100600, uid: 1000, gid: 1000, mtime: 1700000001, data: text},
		{id: 260, parent: 257, typ: typeLink, name: "passwd-", equiv: 258},
		{id: 261, parent: 1, typ: typeDir, name: "data", mode: 0o40700, mtime: 1700000000},
		{id: 262, parent: 261, typ: typeFile, name: "random.bin", mode: 0o104755, mtime: 1700000000, data: random},
		{id: 263, parent: 261, typ: typeFile, name: "empty", mode: 0o100644, mtime: 1700000000},
		{id: 264, parent: 261, typ: typeDir, name: "deep", mode: 0o40755, mtime: 1700000000},
		{id: 265, parent: 264, typ: typeSymlink, name: "cfg", mode: 0o120777, mtime: 1700000000, alias: "../../etc/passwd"},
		{id: 266, parent: 264, typ: typeFile, name: "page.bin", mode: 0o100644, mtime: 1700000000, data: random[:4096]},
	}
	if !noDevices {
		ns = append(ns,
			&yNode{id: 267, parent: 1, typ: typeDir, name: "dev", mode: 0o40755, mtime: 1700000000},
			&yNode{id: 268, parent: 267, typ: typeSpecial, name: "console", mode: 0o20600, rdev: 5<<8 | 1, mtime: 1700000000},
			&yNode{id: 269, parent: 267, typ: typeSpecial, name: "fifo", mode: 0o10644, mtime: 1700000000},
		)
	}
	return ns
}

var (
	le = binary.ByteOrder(binary.LittleEndian)
	be = binary.ByteOrder(binary.BigEndian)
)

// writerVariants are the layouts the tests build.
func writerVariants() []yWriter {
	return []yWriter{
		{g: geometry{page: 2048, spare: 64, bo: le}},
		{g: geometry{page: 2048, spare: 64, tagOff: 2, bo: le}, extraTags: true},
		{g: geometry{page: 2048, spare: 64, bo: be}, extraTags: true},
		{g: geometry{page: 2048, spare: 128, bo: le}},
		{g: geometry{page: 4096, spare: 128, bo: le}, extraTags: true},
		{g: geometry{page: 4096, spare: 224, tagOff: 2, bo: be}},
		{g: geometry{page: 4096, spare: 224, bo: le}, perBlock: 4},
		{g: geometry{page: 2048, inband: true, bo: le}},
		{g: geometry{page: 4096, inband: true, bo: be}, extraTags: true},
	}
}

func (w yWriter) String() string {
	s := w.g.String()
	if w.extraTags {
		s += ", extra tags"
	}
	return s
}

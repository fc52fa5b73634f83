package flash

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strings"
)

// cramfsWriter builds cramfs images for the tests, following the Linux
// on-disk layout (include/uapi/linux/cramfs_fs.h, fs/cramfs/inode.c): the
// features mkfs.cramfs from util-linux cannot write (version 1 images,
// CRAMFS_FLAG_EXT_BLOCK_POINTERS with direct and uncompressed blocks) and
// the hostile images. Its plain version 2 output is checked against
// fsck.cramfs in TestCramfsWriterAgainstFsck, which is what makes the
// writer's reading of the layout trustworthy.
type cramfsWriter struct {
	bigEndian bool
	v1        bool // no CRAMFS_FLAG_FSID_VERSION_2: no size, no CRC
	holes     bool // zero pages become empty blocks (CRAMFS_FLAG_HOLES)
	ext       bool // CRAMFS_FLAG_EXT_BLOCK_POINTERS, the page layout cycles through pageKinds
}

// cwNode is one entry of the tree to write.
type cwNode struct {
	name     string
	mode     uint32 // Unix mode with type
	uid, gid int
	data     []byte // file content or symlink target
	rdev     uint32 // devices, Linux new_encode_dev
	children []*cwNode
}

func cwDir(name string, children ...*cwNode) *cwNode {
	return &cwNode{name: name, mode: 0o40755, children: children}
}
func cwFile(name string, data []byte) *cwNode { return &cwNode{name: name, mode: 0o100644, data: data} }

// pageKinds is the order in which ext images store pages: normal, direct
// compressed, direct uncompressed, uncompressed (not direct).
const pageKinds = 4

// cwLayout records where the writer put things, for hostile edits.
type cwLayout struct {
	inode map[string]int64 // path -> offset of its 12-byte inode
	data  map[string]int64 // path -> offset of its block pointers or dir entries
}

func (w cramfsWriter) bo() binary.ByteOrder {
	if w.bigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func (w cramfsWriter) inode(n *cwNode, size uint32, offset int64) []byte {
	b := make([]byte, 12)
	nameLen := uint32((len(n.name) + 3) / 4)
	off := uint32(offset / 4)
	if w.bigEndian {
		binary.BigEndian.PutUint32(b, n.mode<<16|uint32(n.uid))
		binary.BigEndian.PutUint32(b[4:], size<<8|uint32(n.gid))
		binary.BigEndian.PutUint32(b[8:], nameLen<<26|off)
	} else {
		binary.LittleEndian.PutUint32(b, n.mode|uint32(n.uid)<<16)
		binary.LittleEndian.PutUint32(b[4:], size|uint32(n.gid)<<24)
		binary.LittleEndian.PutUint32(b[8:], nameLen|off<<6)
	}
	return b
}

func zlibPage(p []byte) []byte {
	var b bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&b, zlib.BestCompression)
	zw.Write(p)
	zw.Close()
	return b.Bytes()
}

func align4(img []byte) []byte {
	for len(img)%4 != 0 {
		img = append(img, 0)
	}
	return img
}

// build writes the image of root (a directory) and returns it with its layout.
func (w cramfsWriter) build(root *cwNode) ([]byte, cwLayout) {
	b := &cwBuild{w: w, bo: w.bo(), img: make([]byte, cramfsSuperSize), dirSize: map[*cwNode]int{},
		lay: cwLayout{inode: map[string]int64{}, data: map[string]int64{}}}
	b.directories(root)
	b.writeNode("", root)
	b.img = align4(b.img)
	if !w.v1 {
		for len(b.img)%cramfsPage != 0 {
			b.img = append(b.img, 0)
		}
	}
	b.superblock()
	return b.img, b.lay
}

// cwBuild is the image being built by cramfsWriter.build.
type cwBuild struct {
	w       cramfsWriter
	bo      binary.ByteOrder
	img     []byte
	lay     cwLayout
	dirSize map[*cwNode]int
	blocks  int
	files   int
}

// directories writes the directories breadth-first, their entries sorted by
// name, right after the superblock (the inodes are filled in by writeNode).
func (b *cwBuild) directories(root *cwNode) {
	type dirAt struct {
		path string
		n    *cwNode
	}
	var dirs []dirAt
	queue := []dirAt{{"", root}}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		slices.SortFunc(d.n.children, func(a, b *cwNode) int { return strings.Compare(a.name, b.name) })
		dirs = append(dirs, d)
		for _, c := range d.n.children {
			if c.mode&0o170000 == 0o040000 {
				queue = append(queue, dirAt{strings.TrimPrefix(d.path+"/"+c.name, "/"), c})
			}
		}
	}
	for _, d := range dirs {
		b.lay.data[d.path] = int64(len(b.img))
		for _, c := range d.n.children {
			p := strings.TrimPrefix(d.path+"/"+c.name, "/")
			b.lay.inode[p] = int64(len(b.img))
			b.img = append(b.img, make([]byte, 12+(len(c.name)+3)/4*4)...)
			copy(b.img[len(b.img)-(len(c.name)+3)/4*4:], c.name)
		}
		b.dirSize[d.n] = int(int64(len(b.img)) - b.lay.data[d.path])
	}
}

// writeNode fills in the inode of n (at path p) and writes its data, then
// its children's.
func (b *cwBuild) writeNode(p string, n *cwNode) {
	b.files++
	var size uint32
	var off int64
	switch n.mode & 0o170000 {
	case 0o040000:
		size, off = uint32(b.dirSize[n]), b.lay.data[p]
		if size == 0 {
			off = 0
		}
	case 0o100000, 0o120000:
		size = uint32(len(n.data))
		if size > 0 {
			off = b.writeData(p, n.data)
		}
	default:
		size = n.rdev
	}
	if p != "" {
		copy(b.img[b.lay.inode[p]:], b.w.inode(n, size, off))
	} else {
		copy(b.img[64:], b.w.inode(n, size, off))
	}
	for _, c := range n.children {
		b.writeNode(strings.TrimPrefix(p+"/"+c.name, "/"), c)
	}
}

// writeData writes a file's block pointer table and its pages (with ext,
// cycling through the page kinds) and returns the table's offset.
func (b *cwBuild) writeData(p string, data []byte) int64 {
	b.img = align4(b.img)
	off := int64(len(b.img))
	b.lay.data[p] = off
	pages := (len(data) + cramfsPage - 1) / cramfsPage
	table := len(b.img)
	b.img = append(b.img, make([]byte, 4*pages)...)
	for i := 0; i < pages; i++ {
		b.blocks++
		page := data[i*cramfsPage : min(len(data), (i+1)*cramfsPage)]
		kind := 0
		if b.w.ext {
			kind = i % pageKinds
		}
		ptr := b.writePage(page, kind, i < pages-1) // appends: b.img may move
		b.bo.PutUint32(b.img[table+4*i:], ptr)
	}
	return off
}

// writePage writes one page of kind kind and returns its block pointer.
func (b *cwBuild) writePage(page []byte, kind int, notLast bool) uint32 {
	var ptr uint32
	switch {
	case b.w.holes && !bytes.ContainsFunc(page, func(r rune) bool { return r != 0 }) && kind == 0:
		ptr = uint32(len(b.img))
	case kind == 0:
		b.img = append(b.img, zlibPage(page)...)
		ptr = uint32(len(b.img))
	case kind == 1: // direct, compressed: u16 length first
		b.img = align4(b.img)
		ptr = uint32(len(b.img))>>2 | cramfsBlkDirect
		z := zlibPage(page)
		b.img = b.bo.(binary.AppendByteOrder).AppendUint16(b.img, uint16(len(z)))
		b.img = append(b.img, z...)
	case kind == 2: // direct, uncompressed: a whole page unless last
		b.img = align4(b.img)
		ptr = uint32(len(b.img))>>2 | cramfsBlkDirect | cramfsBlkUncompressed
		b.img = append(b.img, page...)
		if notLast {
			b.img = append(b.img, make([]byte, cramfsPage-len(page))...)
		}
	case kind == 3: // uncompressed, end pointer
		b.img = append(b.img, page...)
		ptr = uint32(len(b.img)) | cramfsBlkUncompressed
	}
	return ptr
}

// superblock writes the superblock (and, for version 2, the CRC).
func (b *cwBuild) superblock() {
	w, bo, img := b.w, b.bo, b.img
	flags := uint32(0)
	if !w.v1 {
		flags |= cramfsFSIDv2 | cramfsFlagSorted
	}
	if w.holes {
		flags |= cramfsFlagHoles
	}
	if w.ext {
		flags |= cramfsFlagExtPointers
	}
	bo.PutUint32(img[0:], cramfsMagic)
	copy(img[16:], cramfsSignature)
	if !w.v1 {
		bo.PutUint32(img[4:], uint32(len(img)))
		bo.PutUint32(img[8:], flags)
		bo.PutUint32(img[40:], uint32(b.blocks))
		bo.PutUint32(img[44:], uint32(b.files))
		copy(img[48:64], "cordon-writer")
		cramfsFixCRC(img, bo)
	} else {
		bo.PutUint32(img[8:], flags)
	}
}

// cramfsFixCRC recomputes the whole-image CRC of a version 2 image.
func cramfsFixCRC(img []byte, bo binary.ByteOrder) {
	clear(img[32:36])
	bo.PutUint32(img[32:], crc32.ChecksumIEEE(img))
}

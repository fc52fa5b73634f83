package squashfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/cordon-vms/cordon/firmware"
)

// Inode types.
const (
	tDir = iota + 1
	tFile
	tSymlink
	tBlock
	tChar
	tFIFO
	tSocket
	tLDir
	tLFile
	tLSymlink
	tLBlock
	tLChar
	tLFIFO
	tLSocket
)

const (
	maxCachedMeta = 512     // metadata blocks kept decompressed (4 MiB)
	maxSymlink    = 4096    // longest symlink target accepted
	maxDirEntries = 1 << 20 // entries accepted in one directory listing
	maxWorkers    = 4       // goroutines decoding the blocks of one file
	batchPerWork  = 2       // blocks decoded per worker per batch
)

// fsys reads one squashfs v4 image through a bounded io.ReaderAt.
type fsys struct {
	r    *io.SectionReader
	size int64
	sb   *superblock
	bo   binary.ByteOrder
	dec  decompressor

	meta  map[int64]metaBlock
	ids   []uint32
	uids  []uint32 // v3
	gids  []uint32 // v3
	block []byte   // scratch for compressed reads
	out   []byte   // decompressed data block, BlockSize

	// The last fragment block, kept because consecutive small files share it.
	fragPos  int64
	fragData []byte

	// Parallel decoding of the data blocks of large files (fillBatch).
	workers  int
	decs     []decompressor // one per worker; decs[0] is dec
	scratch  [][]byte       // compressed-data scratch per worker
	batchOut []byte         // batchSize × BlockSize decoded blocks
}

type metaBlock struct {
	data []byte
	next int64 // offset of the following metadata block
}

func newFS(r *io.SectionReader, sb *superblock) (*fsys, error) {
	probeCompressor(r, r.Size(), sb)
	dec, err := newDecompressor(sb, int(sb.BlockSize))
	if err != nil {
		return nil, formatErr(20, "compressor", err)
	}
	return &fsys{r: r, size: r.Size(), sb: sb, bo: sb.order(), dec: dec, meta: map[int64]metaBlock{}, fragPos: -1,
		workers: min(runtime.GOMAXPROCS(0), maxWorkers)}, nil
}

func (f *fsys) close() {
	for _, d := range f.decs[min(1, len(f.decs)):] {
		d.close()
	}
	f.dec.close()
}

// readMeta returns the decompressed metadata block at absolute offset pos.
func (f *fsys) readMeta(pos int64) (metaBlock, error) {
	if mb, ok := f.meta[pos]; ok {
		return mb, nil
	}
	if pos < 0 || pos+2 > f.size {
		return metaBlock{}, formatErr(pos, "metadata block outside the image", firmware.ErrTruncated)
	}
	var h [2]byte
	if _, err := f.r.ReadAt(h[:], pos); err != nil {
		return metaBlock{}, formatErr(pos, "reading metadata header", err)
	}
	hdr := f.bo.Uint16(h[:])
	n := int64(hdr & 0x7fff)
	// v3 images made with -check-data put a marker byte after the header.
	hl := int64(2)
	if f.sb.old() && f.sb.Flags&flagCheck != 0 {
		hl = 3
	}
	if n == 0 || pos+hl+n > f.size {
		return metaBlock{}, formatErr(pos, fmt.Sprintf("metadata block of %d bytes does not fit", n), firmware.ErrTruncated)
	}
	raw := make([]byte, n)
	if _, err := f.r.ReadAt(raw, pos+hl); err != nil {
		return metaBlock{}, formatErr(pos, "reading metadata block", err)
	}
	data := raw
	if hdr&0x8000 == 0 {
		out := make([]byte, metaSize)
		m, err := f.dec.decompress(out, raw)
		if err != nil {
			return metaBlock{}, formatErr(pos, "decompressing metadata block", err)
		}
		data = out[:m]
	} else if n > metaSize {
		return metaBlock{}, formatErr(pos, "uncompressed metadata block larger than 8 KiB", nil)
	}
	mb := metaBlock{data: data, next: pos + hl + n}
	if len(f.meta) >= maxCachedMeta {
		clear(f.meta)
	}
	f.meta[pos] = mb
	return mb, nil
}

// metaReader reads a byte stream that spans consecutive metadata blocks.
type metaReader struct {
	f   *fsys
	pos int64 // absolute offset of the current block
	off int   // offset inside the current block's data
	cur metaBlock
	end int64 // metadata may not be read at or past this offset
}

func (f *fsys) metaAt(table, limit int64, ref uint64) (*metaReader, error) {
	blk, off := int64(ref>>16), int(ref&0xffff)
	pos := table + blk
	if blk < 0 || pos >= limit {
		return nil, formatErr(pos, "metadata reference outside its table", firmware.ErrTruncated)
	}
	mb, err := f.readMeta(pos)
	if err != nil {
		return nil, err
	}
	if off > len(mb.data) {
		return nil, formatErr(pos, fmt.Sprintf("offset %d past the end of a %d-byte metadata block", off, len(mb.data)), nil)
	}
	return &metaReader{f: f, pos: pos, off: off, cur: mb, end: limit}, nil
}

func (m *metaReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if m.off >= len(m.cur.data) {
			if m.cur.next >= m.end {
				return n, formatErr(m.cur.next, "metadata runs past its table", firmware.ErrTruncated)
			}
			mb, err := m.f.readMeta(m.cur.next)
			if err != nil {
				return n, err
			}
			m.pos, m.cur, m.off = m.cur.next, mb, 0
			continue
		}
		c := copy(p[n:], m.cur.data[m.off:])
		m.off += c
		n += c
	}
	return n, nil
}

func (m *metaReader) bytes(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(m, b)
	return b, err
}

func (m *metaReader) u32() (uint32, error) {
	var b [4]byte
	_, err := io.ReadFull(m, b[:])
	return m.f.bo.Uint32(b[:]), err
}

// tableEntry reads entry i (of width w bytes) of an indexed table (id,
// fragment): an array of u64 pointers at start, each to a metadata block of
// 8 KiB of entries.
func (f *fsys) tableEntry(start int64, i uint64, w uint64) ([]byte, error) {
	return f.tableEntryPtr(start, i, w, 8)
}

// tableEntryPtr is tableEntry with index pointers of ptrSize bytes (4 in
// the 2.x fragment table, 8 elsewhere).
func (f *fsys) tableEntryPtr(start int64, i uint64, w uint64, ptrSize int64) ([]byte, error) {
	byteOff := i * w
	idx := int64(byteOff / metaSize)
	ptrPos := start + idx*ptrSize
	if ptrPos < 0 || ptrPos+ptrSize > f.size {
		return nil, formatErr(ptrPos, "table index outside the image", firmware.ErrTruncated)
	}
	var b [8]byte
	if _, err := f.r.ReadAt(b[:ptrSize], ptrPos); err != nil {
		return nil, formatErr(ptrPos, "reading table index", err)
	}
	blk := f.bo.Uint64(b[:])
	if ptrSize == 4 {
		blk = uint64(f.bo.Uint32(b[:]))
	}
	if blk >= uint64(f.size) {
		return nil, formatErr(ptrPos, "table block outside the image", firmware.ErrTruncated)
	}
	mr, err := f.metaAt(int64(blk), f.size, byteOff%metaSize)
	if err != nil {
		return nil, err
	}
	return mr.bytes(int(w))
}

func (f *fsys) id(i uint16) (int, error) {
	if f.sb.old() {
		return 0, formatErr(0, "id table lookup in a 3.x image", nil)
	}
	if i >= f.sb.IDs {
		return 0, formatErr(int64(f.sb.IDTable), fmt.Sprintf("id index %d out of %d", i, f.sb.IDs), nil)
	}
	if f.ids == nil {
		f.ids = make([]uint32, 0, f.sb.IDs)
	}
	for uint16(len(f.ids)) <= i {
		b, err := f.tableEntry(int64(f.sb.IDTable), uint64(len(f.ids)), 4)
		if err != nil {
			return 0, err
		}
		f.ids = append(f.ids, f.bo.Uint32(b))
	}
	return int(f.ids[i]), nil
}

// owner returns the uid and gid of in: through the id table (v4) or the
// uid and gid tables (v3, where gid index 255 means "same as the uid").
func (f *fsys) owner(in *inode) (uid, gid int, err error) {
	if !f.sb.old() {
		uid, err = f.id(in.uidIdx)
		if err != nil {
			return 0, 0, err
		}
		gid, err = f.id(in.gidIdx)
		return uid, gid, err
	}
	if f.uids == nil {
		if f.uids, err = f.u32Table(f.sb.UIDTable, f.sb.UIDs); err != nil {
			return 0, 0, err
		}
		if f.gids, err = f.u32Table(f.sb.GIDTable, f.sb.GIDs); err != nil {
			return 0, 0, err
		}
	}
	if int(in.uidIdx) >= len(f.uids) {
		return 0, 0, formatErr(int64(f.sb.UIDTable), fmt.Sprintf("uid index %d out of %d", in.uidIdx, len(f.uids)), nil)
	}
	uid = int(f.uids[in.uidIdx])
	switch {
	case in.gidIdx == 255:
		gid = uid
	case int(in.gidIdx) < len(f.gids):
		gid = int(f.gids[in.gidIdx])
	default:
		return uid, 0, formatErr(int64(f.sb.GIDTable), fmt.Sprintf("gid index %d out of %d", in.gidIdx, len(f.gids)), nil)
	}
	return uid, gid, nil
}

// u32Table reads n uncompressed u32 at pos (the v3 uid and gid tables).
func (f *fsys) u32Table(pos uint64, n uint16) ([]uint32, error) {
	b := make([]byte, 4*int(n))
	if _, err := f.r.ReadAt(b, int64(pos)); err != nil {
		return nil, formatErr(int64(pos), "reading uid/gid table", err)
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = f.bo.Uint32(b[4*i:])
	}
	return out, nil
}

type fragment struct {
	start uint64
	size  uint32
}

func (f *fsys) fragment(i uint32) (fragment, error) {
	if i >= f.sb.Fragments {
		return fragment{}, formatErr(int64(f.sb.FragmentTable), fmt.Sprintf("fragment %d out of %d", i, f.sb.Fragments), nil)
	}
	if f.sb.Major == 2 { // 8-byte entries (u32 start, u32 size), u32 index
		b, err := f.tableEntryPtr(int64(f.sb.FragmentTable), uint64(i), 8, 4)
		if err != nil {
			return fragment{}, err
		}
		return fragment{start: uint64(f.bo.Uint32(b)), size: f.bo.Uint32(b[4:])}, nil
	}
	b, err := f.tableEntry(int64(f.sb.FragmentTable), uint64(i), 16)
	if err != nil {
		return fragment{}, err
	}
	return fragment{start: f.bo.Uint64(b), size: f.bo.Uint32(b[8:])}, nil
}

// inode is the decoded part of an inode that extraction needs.
type inode struct {
	typ      uint16
	mode     uint16
	uidIdx   uint16
	gidIdx   uint16
	mtime    uint32
	number   uint32
	nlink    uint32
	size     uint64 // file size, directory listing size, symlink length
	start    uint64 // first data block (files) or directory block (dirs)
	offset   uint32 // offset inside the directory block
	frag     uint32
	fragOff  uint32
	target   string
	rdev     uint32
	blocks   *metaReader // positioned at the block size list (files)
	blockCnt uint64
}

func (i *inode) isDir() bool { return i.typ == tDir || i.typ == tLDir }

func (f *fsys) inode(ref uint64) (*inode, error) {
	mr, err := f.metaAt(int64(f.sb.InodeTable), int64(f.sb.DirTable), ref)
	if err != nil {
		return nil, err
	}
	at := int64(f.sb.InodeTable) + int64(ref>>16)
	switch f.sb.Major {
	case 3:
		return f.inode3(mr, at)
	case 2:
		return f.inode2(mr, at)
	case 1:
		return f.inode1(mr, at)
	}
	return f.inode4(mr, at)
}

// inodeSize4 is the size of a 4.x inode after its 16-byte header, by type
// (a symlink's target follows); 0 is an unknown type.
var inodeSize4 = [...]int{
	tDir: 16, tLDir: 24, tFile: 16, tLFile: 40, tSymlink: 8, tLSymlink: 8,
	tBlock: 8, tChar: 8, tLBlock: 8, tLChar: 8, tFIFO: 4, tSocket: 4, tLFIFO: 4, tLSocket: 4,
}

// inode4 reads a 4.x inode: the common header, then the fields of its type.
func (f *fsys) inode4(mr *metaReader, at int64) (*inode, error) {
	var h [16]byte
	if _, err := io.ReadFull(mr, h[:]); err != nil {
		return nil, formatErr(at, "reading inode header", err)
	}
	le := f.bo
	in := &inode{
		typ: le.Uint16(h[0:]), mode: le.Uint16(h[2:]), uidIdx: le.Uint16(h[4:]),
		gidIdx: le.Uint16(h[6:]), mtime: le.Uint32(h[8:]), number: le.Uint32(h[12:]),
	}
	if int(in.typ) >= len(inodeSize4) || inodeSize4[in.typ] == 0 {
		return nil, formatErr(at, fmt.Sprintf("unknown inode type %d", in.typ), nil)
	}
	rd := func(n int) ([]byte, error) {
		b, err := mr.bytes(n)
		if err != nil {
			return nil, formatErr(at, fmt.Sprintf("reading type %d inode", in.typ), err)
		}
		return b, nil
	}
	b, err := rd(inodeSize4[in.typ])
	if err != nil {
		return nil, err
	}
	switch in.typ {
	case tDir:
		in.start, in.nlink = uint64(le.Uint32(b[0:])), le.Uint32(b[4:])
		in.size, in.offset = uint64(le.Uint16(b[8:])), uint32(le.Uint16(b[10:]))
	case tLDir:
		in.nlink, in.size, in.start = le.Uint32(b[0:]), uint64(le.Uint32(b[4:])), uint64(le.Uint32(b[8:]))
		in.offset = uint32(le.Uint16(b[18:]))
	case tFile:
		in.start, in.frag, in.fragOff = uint64(le.Uint32(b[0:])), le.Uint32(b[4:]), le.Uint32(b[8:])
		in.size, in.nlink = uint64(le.Uint32(b[12:])), 1
	case tLFile:
		in.start, in.size = le.Uint64(b[0:]), le.Uint64(b[8:])
		in.nlink, in.frag, in.fragOff = le.Uint32(b[24:]), le.Uint32(b[28:]), le.Uint32(b[32:])
	case tSymlink, tLSymlink:
		in.nlink, in.size = le.Uint32(b[0:]), uint64(le.Uint32(b[4:]))
		if in.size > maxSymlink {
			return nil, formatErr(at, fmt.Sprintf("symlink target of %d bytes", in.size), nil)
		}
		t, err := rd(int(in.size))
		if err != nil {
			return nil, err
		}
		in.target = string(t)
	case tBlock, tChar, tLBlock, tLChar:
		in.nlink, in.rdev = le.Uint32(b[0:]), le.Uint32(b[4:])
	case tFIFO, tSocket, tLFIFO, tLSocket:
		in.nlink = le.Uint32(b[0:])
	}
	if in.typ == tFile || in.typ == tLFile {
		f.fileBlocks(in, mr)
	}
	return in, nil
}

// fileBlocks sets a regular file's block count (a tail that is not in a
// fragment takes a block of its own) and where its block list starts: mr,
// right after the inode, in every version.
func (f *fsys) fileBlocks(in *inode, mr *metaReader) {
	bs := uint64(f.sb.BlockSize)
	in.blockCnt = in.size / bs
	if in.frag == noFragment && in.size%bs != 0 {
		in.blockCnt++
	}
	in.blocks = mr
}

// dirEntry is one name in a directory listing.
type dirEntry struct {
	name string
	ref  uint64 // inode reference
	typ  uint16
}

// readDir returns the listing of directory inode in.
func (f *fsys) readDir(in *inode) ([]dirEntry, error) {
	remaining := int64(in.size) - 3 // the listing size counts 3 bytes more (but not in 1.0 and 2.x)
	if f.sb.Major <= 2 {
		remaining = int64(in.size)
	}
	if remaining <= 0 {
		return nil, nil
	}
	mr, err := f.metaAt(int64(f.sb.DirTable), f.size, in.start<<16|uint64(in.offset))
	if err != nil {
		return nil, err
	}
	at := int64(f.sb.DirTable) + int64(in.start)
	switch f.sb.Major {
	case 3:
		return f.readDirOld(mr, at, remaining, 9, 32, 5)
	case 2, 1: // 1.0 listings are 2.x's
		return f.readDirOld(mr, at, remaining, 4, 24, 3)
	}
	var out []dirEntry
	for remaining > 0 {
		var h [12]byte
		if remaining < 12 {
			return out, formatErr(at, "directory header truncated", firmware.ErrTruncated)
		}
		if _, err := io.ReadFull(mr, h[:]); err != nil {
			return out, formatErr(at, "reading directory header", err)
		}
		remaining -= 12
		count := f.bo.Uint32(h[0:]) + 1
		start := f.bo.Uint32(h[4:])
		if count > 256 {
			return out, formatErr(at, fmt.Sprintf("directory header with %d entries (at most 256)", count), nil)
		}
		for range count {
			var e [8]byte
			if remaining < 8 {
				return out, formatErr(at, "directory entry truncated", firmware.ErrTruncated)
			}
			if _, err := io.ReadFull(mr, e[:]); err != nil {
				return out, formatErr(at, "reading directory entry", err)
			}
			nameLen := int64(f.bo.Uint16(e[6:])) + 1
			remaining -= 8 + nameLen
			if remaining < 0 {
				return out, formatErr(at, "directory entry name truncated", firmware.ErrTruncated)
			}
			name, err := mr.bytes(int(nameLen))
			if err != nil {
				return out, formatErr(at, "reading directory entry name", err)
			}
			out = append(out, dirEntry{
				name: string(name),
				ref:  uint64(start)<<16 | uint64(f.bo.Uint16(e[0:])),
				typ:  f.bo.Uint16(e[4:]),
			})
			if len(out) > maxDirEntries {
				return out, formatErr(at, "directory listing too long", nil)
			}
		}
	}
	return out, nil
}

// fileReader streams a regular file's content block by block.
type fileReader struct {
	f      *fsys
	in     *inode
	next   uint64 // next block index
	pos    int64  // absolute offset of the next data block
	left   uint64 // bytes still to deliver
	buf    []byte // current decompressed block
	off    int
	fragOK bool

	ready [][]byte // blocks decoded ahead by fillBatch, in order
	err   error    // error met by fillBatch after the ready blocks
}

// open returns a reader of in's content. Only one file is read at a time: the
// readers of one fsys share its block buffers.
func (f *fsys) open(in *inode) *fileReader {
	if f.out == nil {
		f.out = make([]byte, f.sb.BlockSize)
	}
	return &fileReader{f: f, in: in, pos: int64(in.start), left: in.size}
}

var errSize = errors.New("block size word out of range")

// readBlock reads and decompresses the data block described by word at pos
// into dst, which bounds its size.
func (f *fsys) readBlock(pos int64, word uint32, dst []byte) ([]byte, error) {
	if cap(f.block) < int(f.sb.BlockSize) {
		f.block = make([]byte, f.sb.BlockSize)
	}
	return f.decodeBlock(f.dec, f.block, pos, word, dst)
}

// decodeBlock is readBlock with the decompressor and the compressed-data
// scratch (BlockSize bytes) given, so parallel workers can each use their own.
func (f *fsys) decodeBlock(dec decompressor, scratch []byte, pos int64, word uint32, dst []byte) ([]byte, error) {
	n := int64(word &^ (1 << 24))
	stored := word&(1<<24) != 0
	if n > int64(f.sb.BlockSize) || word>>25 != 0 {
		return nil, formatErr(pos, fmt.Sprintf("data block size word %#x", word), errSize)
	}
	if pos < 0 || pos+n > f.size {
		return nil, formatErr(pos, "data block outside the image", firmware.ErrTruncated)
	}
	raw := scratch[:n]
	if _, err := f.r.ReadAt(raw, pos); err != nil {
		return nil, formatErr(pos, "reading data block", err)
	}
	if stored {
		if int(n) > len(dst) {
			return nil, formatErr(pos, "stored block larger than expected", errSize)
		}
		return dst[:copy(dst, raw)], nil
	}
	m, err := dec.decompress(dst[:len(dst):len(dst)], raw)
	if err != nil {
		return nil, formatErr(pos, "decompressing data block", err)
	}
	return dst[:m], nil
}

func (fr *fileReader) Read(p []byte) (int, error) {
	for fr.off >= len(fr.buf) {
		if fr.left == 0 {
			return 0, io.EOF
		}
		if err := fr.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, fr.buf[fr.off:])
	fr.off += n
	return n, nil
}

func (fr *fileReader) fill() error {
	f, in := fr.f, fr.in
	bs := uint64(f.sb.BlockSize)
	want := min(bs, fr.left)
	fr.off = 0
	if len(fr.ready) > 0 {
		fr.buf, fr.ready = fr.ready[0], fr.ready[1:]
		fr.left -= uint64(len(fr.buf))
		return nil
	}
	if fr.err != nil {
		return fr.err
	}
	if f.workers > 1 && in.blockCnt-fr.next >= 2 {
		return fr.fillBatch()
	}
	if fr.next < in.blockCnt {
		word, err := f.blockWord(in.blocks)
		if err != nil {
			return formatErr(int64(f.sb.InodeTable), "reading block list", err)
		}
		fr.next++
		if word == 0 { // sparse block
			clear(f.out[:want])
			fr.buf = f.out[:want]
		} else {
			b, err := f.readBlock(fr.pos, word, f.out[:want])
			if err != nil {
				return err
			}
			fr.pos += int64(word &^ (1 << 24))
			if uint64(len(b)) != want {
				return formatErr(fr.pos, fmt.Sprintf("data block holds %d bytes, want %d", len(b), want), firmware.ErrTruncated)
			}
			fr.buf = b
		}
		fr.left -= want
		return nil
	}
	// The tail lives in a fragment block.
	if in.frag == noFragment || fr.fragOK {
		return formatErr(int64(in.start), "file content missing", firmware.ErrTruncated)
	}
	fr.fragOK = true
	frag, err := f.fragment(in.frag)
	if err != nil {
		return err
	}
	if frag.start > uint64(f.size) {
		return formatErr(int64(f.sb.FragmentTable), "fragment outside the image", firmware.ErrTruncated)
	}
	if f.fragPos != int64(frag.start) {
		if f.fragData == nil {
			f.fragData = make([]byte, bs)
		}
		f.fragPos = -1
		b, err := f.readBlock(int64(frag.start), frag.size, f.fragData[:bs])
		if err != nil {
			return err
		}
		f.fragData = b
		f.fragPos = int64(frag.start)
	}
	b := f.fragData
	if uint64(in.fragOff)+want > uint64(len(b)) {
		return formatErr(int64(frag.start), "fragment shorter than the file tail", firmware.ErrTruncated)
	}
	fr.buf = b[in.fragOff : uint64(in.fragOff)+want]
	fr.left -= want
	return nil
}

// batchDecoders makes, on the first batch, each worker's decompressor and
// scratch block, and the output slots of a batch.
func (f *fsys) batchDecoders() error {
	if f.decs != nil {
		return nil
	}
	bs := uint64(f.sb.BlockSize)
	decs := []decompressor{f.dec}
	for range f.workers - 1 {
		d, err := newDecompressor(f.sb, int(bs))
		if err != nil {
			return formatErr(20, "compressor", err)
		}
		decs = append(decs, d)
	}
	f.decs = decs // set only when complete: a failed first batch fails the next one the same way
	for range f.workers {
		f.scratch = append(f.scratch, make([]byte, bs))
	}
	f.batchOut = make([]byte, uint64(f.workers*batchPerWork)*bs)
	return nil
}

// fillBatch decodes the next blocks of a large file in parallel, each worker
// with its own decompressor, and queues them in order. An error stops the
// queue at the failing block; it is returned once the blocks before it are read.
func (fr *fileReader) fillBatch() error {
	f, in := fr.f, fr.in
	bs := uint64(f.sb.BlockSize)
	n := int(min(in.blockCnt-fr.next, uint64(f.workers*batchPerWork)))
	if err := f.batchDecoders(); err != nil {
		return err
	}
	type job struct {
		pos  int64
		word uint32
		want uint64
		out  []byte
		err  error
	}
	jobs := make([]job, 0, n)
	left := fr.left
	for i := range n {
		word, err := f.blockWord(in.blocks)
		if err != nil {
			fr.err = formatErr(int64(f.sb.InodeTable), "reading block list", err)
			break
		}
		want := min(bs, left)
		left -= want
		// The slot's capacity ends where the next slot begins: decoders
		// may use the spare capacity of dst (zstd decodes in place and
		// over-copies past len), and a slot that reached into its
		// neighbour let one worker overwrite the block another had just
		// decoded (issue 11: zstd images wrong from the second block on).
		lo, hi := uint64(i)*bs, uint64(i)*bs+want
		jobs = append(jobs, job{pos: fr.pos, word: word, want: want, out: f.batchOut[lo:hi:hi]})
		fr.pos += int64(word &^ (1 << 24))
		fr.next++
	}
	var wg sync.WaitGroup
	for w := range min(f.workers, len(jobs)) {
		wg.Go(func() {
			for i := w; i < len(jobs); i += f.workers {
				j := &jobs[i]
				if j.word == 0 { // sparse block
					clear(j.out)
					continue
				}
				b, err := f.decodeBlock(f.decs[w], f.scratch[w], j.pos, j.word, j.out)
				if err == nil && uint64(len(b)) != j.want {
					err = formatErr(j.pos, fmt.Sprintf("data block holds %d bytes, want %d", len(b), j.want), firmware.ErrTruncated)
				}
				j.err = err
			}
		})
	}
	wg.Wait()
	fr.ready = fr.ready[:0]
	for i := range jobs {
		if jobs[i].err != nil {
			fr.err = jobs[i].err
			break
		}
		fr.ready = append(fr.ready, jobs[i].out)
	}
	if len(fr.ready) == 0 {
		if fr.err == nil {
			fr.err = formatErr(int64(in.start), "file content missing", firmware.ErrTruncated)
		}
		return fr.err
	}
	fr.buf, fr.ready = fr.ready[0], fr.ready[1:]
	fr.left -= uint64(len(fr.buf))
	return nil
}

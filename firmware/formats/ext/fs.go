package ext

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
)

const (
	rootIno = 2

	flagIndex      = 0x1000
	flagExtents    = 0x80000
	flagInlineData = 0x10000000
	flagEncrypt    = 0x800

	maxExtentDepth = 5
	maxRuns        = 1 << 20 // block runs kept for one file
	maxSymlink     = 4096
	maxDirEntries  = 1 << 20 // entries accepted in one directory
)

// fsys reads one ext2/3/4 filesystem through a bounded io.ReaderAt.
type fsys struct {
	r      *io.SectionReader
	sb     *superblock
	tables []uint64 // inode table block of each group
	buf    []byte   // scratch block
}

func newFS(r *io.SectionReader, sb *superblock) (*fsys, error) {
	f := &fsys{r: r, sb: sb, buf: make([]byte, sb.blockSize)}
	perBlock := uint64(sb.blockSize / sb.descSize)
	n := sb.groups
	descBlocks := (n + perBlock - 1) / perBlock
	// Only descriptor blocks inside the image can be read: that bounds the
	// table however many groups a (truncated or hostile) superblock claims.
	avail := uint64(r.Size() / sb.blockSize)
	f.tables = make([]uint64, 0, min(n, avail*perBlock))
	raw := make([]byte, sb.blockSize)
	for d := range descBlocks {
		// Descriptor blocks sit after the superblock, except with meta_bg from
		// first_meta_bg on: there each meta group (perBlock groups) keeps its
		// block in its first group, after that group's superblock backup.
		blk := uint64(sb.firstDataBlock) + 1 + d
		if sb.incompat&incompatMetaBG != 0 && d >= uint64(sb.firstMetaBG) {
			g0 := d * perBlock
			blk = uint64(sb.firstDataBlock) + g0*uint64(sb.blocksPerGroup)
			if sb.hasSuper(g0) {
				blk++
			}
		}
		if blk >= sb.blocks || blk >= avail {
			if sb.truncated && len(f.tables) > 0 {
				break // the groups past the cut have no descriptors: their inodes read as errors
			}
			return nil, formatErr(0, fmt.Sprintf("group descriptor block %d outside the filesystem", blk), firmware.ErrTruncated)
		}
		at := int64(blk) * sb.blockSize
		if _, err := r.ReadAt(raw, at); err != nil {
			return nil, formatErr(at, "reading group descriptors", firmware.ErrTruncated)
		}
		for i := uint64(0); i < perBlock && uint64(len(f.tables)) < n; i++ {
			desc := raw[int64(i)*sb.descSize:]
			t := uint64(binary.LittleEndian.Uint32(desc[8:]))
			if sb.descSize >= 64 {
				t |= uint64(binary.LittleEndian.Uint32(desc[0x28:])) << 32
			}
			f.tables = append(f.tables, t)
		}
	}
	return f, nil
}

// inode is the decoded part of an inode that extraction needs.
type inode struct {
	num      uint32
	mode     uint16
	uid, gid int
	size     uint64
	links    uint16
	mtime    uint32
	flags    uint32
	iblock   [60]byte
	blocks   uint64 // i_blocks (512-byte units unless huge_file says otherwise)
	fileACL  uint64
	at       int64  // byte offset of the inode
	extra    []byte // bytes after the first 128, read for inline-data inodes only
}

func (i *inode) isDir() bool { return i.mode&fmtutil.IFMT == fmtutil.IFDIR }

func (f *fsys) inode(n uint32) (*inode, error) {
	sb := f.sb
	if n == 0 || uint64(n) > sb.inodes {
		return nil, formatErr(0, fmt.Sprintf("inode %d out of range", n), nil)
	}
	g := uint64(n-1) / uint64(sb.inodesPerGrp)
	idx := uint64(n-1) % uint64(sb.inodesPerGrp)
	if g >= uint64(len(f.tables)) {
		return nil, formatErr(0, fmt.Sprintf("inode %d in group %d without a descriptor", n, g), nil)
	}
	tbl := f.tables[g]
	if tbl >= sb.blocks {
		return nil, formatErr(0, fmt.Sprintf("inode table of group %d at block %d", g, tbl), firmware.ErrTruncated)
	}
	at := int64(tbl)*sb.blockSize + int64(idx)*sb.inodeSize
	if at+128 > f.r.Size() {
		return nil, formatErr(at, fmt.Sprintf("inode %d outside the filesystem", n), firmware.ErrTruncated)
	}
	var b [128]byte
	if _, err := f.r.ReadAt(b[:], at); err != nil {
		return nil, formatErr(at, "reading inode", firmware.ErrTruncated)
	}
	le := binary.LittleEndian
	in := &inode{
		num:     n,
		mode:    le.Uint16(b[0:]),
		uid:     int(le.Uint16(b[2:])) | int(le.Uint16(b[120:]))<<16,
		gid:     int(le.Uint16(b[24:])) | int(le.Uint16(b[122:]))<<16,
		size:    uint64(le.Uint32(b[4:])) | uint64(le.Uint32(b[108:]))<<32,
		mtime:   le.Uint32(b[16:]),
		links:   le.Uint16(b[26:]),
		blocks:  uint64(le.Uint32(b[28:])) | uint64(le.Uint16(b[116:]))<<32,
		flags:   le.Uint32(b[32:]),
		fileACL: uint64(le.Uint32(b[104:])) | uint64(le.Uint16(b[118:]))<<32,
		at:      at,
	}
	copy(in.iblock[:], b[40:100])
	if in.flags&flagInlineData != 0 && sb.inodeSize > 128 {
		in.extra = make([]byte, sb.inodeSize-128)
		if _, err := f.r.ReadAt(in.extra, at+128); err != nil {
			return nil, formatErr(at, "reading inode extra fields", firmware.ErrTruncated)
		}
	}
	return in, nil
}

// inlineData returns the content of an inode with the inline_data flag: the
// 60 bytes of i_block, then the value of its in-inode "system.data"
// extended attribute, cut to the inode's size.
func (in *inode) inlineData() ([]byte, error) {
	data := slices.Clone(in.iblock[:])
	if len(in.extra) >= 4 {
		le := binary.LittleEndian
		isize := int(le.Uint16(in.extra[0:]))
		xa := isize // the attribute area follows the extra fields, which i_extra_isize counts from byte 128
		if isize >= 4 && xa+4 <= len(in.extra) && le.Uint32(in.extra[xa:]) == 0xEA020000 {
			first := xa + 4
			for e := first; e+16 <= len(in.extra); {
				nameLen, index := int(in.extra[e]), in.extra[e+1]
				if nameLen == 0 && index == 0 {
					break
				}
				valOff, valSize := int(le.Uint16(in.extra[e+2:])), int(le.Uint32(in.extra[e+8:]))
				if e+16+nameLen > len(in.extra) {
					break
				}
				if index == 7 && string(in.extra[e+16:e+16+nameLen]) == "data" {
					if first+valOff+valSize > len(in.extra) || valOff < 0 {
						return nil, formatErr(in.at, "inline data attribute outside the inode", nil)
					}
					data = append(data, in.extra[first+valOff:first+valOff+valSize]...)
					break
				}
				e += (16 + nameLen + 3) &^ 3
			}
		}
	}
	if in.size > uint64(len(data)) {
		return nil, formatErr(in.at, fmt.Sprintf("inline data holds %d bytes, the inode says %d", len(data), in.size), firmware.ErrTruncated)
	}
	return data[:in.size], nil
}

// run maps count logical blocks starting at logical to physical blocks.
type run struct {
	logical, physical, count uint64
}

// blockMap returns the sorted block runs of in's content. Holes are absent.
func (f *fsys) blockMap(in *inode) ([]run, error) {
	nblocks := (in.size + uint64(f.sb.blockSize) - 1) / uint64(f.sb.blockSize)
	var runs []run
	add := func(logical, physical, count uint64) error {
		if physical == 0 && count > 0 {
			return nil // hole
		}
		if physical >= f.sb.blocks || count > f.sb.blocks-physical {
			return formatErr(in.at, fmt.Sprintf("inode %d: blocks %d+%d outside the filesystem", in.num, physical, count), firmware.ErrTruncated)
		}
		if n := len(runs); n > 0 && runs[n-1].logical+runs[n-1].count == logical && runs[n-1].physical+runs[n-1].count == physical {
			runs[n-1].count += count
			return nil
		}
		if len(runs) >= maxRuns {
			return formatErr(in.at, fmt.Sprintf("inode %d: more than %d block runs", in.num, maxRuns), nil)
		}
		runs = append(runs, run{logical, physical, count})
		return nil
	}
	if in.flags&flagExtents != 0 {
		if err := f.extents(in, in.iblock[:], maxExtentDepth, add); err != nil {
			return runs, err
		}
		slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.logical, b.logical) })
		return runs, nil
	}
	// Classic map: 12 direct blocks, then single, double, triple indirect.
	le := binary.LittleEndian
	var logical uint64
	for i := 0; i < 12 && logical < nblocks; i++ {
		if err := add(logical, uint64(le.Uint32(in.iblock[4*i:])), 1); err != nil {
			return runs, err
		}
		logical++
	}
	for level := 1; level <= 3 && logical < nblocks; level++ {
		ptr := uint64(le.Uint32(in.iblock[48+4*(level-1):]))
		if err := f.indirect(in, ptr, level, &logical, nblocks, add); err != nil {
			return runs, err
		}
	}
	return runs, nil
}

// indirect walks an indirect block of the given level, advancing *logical.
func (f *fsys) indirect(in *inode, ptr uint64, level int, logical *uint64, nblocks uint64, add func(l, p, c uint64) error) error {
	per := uint64(f.sb.blockSize / 4)
	span := uint64(1)
	for range level - 1 {
		span *= per
	}
	if ptr == 0 { // a hole covering the whole subtree
		*logical += span * per
		return nil
	}
	blk, err := f.readBlock(ptr)
	if err != nil {
		return err
	}
	ptrs := make([]uint32, per)
	for i := range ptrs {
		ptrs[i] = binary.LittleEndian.Uint32(blk[4*i:])
	}
	for _, p := range ptrs {
		if *logical >= nblocks {
			return nil
		}
		if level == 1 {
			if err := add(*logical, uint64(p), 1); err != nil {
				return err
			}
			*logical++
			continue
		}
		if err := f.indirect(in, uint64(p), level-1, logical, nblocks, add); err != nil {
			return err
		}
	}
	return nil
}

// extents walks an extent tree node.
func (f *fsys) extents(in *inode, node []byte, depthLeft int, add func(l, p, c uint64) error) error {
	le := binary.LittleEndian
	if len(node) < 12 || le.Uint16(node[0:]) != 0xF30A {
		return formatErr(in.at, fmt.Sprintf("inode %d: bad extent header", in.num), nil)
	}
	entries, depth := int(le.Uint16(node[2:])), int(le.Uint16(node[6:]))
	if 12+12*entries > len(node) {
		return formatErr(in.at, fmt.Sprintf("inode %d: %d extents do not fit their node", in.num, entries), nil)
	}
	if depth > depthLeft {
		return formatErr(in.at, fmt.Sprintf("inode %d: extent tree deeper than %d", in.num, maxExtentDepth), nil)
	}
	for i := range entries {
		e := node[12+12*i:]
		if depth == 0 {
			length := uint64(le.Uint16(e[4:]))
			uninit := length > 32768
			if uninit {
				length -= 32768
			}
			start := uint64(le.Uint32(e[8:])) | uint64(le.Uint16(e[6:]))<<32
			if uninit { // allocated but unwritten: reads as zeros
				continue
			}
			if err := add(uint64(le.Uint32(e[0:])), start, length); err != nil {
				return err
			}
			continue
		}
		child := uint64(le.Uint32(e[4:])) | uint64(le.Uint16(e[8:]))<<32
		blk, err := f.readBlock(child)
		if err != nil {
			return err
		}
		if err := f.extents(in, slices.Clone(blk), depth-1, add); err != nil {
			return err
		}
	}
	return nil
}

// readBlock reads block n into the shared scratch buffer.
func (f *fsys) readBlock(n uint64) ([]byte, error) {
	if n == 0 || n >= f.sb.blocks {
		return nil, formatErr(0, fmt.Sprintf("block %d outside the filesystem", n), firmware.ErrTruncated)
	}
	off := int64(n) * f.sb.blockSize
	if _, err := f.r.ReadAt(f.buf, off); err != nil {
		return nil, formatErr(off, "reading block", firmware.ErrTruncated)
	}
	return f.buf, nil
}

// fileReader streams size bytes of content mapped by runs; holes read as zeros.
type fileReader struct {
	f    *fsys
	runs []run
	pos  uint64 // byte position in the file
	size uint64
}

func (fr *fileReader) Read(p []byte) (int, error) {
	if fr.pos >= fr.size {
		return 0, io.EOF
	}
	if uint64(len(p)) > fr.size-fr.pos {
		p = p[:fr.size-fr.pos]
	}
	bs := uint64(fr.f.sb.blockSize)
	lb := fr.pos / bs
	// Drop runs that end before the current block.
	for len(fr.runs) > 0 && fr.runs[0].logical+fr.runs[0].count <= lb {
		fr.runs = fr.runs[1:]
	}
	if len(fr.runs) == 0 || fr.runs[0].logical > lb {
		// A hole up to the next run (or the end).
		end := fr.size
		if len(fr.runs) > 0 {
			end = min(end, fr.runs[0].logical*bs)
		}
		n := min(uint64(len(p)), end-fr.pos)
		clear(p[:n])
		fr.pos += n
		return int(n), nil
	}
	r := fr.runs[0]
	off := (r.physical+lb-r.logical)*bs + fr.pos%bs
	end := (r.logical + r.count) * bs
	n := min(uint64(len(p)), end-fr.pos)
	m, err := fr.f.r.ReadAt(p[:n], int64(off))
	fr.pos += uint64(m)
	if err != nil && m < int(n) {
		return m, formatErr(int64(off), "reading file data", firmware.ErrTruncated)
	}
	return m, nil
}

// content returns a reader of in's data: block-mapped, or inline in the inode
// for fast symlinks.
func (f *fsys) content(in *inode) (*fileReader, error) {
	runs, err := f.blockMap(in)
	if err != nil {
		return nil, err
	}
	return &fileReader{f: f, runs: runs, size: in.size}, nil
}

// symlink returns in's target.
func (f *fsys) symlink(in *inode) (string, error) {
	if in.size > maxSymlink {
		return "", formatErr(in.at, fmt.Sprintf("symlink target of %d bytes", in.size), nil)
	}
	if in.flags&flagInlineData != 0 {
		b, err := in.inlineData()
		return string(b), err
	}
	if f.fastSymlink(in) {
		if in.size > 60 {
			return "", formatErr(in.at, "inline symlink longer than 60 bytes", nil)
		}
		return string(in.iblock[:in.size]), nil
	}
	fr, err := f.content(in)
	if err != nil {
		return "", err
	}
	b := make([]byte, in.size)
	if _, err := io.ReadFull(fr, b); err != nil {
		return "", err
	}
	return string(b), nil
}

func (f *fsys) fastSymlink(in *inode) bool {
	if in.flags&flagExtents != 0 {
		return false
	}
	ea := uint64(0)
	if in.fileACL != 0 {
		ea = uint64(f.sb.blockSize / 512)
	}
	return in.blocks <= ea && in.size < 60
}

// dirent is one directory entry.
type dirent struct {
	ino  uint32
	name string
}

// readDir lists directory in, reading its blocks linearly (hashed-tree
// interior blocks look like empty entries and are skipped).
func (f *fsys) readDir(in *inode, warn func(string)) ([]dirent, error) {
	if in.flags&flagEncrypt != 0 {
		return nil, formatErr(in.at, fmt.Sprintf("directory inode %d is encrypted", in.num), nil)
	}
	if in.size > uint64(f.r.Size()) {
		return nil, formatErr(in.at, fmt.Sprintf("directory of %d bytes in a %d-byte filesystem", in.size, f.r.Size()), nil)
	}
	next, err := f.dirBlocks(in)
	if err != nil {
		return nil, err
	}
	var out []dirent
	for b := 0; ; b++ {
		blk, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, err
		}
		if out, err = f.dirBlock(in, b, blk, out, warn); err != nil {
			return out, err
		}
	}
	return out, nil
}

// dirBlocks returns a function that yields the directory's blocks in order,
// then io.EOF.
func (f *fsys) dirBlocks(in *inode) (func() ([]byte, error), error) {
	if in.flags&flagInlineData != 0 {
		// Inline: the parent's inode number (4 bytes), then entries filling
		// the rest of i_block, then entries filling the attribute value.
		data, err := in.inlineData()
		if err != nil {
			return nil, err
		}
		if len(data) < 4 {
			return nil, formatErr(in.at, "inline directory shorter than 4 bytes", nil)
		}
		parts := [][]byte{data[4:min(60, len(data))]}
		if len(data) > 60 {
			parts = append(parts, data[60:])
		}
		return func() ([]byte, error) {
			if len(parts) == 0 {
				return nil, io.EOF
			}
			p := parts[0]
			parts = parts[1:]
			return p, nil
		}, nil
	}
	fr, err := f.content(in)
	if err != nil {
		return nil, err
	}
	bs := int(f.sb.blockSize)
	blk := make([]byte, bs)
	left := in.size
	return func() ([]byte, error) {
		if left == 0 {
			return nil, io.EOF
		}
		left -= min(left, uint64(bs))
		_, err := io.ReadFull(fr, blk)
		return blk, err
	}, nil
}

// dirBlock appends the entries of directory block b (but . and ..) to out;
// a bad entry ends the block with a warning.
func (f *fsys) dirBlock(in *inode, b int, blk []byte, out []dirent, warn func(string)) ([]dirent, error) {
	le := binary.LittleEndian
	bs := len(blk)
	for off := 0; off+8 <= bs; {
		ino := le.Uint32(blk[off:])
		recLen := int(le.Uint16(blk[off+4:]))
		nameLen := int(blk[off+6])
		if f.sb.incompat&incompatFiletype == 0 {
			nameLen = int(le.Uint16(blk[off+6:]))
		}
		if recLen < 8 || recLen%4 != 0 || off+recLen > bs || 8+nameLen > recLen {
			warn(fmt.Sprintf("ext: directory inode %d block %d: bad entry at %d", in.num, b, off))
			break
		}
		if ino != 0 && nameLen > 0 {
			name := string(blk[off+8 : off+8+nameLen])
			if name != "." && name != ".." {
				out = append(out, dirent{ino: ino, name: name})
			}
			if len(out) > maxDirEntries {
				return out, formatErr(in.at, fmt.Sprintf("directory inode %d holds more than %d entries", in.num, maxDirEntries), nil)
			}
		}
		off += recLen
	}
	return out, nil
}

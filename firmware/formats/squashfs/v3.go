package squashfs

import (
	"fmt"
	"io"
)

// The 3.x layout (squashfs_fs.h of squashfs-tools 3.x and Linux 2.6) packs
// its inodes and directory entries as C bit fields. A little-endian image
// allocates them from the least significant bit of each byte onwards, a
// big-endian one from the most significant: bits reads either, given the
// field's bit position and width (the positions of the SQUASHFS_SWAP_*
// macros).
type bits3 struct {
	b   []byte
	big bool
}

func (r bits3) get(pos, width int) uint64 {
	var v uint64
	for i := range width {
		p := pos + i
		bit := uint64(r.b[p/8]>>(p%8)) & 1
		if r.big {
			bit = uint64(r.b[p/8]>>(7-p%8)) & 1
			v = v<<1 | bit
		} else {
			v |= bit << i
		}
	}
	return v
}

// Fixed sizes of the 3.x inodes, by type (bytes before a symlink target or
// a block list).
var inodeSize3 = map[uint16]int{
	tDir: 28, tFile: 32, tSymlink: 18, tBlock: 18, tChar: 18,
	tFIFO: 16, tSocket: 16, tLDir: 31, tLFile: 40,
}

func (f *fsys) inode3(mr *metaReader, at int64) (*inode, error) {
	var buf [40]byte
	if _, err := io.ReadFull(mr, buf[:12]); err != nil {
		return nil, formatErr(at, "reading inode header", err)
	}
	r := bits3{b: buf[:], big: f.sb.Big}
	in := &inode{
		typ: uint16(r.get(0, 4)), mode: uint16(r.get(4, 12)),
		uidIdx: uint16(r.get(16, 8)), gidIdx: uint16(r.get(24, 8)),
		mtime: uint32(r.get(32, 32)), number: uint32(r.get(64, 32)),
	}
	size, ok := inodeSize3[in.typ]
	if !ok {
		return nil, formatErr(at, fmt.Sprintf("unknown inode type %d", in.typ), nil)
	}
	if _, err := io.ReadFull(mr, buf[12:size]); err != nil {
		return nil, formatErr(at, fmt.Sprintf("reading type %d inode", in.typ), err)
	}
	switch in.typ {
	case tDir:
		in.nlink, in.size = uint32(r.get(96, 32)), r.get(128, 19)
		in.offset, in.start = uint32(r.get(147, 13)), r.get(160, 32)
	case tLDir:
		// The directory index that follows is not needed: listings are
		// read from their start.
		in.nlink, in.size = uint32(r.get(96, 32)), r.get(128, 27)
		in.offset, in.start = uint32(r.get(155, 13)), r.get(168, 32)
	case tFile:
		in.start, in.frag, in.fragOff = r.get(96, 64), uint32(r.get(160, 32)), uint32(r.get(192, 32))
		in.size, in.nlink = r.get(224, 32), 1
	case tLFile:
		in.nlink, in.start = uint32(r.get(96, 32)), r.get(128, 64)
		in.frag, in.fragOff, in.size = uint32(r.get(192, 32)), uint32(r.get(224, 32)), r.get(256, 64)
	case tSymlink:
		in.nlink, in.size = uint32(r.get(96, 32)), r.get(128, 16)
		if err := in.readTarget(mr, at); err != nil {
			return nil, err
		}
	case tBlock, tChar:
		in.nlink, in.rdev = uint32(r.get(96, 32)), uint32(r.get(128, 16))
	case tFIFO, tSocket:
		in.nlink = uint32(r.get(96, 32))
	}
	if in.typ == tFile || in.typ == tLFile {
		f.fileBlocks(in, mr)
	}
	return in, nil
}

package squashfs

import (
	"fmt"
	"io"
)

// The 1.0 layout (squashfs_fs.h of the Linux 2.4 squashfs 1.0 patches, the
// _1 structures of squashfs_compat.h): bit-field inodes like 2.x, but a
// 3-byte base header with 4-bit uid and gid indexes. The uid index takes
// its high bits from the inode type: types 1-5 repeat in three banks
// (type 6-10 is type 1-5 with uid index +16, 11-15 with +32), and type 0
// is an IPC inode (FIFO or socket, named by a 4-bit type field) whose
// 4-bit offset field holds the uid index's high bits. Gid index 15 means
// "same as the uid". Directories and listings are 2.x's; regular files
// have no fragments and 16-bit block size words (bit 15: stored).
const (
	maxUIDs1   = 48
	maxGIDs1   = 15
	types1     = 5 // SQUASHFS_TYPES
	ipcType1   = 0 // SQUASHFS_IPC_TYPE
	gidSameAs1 = 15
)

// Fixed sizes of the 1.0 inodes, by type.
var inodeSize1 = map[uint16]int{tDir: 14, tFile: 15, tSymlink: 5, tBlock: 5, tChar: 5, tFIFO: 4, tSocket: 4}

func (f *fsys) inode1(mr *metaReader, at int64) (*inode, error) {
	var buf [15]byte
	if _, err := io.ReadFull(mr, buf[:3]); err != nil {
		return nil, formatErr(at, "reading inode header", err)
	}
	r := bits3{b: buf[:], big: f.sb.Big}
	raw := uint16(r.get(0, 4))
	in := &inode{mode: uint16(r.get(4, 12)), gidIdx: uint16(r.get(20, 4)), mtime: f.sb.ModTime, nlink: 1}
	uidLow := uint16(r.get(16, 4))
	if in.gidIdx == gidSameAs1 {
		in.gidIdx = 255 // owner's "gid is the uid"
	}
	if raw == ipcType1 {
		if _, err := io.ReadFull(mr, buf[3:4]); err != nil {
			return nil, formatErr(at, "reading IPC inode", err)
		}
		in.typ = uint16(r.get(24, 4))
		if in.typ != tFIFO && in.typ != tSocket {
			return nil, formatErr(at, fmt.Sprintf("IPC inode of type %d", in.typ), nil)
		}
		in.uidIdx = uint16(r.get(28, 4))*16 + uidLow
		return in, nil
	}
	in.typ = (raw-1)%types1 + 1
	in.uidIdx = (raw-1)/types1*16 + uidLow
	size := inodeSize1[in.typ]
	if _, err := io.ReadFull(mr, buf[3:size]); err != nil {
		return nil, formatErr(at, fmt.Sprintf("reading type %d inode", in.typ), err)
	}
	switch in.typ {
	case tDir:
		in.size, in.offset = r.get(24, 19), uint32(r.get(43, 13))
		in.mtime, in.start = uint32(r.get(56, 32)), r.get(88, 24)
	case tFile:
		in.mtime, in.start, in.size = uint32(r.get(24, 32)), r.get(56, 32), r.get(88, 32)
		in.frag = noFragment
		f.fileBlocks(in, mr)
	case tSymlink:
		in.size = r.get(24, 16)
		if err := in.readTarget(mr, at); err != nil {
			return nil, err
		}
	case tBlock, tChar:
		in.rdev = uint32(r.get(24, 16))
	}
	return in, nil
}

// blockWord reads the next entry of a file's block list as a 4.0 size word
// (bit 24: stored). A 1.0 list holds 16-bit words (bit 15: stored; a size
// of 0 means 32 KiB, the largest 1.0 block), never a sparse block.
func (f *fsys) blockWord(mr *metaReader) (uint32, error) {
	if f.sb.Major != 1 {
		return mr.u32()
	}
	var b [2]byte
	if _, err := io.ReadFull(mr, b[:]); err != nil {
		return 0, err
	}
	w := f.bo.Uint16(b[:])
	n := uint32(w &^ 0x8000)
	if n == 0 {
		n = 0x8000
	}
	if w&0x8000 != 0 {
		n |= 1 << 24
	}
	return n, nil
}

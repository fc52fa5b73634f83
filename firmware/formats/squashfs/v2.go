package squashfs

import (
	"fmt"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

// The 2.x layout (squashfs_fs.h of squashfs-tools 2.x, the _2 structures of
// squashfs_compat.h): bit-field inodes like 3.x, but a 4-byte base header
// without mtime or inode number (regular files and directories carry their
// own mtime, the others take the filesystem's), no link counts, directory
// listings without the 3 extra bytes, 4-byte directory headers, 3-byte
// entries, and 8-byte fragment entries behind a 32-bit index.

// Fixed sizes of the 2.x inodes, by type.
var inodeSize2 = map[uint16]int{
	tDir: 15, tFile: 24, tSymlink: 6, tBlock: 6, tChar: 6,
	tFIFO: 4, tSocket: 4, tLDir: 18,
}

func (f *fsys) inode2(mr *metaReader, at int64) (*inode, error) {
	var buf [24]byte
	if _, err := io.ReadFull(mr, buf[:4]); err != nil {
		return nil, formatErr(at, "reading inode header", err)
	}
	r := bits3{b: buf[:], big: f.sb.Big}
	in := &inode{
		typ: uint16(r.get(0, 4)), mode: uint16(r.get(4, 12)),
		uidIdx: uint16(r.get(16, 8)), gidIdx: uint16(r.get(24, 8)),
		mtime: f.sb.ModTime, nlink: 1,
	}
	size, ok := inodeSize2[in.typ]
	if !ok {
		return nil, formatErr(at, fmt.Sprintf("unknown inode type %d", in.typ), nil)
	}
	if _, err := io.ReadFull(mr, buf[4:size]); err != nil {
		return nil, formatErr(at, fmt.Sprintf("reading type %d inode", in.typ), err)
	}
	switch in.typ {
	case tDir:
		in.size, in.offset = r.get(32, 19), uint32(r.get(51, 13))
		in.mtime, in.start = uint32(r.get(64, 32)), r.get(96, 24)
	case tLDir:
		in.size, in.offset = r.get(32, 27), uint32(r.get(59, 13))
		in.mtime, in.start = uint32(r.get(72, 32)), r.get(104, 24)
	case tFile:
		in.mtime, in.start = uint32(r.get(32, 32)), r.get(64, 32)
		in.frag, in.fragOff, in.size = uint32(r.get(96, 32)), uint32(r.get(128, 32)), r.get(160, 32)
	case tSymlink:
		in.size = r.get(32, 16)
		if err := in.readTarget(mr, at); err != nil {
			return nil, err
		}
	case tBlock, tChar:
		in.rdev = uint32(r.get(32, 16))
	}
	if in.typ == tFile {
		f.fileBlocks(in, mr)
	}
	return in, nil
}

// readDirOld reads a 1.x, 2.x or 3.x directory listing: headers of hdrSize
// bytes (count:8, then start_block of startBits; 3.x adds inode_number:32)
// and entries of entrySize bytes (offset:13, type:3, size:8; 3.x adds
// inode_number:16) followed by size+1 name bytes. 1.x and 2.x: 4-byte
// headers with a 24-bit start block and 3-byte entries; 3.x: 9, 32 and 5.
func (f *fsys) readDirOld(mr *metaReader, at, remaining int64, hdrSize, startBits, entrySize int) ([]dirEntry, error) {
	var out []dirEntry
	var h [9]byte
	var e [5]byte
	for remaining > 0 {
		if remaining < int64(hdrSize) {
			return out, formatErr(at, "directory header truncated", firmware.ErrTruncated)
		}
		if _, err := io.ReadFull(mr, h[:hdrSize]); err != nil {
			return out, formatErr(at, "reading directory header", err)
		}
		remaining -= int64(hdrSize)
		hr := bits3{b: h[:hdrSize], big: f.sb.Big}
		count, start := hr.get(0, 8)+1, hr.get(8, startBits)
		for range count {
			if remaining < int64(entrySize) {
				return out, formatErr(at, "directory entry truncated", firmware.ErrTruncated)
			}
			if _, err := io.ReadFull(mr, e[:entrySize]); err != nil {
				return out, formatErr(at, "reading directory entry", err)
			}
			er := bits3{b: e[:entrySize], big: f.sb.Big}
			nameLen := int64(er.get(16, 8)) + 1
			remaining -= int64(entrySize) + nameLen
			if remaining < 0 {
				return out, formatErr(at, "directory entry name truncated", firmware.ErrTruncated)
			}
			name, err := mr.bytes(int(nameLen))
			if err != nil {
				return out, formatErr(at, "reading directory entry name", err)
			}
			out = append(out, dirEntry{name: string(name), ref: start<<16 | er.get(0, 13), typ: uint16(er.get(13, 3))})
			if len(out) > maxDirEntries {
				return out, formatErr(at, "directory listing too long", nil)
			}
		}
	}
	return out, nil
}

// readTarget reads a 1.x-3.x symlink's target (in.size bytes, at most
// maxSymlink), which follows its inode in mr.
func (in *inode) readTarget(mr *metaReader, at int64) error {
	if in.size > maxSymlink {
		return formatErr(at, fmt.Sprintf("symlink target of %d bytes", in.size), nil)
	}
	t, err := mr.bytes(int(in.size))
	if err != nil {
		return formatErr(at, "reading symlink target", err)
	}
	in.target = string(t)
	return nil
}

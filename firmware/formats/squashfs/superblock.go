package squashfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	superSize    = 96   // v4 superblock
	superSize3   = 119  // v3 superblock (packed)
	superSize2   = 63   // v2 superblock (packed)
	superSize1   = 51   // v1 superblock (packed)
	metaSize     = 8192 // uncompressed size of a metadata block
	noFragment   = 0xFFFFFFFF
	minBlockSize = 4 << 10
	maxBlockSize = 1 << 20
)

// superblock holds a v4 or v3 superblock (either byte order), normalised:
// the v3 table offsets go to the same fields as v4's, and the v3 uid/gid
// tables to UIDTable/GIDTable.
type superblock struct {
	Magic         uint32
	Inodes        uint32
	ModTime       uint32
	BlockSize     uint32
	Fragments     uint32
	Compressor    uint16
	BlockLog      uint16
	Flags         uint16
	IDs           uint16
	Major, Minor  uint16
	RootInode     uint64
	BytesUsed     uint64
	IDTable       uint64
	XattrTable    uint64
	InodeTable    uint64
	DirTable      uint64
	FragmentTable uint64
	ExportTable   uint64

	// Big is set for big-endian images (magic "sqsh"), whose every field,
	// and every bit field in v3 structures, is stored most significant first.
	Big bool
	// V3 only: uid and gid tables (plain arrays of u32) and their lengths.
	UIDTable, GIDTable uint64
	UIDs, GIDs         uint16
	// Lzma describes the LZMA variant found in the image (LZMA images only).
	Lzma lzmaVariant
}

// order returns the byte order of the image.
func (sb *superblock) order() binary.ByteOrder {
	if sb.Big {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// compression names the compressor for reports.
func (sb *superblock) compression() string {
	if sb.Compressor == compLZMA {
		return sb.Lzma.String()
	}
	return compNames[sb.Compressor]
}

// old reports whether the image uses a 1.0, 2.x or 3.x layout (uid/gid tables,
// optional marker bytes, no compressor field).
func (sb *superblock) old() bool { return sb.Major < 4 }

// endian names the byte order for reports.
func (sb *superblock) endian() string {
	if sb.Big {
		return "big-endian"
	}
	return "little-endian"
}

// Magics of the squashfs-lzma patches (SQUASHFS_MAGIC_LZMA, 0x71736873) as
// they appear on disk, little- and big-endian.
const (
	lzmaMagicLE = "shsq"
	lzmaMagicBE = "qshs"
)

// v3 superblock flags.
const flagCheck = 1 << 2 // SQUASHFS_CHECK: metadata blocks carry a marker byte

func formatErr(off int64, msg string, err error) error {
	return &firmware.FormatError{Format: Name, Off: off, Msg: msg, Err: err}
}

func notFormat(off int64, msg string) error {
	return formatErr(off, msg, firmware.ErrNotFormat)
}

// readSuper reads and checks a 4.0, 3.x, 2.x or 1.0 superblock at off, in either
// byte order. It returns firmware.ErrNotFormat (wrapped) for anything that
// is not a plausible image of those versions, and firmware.ErrTruncated for
// a plausible one cut short.
func readSuper(r io.ReaderAt, off, size int64) (*superblock, error) {
	if size-off < superSize {
		return nil, notFormat(0, "too short for a superblock")
	}
	var b [superSize3]byte
	n, err := r.ReadAt(b[:min(int64(len(b)), size-off)], off)
	if n < superSize {
		return nil, formatErr(0, "reading superblock", err)
	}
	var sb superblock
	switch m := string(b[:4]); m {
	case "hsqs", lzmaMagicLE:
	case "sqsh", lzmaMagicBE:
		sb.Big = true
	default:
		return nil, notFormat(0, "bad magic")
	}
	bo := sb.order()
	sb.Magic = binary.LittleEndian.Uint32(b[0:])
	sb.Major, sb.Minor = bo.Uint16(b[28:]), bo.Uint16(b[30:])
	var got *superblock
	switch {
	case sb.Major == 4 && sb.Minor == 0:
		got, err = readSuper4(&sb, b[:superSize], size-off)
	case sb.Major == 3 && n >= superSize3:
		got, err = readSuper3(&sb, b[:], size-off)
	case sb.Major == 2 && n >= superSize2:
		got, err = readSuper2(&sb, b[:], size-off)
	case sb.Major == 1 && sb.Minor == 0 && n >= superSize1:
		got, err = readSuper1(&sb, b[:], size-off)
	default:
		return nil, notFormat(28, fmt.Sprintf("version %d.%d is not 1.0, 2.x, 3.x or 4.0", sb.Major, sb.Minor))
	}
	if err != nil {
		return nil, err
	}
	// A superblock that passed every check but promises more bytes than
	// there are (and no more than any flash holds): a squashfs cut short,
	// reported as such (a gap in report.json) rather than as ErrNotFormat.
	if avail := uint64(size - off); got.BytesUsed > avail {
		if got.BytesUsed > maxCutShort {
			return nil, notFormat(40, fmt.Sprintf("bytes_used %d outside the %d bytes available", got.BytesUsed, avail))
		}
		return nil, formatErr(40, fmt.Sprintf("cut short: bytes_used %d, %d bytes available", got.BytesUsed, avail), firmware.ErrTruncated)
	}
	return got, nil
}

// maxCutShort is the largest bytes_used a superblock beyond the end of the
// data may claim and still be reported as a squashfs cut short.
const maxCutShort = 64 << 30

func readSuper4(sb *superblock, b []byte, avail int64) (*superblock, error) {
	bo := sb.order()
	if string(b[:4]) != "hsqs" && string(b[:4]) != "sqsh" {
		return nil, notFormat(0, "bad magic")
	}
	sb.Inodes = bo.Uint32(b[4:])
	sb.ModTime = bo.Uint32(b[8:])
	sb.BlockSize = bo.Uint32(b[12:])
	sb.Fragments = bo.Uint32(b[16:])
	sb.Compressor = bo.Uint16(b[20:])
	sb.BlockLog = bo.Uint16(b[22:])
	sb.Flags = bo.Uint16(b[24:])
	sb.IDs = bo.Uint16(b[26:])
	sb.RootInode = bo.Uint64(b[32:])
	sb.BytesUsed = bo.Uint64(b[40:])
	sb.IDTable = bo.Uint64(b[48:])
	sb.XattrTable = bo.Uint64(b[56:])
	sb.InodeTable = bo.Uint64(b[64:])
	sb.DirTable = bo.Uint64(b[72:])
	sb.FragmentTable = bo.Uint64(b[80:])
	sb.ExportTable = bo.Uint64(b[88:])
	if err := sb.checkCommon(avail); err != nil {
		return nil, err
	}
	if _, ok := compNames[sb.Compressor]; !ok {
		return nil, notFormat(20, fmt.Sprintf("unknown compressor id %d", sb.Compressor))
	}
	if sb.IDTable < sb.DirTable || sb.IDTable+8 > sb.BytesUsed {
		return nil, notFormat(48, "id table offset inconsistent")
	}
	if sb.IDs == 0 {
		return nil, notFormat(26, "id count is zero")
	}
	return sb, nil
}

// readSuper3 decodes the packed 3.x superblock (squashfs_super_block_3:
// every field byte-aligned, so plain reads in the image's byte order).
func readSuper3(sb *superblock, b []byte, avail int64) (*superblock, error) {
	bo := sb.order()
	sb.Inodes = bo.Uint32(b[4:])
	sb.BlockLog = bo.Uint16(b[34:])
	sb.Flags = uint16(b[36])
	sb.UIDs, sb.GIDs = uint16(b[37]), uint16(b[38])
	sb.ModTime = bo.Uint32(b[39:])
	sb.RootInode = bo.Uint64(b[43:])
	sb.BlockSize = bo.Uint32(b[51:])
	sb.Fragments = bo.Uint32(b[55:])
	sb.BytesUsed = bo.Uint64(b[63:])
	sb.UIDTable = bo.Uint64(b[71:])
	sb.GIDTable = bo.Uint64(b[79:])
	sb.InodeTable = bo.Uint64(b[87:])
	sb.DirTable = bo.Uint64(b[95:])
	sb.FragmentTable = bo.Uint64(b[103:])
	sb.ExportTable = bo.Uint64(b[111:])
	return sb.checkOld(b, avail, superSize, 71)
}

// readHead12 decodes what 1.0 and 2.x superblocks share, up to the root
// inode: counts, 32-bit table offsets, block log, flags, id counts, time.
func (sb *superblock) readHead12(b []byte) {
	bo := sb.order()
	sb.Inodes = bo.Uint32(b[4:])
	sb.BytesUsed = uint64(bo.Uint32(b[8:]))
	sb.UIDTable = uint64(bo.Uint32(b[12:]))
	sb.GIDTable = uint64(bo.Uint32(b[16:]))
	sb.InodeTable = uint64(bo.Uint32(b[20:]))
	sb.DirTable = uint64(bo.Uint32(b[24:]))
	sb.BlockLog = bo.Uint16(b[34:])
	sb.Flags = uint16(b[36])
	sb.UIDs, sb.GIDs = uint16(b[37]), uint16(b[38])
	sb.ModTime = bo.Uint32(b[39:])
	sb.RootInode = bo.Uint64(b[43:])
}

// readSuper2 decodes a 2.x superblock: the 3.x layout up to the 32-bit
// fragment table offset, with 32-bit table offsets.
func readSuper2(sb *superblock, b []byte, avail int64) (*superblock, error) {
	sb.readHead12(b)
	bo := sb.order()
	sb.BlockSize = bo.Uint32(b[51:])
	sb.Fragments = bo.Uint32(b[55:])
	sb.FragmentTable = uint64(bo.Uint32(b[59:]))
	return sb.checkOld(b, avail, superSize2, 12)
}

// readSuper1 decodes a 1.0 superblock (squashfs_super_block of the Linux
// 2.4 squashfs 1.0 patches): the 2.x layout up to the root inode, with the
// block size in the 16-bit field at 32 and no fragments. 1.0 allows at most
// 48 uids and 15 gids (the inodes' 4-bit indexes, extended by the type).
func readSuper1(sb *superblock, b []byte, avail int64) (*superblock, error) {
	sb.readHead12(b)
	sb.BlockSize = uint32(sb.order().Uint16(b[32:]))
	if sb.UIDs > maxUIDs1 || sb.GIDs > maxGIDs1 {
		return nil, notFormat(37, fmt.Sprintf("%d uids and %d gids (1.0 allows %d and %d)", sb.UIDs, sb.GIDs, maxUIDs1, maxGIDs1))
	}
	return sb.checkOld(b, avail, superSize1, 12)
}

// checkOld finishes a 1.0, 2.x or 3.x superblock: the compressor (zlib, or
// LZMA under the squashfs-lzma magics), the checks all versions share, and
// the uid and gid tables (plain u32 arrays), which must lie inside the
// image after the hdr-byte superblock. uidOff is where the uid table's
// offset field sits, for the message.
func (sb *superblock) checkOld(b []byte, avail int64, hdr uint64, uidOff int64) (*superblock, error) {
	sb.Compressor = compGZIP
	if m := string(b[:4]); m == lzmaMagicLE || m == lzmaMagicBE {
		sb.Compressor = compLZMA
	}
	if err := sb.checkCommon(avail); err != nil {
		return nil, err
	}
	if sb.UIDs == 0 {
		return nil, notFormat(37, "uid count is zero")
	}
	if sb.UIDTable < hdr || sb.UIDTable+4*uint64(sb.UIDs) > sb.BytesUsed ||
		(sb.GIDs > 0 && (sb.GIDTable < hdr || sb.GIDTable+4*uint64(sb.GIDs) > sb.BytesUsed)) {
		return nil, notFormat(uidOff, "uid/gid table offsets inconsistent")
	}
	return sb, nil
}

// headerSize is the size of the superblock of the image's version.
func (sb *superblock) headerSize() uint64 {
	switch sb.Major {
	case 1:
		return superSize1
	case 2:
		return superSize2
	case 3:
		return superSize3
	}
	return superSize
}

// checkCommon checks what v4 and v3 share: block size, size, table order.
func (sb *superblock) checkCommon(avail int64) error {
	if sb.BlockSize < minBlockSize || sb.BlockSize > maxBlockSize || bits.OnesCount32(sb.BlockSize) != 1 {
		return notFormat(12, fmt.Sprintf("block size %d out of range", sb.BlockSize))
	}
	if 1<<sb.BlockLog != sb.BlockSize {
		return notFormat(22, "block log does not match block size")
	}
	if sb.BytesUsed < sb.headerSize() {
		return notFormat(40, fmt.Sprintf("bytes_used %d is smaller than a superblock", sb.BytesUsed))
	}
	// The tables follow each other in a fixed order; each must start inside the image.
	if !(sb.headerSize() <= sb.InodeTable && sb.InodeTable <= sb.DirTable && sb.DirTable < sb.BytesUsed) {
		return notFormat(64, "inode/directory table offsets inconsistent")
	}
	if sb.RootInode>>16 > sb.DirTable-sb.InodeTable {
		return notFormat(32, "root inode reference outside the inode table")
	}
	return nil
}

package squashfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	superSize    = 96
	metaSize     = 8192 // uncompressed size of a metadata block
	noFragment   = 0xFFFFFFFF
	minBlockSize = 4 << 10
	maxBlockSize = 1 << 20
)

// superblock is the squashfs v4 superblock (little-endian, 96 bytes).
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
}

// maxCutShort is the largest bytes_used a superblock beyond the end of the
// data may claim and still be reported as a squashfs cut short.
const maxCutShort = 64 << 30

func formatErr(off int64, msg string, err error) error {
	return &firmware.FormatError{Format: Name, Off: off, Msg: msg, Err: err}
}

func notFormat(off int64, msg string) error {
	return formatErr(off, msg, firmware.ErrNotFormat)
}

// readSuper reads and checks a v4 superblock at off. It returns
// firmware.ErrNotFormat (wrapped) for anything that is not a plausible v4
// little-endian image.
func readSuper(r io.ReaderAt, off, size int64) (*superblock, error) {
	if size-off < superSize {
		return nil, notFormat(0, "too short for a superblock")
	}
	var b [superSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, formatErr(0, "reading superblock", err)
	}
	var sb superblock
	le := binary.LittleEndian
	sb.Magic = le.Uint32(b[0:])
	sb.Inodes = le.Uint32(b[4:])
	sb.ModTime = le.Uint32(b[8:])
	sb.BlockSize = le.Uint32(b[12:])
	sb.Fragments = le.Uint32(b[16:])
	sb.Compressor = le.Uint16(b[20:])
	sb.BlockLog = le.Uint16(b[22:])
	sb.Flags = le.Uint16(b[24:])
	sb.IDs = le.Uint16(b[26:])
	sb.Major = le.Uint16(b[28:])
	sb.Minor = le.Uint16(b[30:])
	sb.RootInode = le.Uint64(b[32:])
	sb.BytesUsed = le.Uint64(b[40:])
	sb.IDTable = le.Uint64(b[48:])
	sb.XattrTable = le.Uint64(b[56:])
	sb.InodeTable = le.Uint64(b[64:])
	sb.DirTable = le.Uint64(b[72:])
	sb.FragmentTable = le.Uint64(b[80:])
	sb.ExportTable = le.Uint64(b[88:])

	if sb.Magic != magicLE {
		return nil, notFormat(0, "bad magic")
	}
	if sb.Major != 4 || sb.Minor != 0 {
		return nil, notFormat(28, fmt.Sprintf("version %d.%d is not 4.0", sb.Major, sb.Minor))
	}
	if sb.BlockSize < minBlockSize || sb.BlockSize > maxBlockSize || bits.OnesCount32(sb.BlockSize) != 1 {
		return nil, notFormat(12, fmt.Sprintf("block size %d out of range", sb.BlockSize))
	}
	if 1<<sb.BlockLog != sb.BlockSize {
		return nil, notFormat(22, "block log does not match block size")
	}
	if _, ok := compNames[sb.Compressor]; !ok {
		return nil, notFormat(20, fmt.Sprintf("unknown compressor id %d", sb.Compressor))
	}
	if sb.BytesUsed < superSize {
		return nil, notFormat(40, fmt.Sprintf("bytes_used %d is smaller than a superblock", sb.BytesUsed))
	}
	// The tables follow each other in a fixed order; each must start inside the image.
	if !(superSize <= sb.InodeTable && sb.InodeTable <= sb.DirTable && sb.DirTable < sb.BytesUsed) {
		return nil, notFormat(64, "inode/directory table offsets inconsistent")
	}
	if sb.IDTable < sb.DirTable || sb.IDTable+8 > sb.BytesUsed {
		return nil, notFormat(48, "id table offset inconsistent")
	}
	if sb.IDs == 0 {
		return nil, notFormat(26, "id count is zero")
	}
	if sb.RootInode>>16 > sb.DirTable-sb.InodeTable {
		return nil, notFormat(32, "root inode reference outside the inode table")
	}
	// A superblock that passed every check but promises more bytes than
	// there are (and no more than any flash holds): a squashfs cut short,
	// reported as such rather than as ErrNotFormat.
	if avail := uint64(size - off); sb.BytesUsed > avail {
		if sb.BytesUsed > maxCutShort {
			return nil, notFormat(40, fmt.Sprintf("bytes_used %d outside the %d bytes available", sb.BytesUsed, avail))
		}
		return nil, formatErr(40, fmt.Sprintf("cut short: bytes_used %d, %d bytes available", sb.BytesUsed, avail), firmware.ErrTruncated)
	}
	return &sb, nil
}

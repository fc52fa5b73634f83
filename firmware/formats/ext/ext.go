// Package ext reads ext2, ext3 and ext4 filesystem images natively: the
// superblock, group descriptors (meta_bg too), inodes, block maps (direct
// and indirect), extent trees, inline data, and directories (hashed ones are
// read linearly, which the on-disk format allows). Regular files, directories,
// symlinks, hard links, device nodes, fifos and sockets go to the Sink with
// their modes and owners; the journal is ignored (the image is read as the
// last clean state plus whatever was written in place).
//
// Every block number, offset and count is checked against the filesystem
// size before use, extent trees and indirect maps have depth and size
// limits, and the directory walk refuses cycles.
//
// The reader is our own rather than github.com/masahiro331/go-ext4-filesystem:
// that library's FileInfo hides owners and device numbers (Sys() is nil), which
// the manifest must record, and it brings zap and struc along.
package ext

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

// Name is the format name used in reports.
const Name = "ext"

// Format declares ext2/ext3/ext4.
var Format = &firmware.Format{
	Name: Name,
	Kind: firmware.KindFilesystem,
	Doc: "ext2, ext3 and ext4 filesystems, as found in Android system images and some " +
		"camera data partitions. The superblock gives the exact size; files, directories, " +
		"symlinks, hard links and device nodes are extracted natively (indirect block maps " +
		"and extent trees, ext4 inline data) with their modes and owners. Encrypted " +
		"directories are reported, not decoded.",
	Magics:   []firmware.Magic{{Offset: 0x438, Bytes: []byte{0x53, 0xEF}}},
	Identify: identify,
	Extract:  extract,
}

// Feature bits.
const (
	compatHasJournal = 0x4

	incompatFiletype   = 0x2
	incompatJournalDev = 0x8
	incompatMetaBG     = 0x10
	incompatExtents    = 0x40
	incompat64Bit      = 0x80
	incompatFlexBG     = 0x200
	incompatInlineData = 0x8000
	incompatEncrypt    = 0x10000

	roCompatSparseSuper = 0x1
	roCompatHugeFile    = 0x8
	roCompatMetaCsum    = 0x400
)

const superOff = 1024

type superblock struct {
	inodes, blocks               uint64
	firstDataBlock               uint32
	blockSize                    int64
	blocksPerGroup, inodesPerGrp uint32
	rev                          uint32
	inodeSize                    int64
	compat, incompat, roCompat   uint32
	descSize                     int64
	label                        string
	groups                       uint64
	firstMetaBG                  uint32
	truncated                    bool // the image ends before the last block
	mtime, wtime, mkfsTime       uint32
	uuid                         [16]byte
}

func formatErr(off int64, msg string, err error) error {
	return &firmware.FormatError{Format: Name, Off: off, Msg: msg, Err: err}
}

func notFormat(off int64, msg string) error {
	return formatErr(off, msg, firmware.ErrNotFormat)
}

// readSuper reads and validates the superblock of the filesystem that starts
// at off in r (size bytes in all).
func readSuper(r io.ReaderAt, off, size int64) (*superblock, error) {
	if off < 0 || size-off < superOff+1024 {
		return nil, notFormat(superOff, "too short for a superblock")
	}
	var b [1024]byte
	if _, err := r.ReadAt(b[:], off+superOff); err != nil {
		return nil, formatErr(superOff, "reading superblock", firmware.ErrTruncated)
	}
	le := binary.LittleEndian
	if le.Uint16(b[56:]) != 0xEF53 {
		return nil, notFormat(superOff+56, "bad magic")
	}
	sb := &superblock{
		inodes:         uint64(le.Uint32(b[0:])),
		blocks:         uint64(le.Uint32(b[4:])),
		firstDataBlock: le.Uint32(b[20:]),
		blocksPerGroup: le.Uint32(b[32:]),
		inodesPerGrp:   le.Uint32(b[40:]),
		mtime:          le.Uint32(b[44:]),
		wtime:          le.Uint32(b[48:]),
		rev:            le.Uint32(b[76:]),
		inodeSize:      128,
		descSize:       32,
		mkfsTime:       le.Uint32(b[264:]),
	}
	logBS := le.Uint32(b[24:])
	if logBS > 6 {
		return nil, notFormat(superOff+24, fmt.Sprintf("block size 2^%d KiB", logBS))
	}
	sb.blockSize = 1024 << logBS
	if sb.rev > 1 {
		return nil, notFormat(superOff+76, fmt.Sprintf("revision %d", sb.rev))
	}
	if sb.rev == 1 {
		sb.inodeSize = int64(le.Uint16(b[88:]))
		sb.compat, sb.incompat, sb.roCompat = le.Uint32(b[92:]), le.Uint32(b[96:]), le.Uint32(b[100:])
		copy(sb.uuid[:], b[104:120])
		sb.label = strings.TrimRight(string(b[120:136]), "\x00")
		sb.firstMetaBG = le.Uint32(b[0x104:])
	}
	if sb.incompat&incompat64Bit != 0 {
		sb.blocks |= uint64(le.Uint32(b[0x150:])) << 32
		sb.descSize = int64(le.Uint16(b[254:]))
		if sb.descSize < 32 || sb.descSize > 1024 || sb.descSize&(sb.descSize-1) != 0 {
			return nil, notFormat(superOff+254, fmt.Sprintf("group descriptor size %d", sb.descSize))
		}
	}
	if sb.inodeSize < 128 || sb.inodeSize > sb.blockSize || sb.inodeSize&(sb.inodeSize-1) != 0 {
		return nil, notFormat(superOff+88, fmt.Sprintf("inode size %d", sb.inodeSize))
	}
	wantFirst := uint32(0)
	if sb.blockSize == 1024 {
		wantFirst = 1
	}
	if sb.firstDataBlock != wantFirst {
		return nil, notFormat(superOff+20, fmt.Sprintf("first data block %d", sb.firstDataBlock))
	}
	// mke2fs keeps blocks per group between 256 and 8 × block size; the lower
	// bound also bounds the group descriptor table a hostile superblock can ask for.
	if sb.blocksPerGroup < 256 || int64(sb.blocksPerGroup) > 8*sb.blockSize ||
		sb.inodesPerGrp == 0 || int64(sb.inodesPerGrp) > 8*sb.blockSize {
		return nil, notFormat(superOff+32, "blocks or inodes per group out of range")
	}
	if sb.blocks == 0 || sb.blocks > 1<<48/uint64(sb.blockSize) {
		return nil, notFormat(superOff+4, fmt.Sprintf("%d blocks of %d bytes", sb.blocks, sb.blockSize))
	}
	// A filesystem cut short (a partial dump) is still read as far as it goes.
	sb.truncated = sb.blocks > uint64(size-off)/uint64(sb.blockSize)
	sb.groups = (sb.blocks - uint64(sb.firstDataBlock) + uint64(sb.blocksPerGroup) - 1) / uint64(sb.blocksPerGroup)
	if sb.inodes == 0 || sb.inodes > sb.groups*uint64(sb.inodesPerGrp) {
		return nil, notFormat(superOff, "inode count inconsistent with the groups")
	}
	return sb, nil
}

// hasSuper reports whether group g holds a superblock backup (with
// sparse_super: groups 0, 1 and powers of 3, 5 and 7).
func (sb *superblock) hasSuper(g uint64) bool {
	if g <= 1 || sb.roCompat&roCompatSparseSuper == 0 {
		return true
	}
	for _, base := range []uint64{3, 5, 7} {
		p := base
		for p < g {
			p *= base
		}
		if p == g {
			return true
		}
	}
	return false
}

// variant names the filesystem the way mke2fs -t would.
func (sb *superblock) variant() string {
	switch {
	case sb.incompat&(incompatExtents|incompatFlexBG|incompat64Bit|incompatInlineData) != 0,
		sb.roCompat&(roCompatHugeFile|roCompatMetaCsum) != 0:
		return "ext4"
	case sb.compat&compatHasJournal != 0:
		return "ext3"
	}
	return "ext2"
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	sb, err := readSuper(r, off, size)
	if err != nil {
		return nil, err
	}
	if sb.incompat&incompatJournalDev != 0 {
		return nil, notFormat(superOff+96, "external journal device, not a filesystem")
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       min(int64(sb.blocks)*sb.blockSize, size-off),
		Format:     Name,
		Confidence: firmware.ConfidenceMedium,
		Desc: fmt.Sprintf("%s filesystem, label %q, %d blocks of %d bytes, %d inodes",
			sb.variant(), sb.label, sb.blocks, sb.blockSize, sb.inodes),
		Meta: map[string]any{
			"variant":           sb.variant(),
			"label":             sb.label,
			"uuid":              fmt.Sprintf("%x-%x-%x-%x-%x", sb.uuid[0:4], sb.uuid[4:6], sb.uuid[6:8], sb.uuid[8:10], sb.uuid[10:16]),
			"block_size":        sb.blockSize,
			"blocks":            sb.blocks,
			"inodes":            sb.inodes,
			"feature_compat":    fmt.Sprintf("%#x", sb.compat),
			"feature_incompat":  fmt.Sprintf("%#x", sb.incompat),
			"feature_ro_compat": fmt.Sprintf("%#x", sb.roCompat),
			"last_write_time":   sb.wtime,
		},
	}
	// Structure check: the root directory inode must decode as a directory.
	rootOK := false
	fsys, err := newFS(io.NewSectionReader(r, off, c.Size), sb)
	if err == nil {
		if in, err := fsys.inode(rootIno); err == nil && in.isDir() {
			rootOK = true
			c.Confidence = firmware.ConfidenceHigh
		} else {
			c.Warnings = append(c.Warnings, "root directory inode unreadable")
		}
	} else {
		c.Warnings = append(c.Warnings, err.Error())
	}
	if sb.truncated {
		// Without the size check, only a readable root directory vouches for
		// the superblock.
		if !rootOK {
			return nil, notFormat(superOff+4, fmt.Sprintf("%d blocks of %d bytes do not fit in the %d bytes available and the root directory is unreadable", sb.blocks, sb.blockSize, size-off))
		}
		c.Confidence = firmware.ConfidenceMedium
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: %d of %d bytes present", c.Size, int64(sb.blocks)*sb.blockSize))
	}
	return c, nil
}

// Package squashfs reads squashfs v4 images natively: superblock, inode and
// directory tables, data blocks, fragments and the id table, with every
// compressor mksquashfs offers (gzip, xz, lzma, lzo, lz4, zstd). Extended
// attributes are skipped. Older (v3 and earlier) and big-endian images are
// identified and reported as such, but not extracted.
//
// Every read is bounded by the chunk: block sizes, table offsets and
// references are checked before use, each block decompresses into a buffer of
// at most the block size, and the directory walk refuses cycles and excessive
// depth.
package squashfs

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

// Name is the format name used in reports.
const Name = "squashfs"

const (
	magicLE = 0x73717368 // "hsqs" on disk
	magicBE = 0x68737173 // "sqsh" on disk, read little-endian
)

// Format declares squashfs.
var Format = &firmware.Format{
	Name: Name,
	Kind: firmware.KindFilesystem,
	Doc: "SquashFS, the read-only compressed root filesystem of most Linux cameras. " +
		"Version 4 images with any mksquashfs compressor (gzip, xz, lzma, lzo, lz4, zstd) " +
		"are extracted natively: files, directories, symlinks, hard links and device nodes " +
		"(recorded in the manifest), with owners from the id table; extended attributes are " +
		"skipped. Version 3 and older and big-endian images are identified with their size " +
		"and reported as not extractable.",
	Magics: []firmware.Magic{
		{Bytes: []byte("hsqs")},
		{Bytes: []byte("sqsh")},
	},
	Identify: identify,
	Extract:  extract,
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if off < 0 || size-off < superSize {
		return nil, notFormat(0, "too short for a superblock")
	}
	var m [4]byte
	if _, err := r.ReadAt(m[:], off); err != nil {
		return nil, formatErr(0, "reading magic", err)
	}
	magic := binary.LittleEndian.Uint32(m[:])
	var major uint16
	var vb [2]byte
	if _, err := r.ReadAt(vb[:], off+28); err != nil {
		return nil, formatErr(28, "reading version", err)
	}
	switch magic {
	case magicLE:
		major = binary.LittleEndian.Uint16(vb[:])
	case magicBE:
		major = binary.BigEndian.Uint16(vb[:])
	default:
		return nil, notFormat(0, "bad magic")
	}
	if magic == magicBE || major != 4 {
		return identifyOld(r, off, size, magic == magicBE)
	}
	sb, err := readSuper(r, off, size)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       int64(sb.BytesUsed),
		Format:     Name,
		Confidence: firmware.ConfidenceMedium,
		Desc: fmt.Sprintf("squashfs 4.0 filesystem, %s, %d inodes, block size %d",
			compNames[sb.Compressor], sb.Inodes, sb.BlockSize),
		Meta: map[string]any{
			"version":     "4.0",
			"compression": compNames[sb.Compressor],
			"block_size":  sb.BlockSize,
			"inodes":      sb.Inodes,
			"fragments":   sb.Fragments,
			"bytes_used":  sb.BytesUsed,
			"mkfs_time":   sb.ModTime,
			"flags":       fmt.Sprintf("%#04x", sb.Flags),
		},
	}
	// Structure check: the root inode must decode and be a directory.
	fsys, err := newFS(io.NewSectionReader(r, off, int64(sb.BytesUsed)), sb)
	if err == nil {
		defer fsys.close()
		if ino, err := fsys.inode(sb.RootInode); err == nil && ino.isDir() {
			c.Confidence = firmware.ConfidenceHigh
		} else {
			c.Warnings = append(c.Warnings, "root inode unreadable")
		}
	}
	return c, nil
}

// identifyOld recognises squashfs 1.x–3.x (either endianness) and big-endian
// 4.0 images: they are reported with their size but not extracted.
func identifyOld(r io.ReaderAt, off, size int64, big bool) (*firmware.Chunk, error) {
	var b [71]byte
	if size-off < int64(len(b)) {
		return nil, notFormat(0, "too short for a superblock")
	}
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, formatErr(0, "reading superblock", err)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	endian := "little-endian"
	if big {
		bo, endian = binary.BigEndian, "big-endian"
	}
	major, minor := bo.Uint16(b[28:]), bo.Uint16(b[30:])
	var used uint64
	switch {
	case major == 4 && minor == 0:
		used = bo.Uint64(b[40:])
	case major == 3:
		used = bo.Uint64(b[63:])
	case major == 1 || major == 2:
		used = uint64(bo.Uint32(b[8:]))
	default:
		return nil, notFormat(28, fmt.Sprintf("unknown version %d.%d", major, minor))
	}
	if used < superSize || used > uint64(size-off) {
		return nil, notFormat(0, fmt.Sprintf("bytes_used %d outside the %d bytes available", used, size-off))
	}
	return &firmware.Chunk{
		Offset:     off,
		Size:       int64(used),
		Format:     Name,
		Confidence: firmware.ConfidenceMedium,
		Desc:       fmt.Sprintf("squashfs %d.%d filesystem, %s (not extractable)", major, minor, endian),
		Meta: map[string]any{
			"version":    fmt.Sprintf("%d.%d", major, minor),
			"endian":     endian,
			"bytes_used": used,
		},
		Warnings: []string{fmt.Sprintf("squashfs %d.%d %s is identified only: extraction supports 4.0 little-endian", major, minor, endian)},
	}, nil
}

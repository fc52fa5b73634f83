// Package squashfs reads squashfs images natively: superblock, inode and
// directory tables, data blocks, fragments and the id (4.0) or uid/gid
// (1.0-3.x) tables. It reads 4.0 in both byte orders with every compressor
// mksquashfs offers (gzip, xz, lzma, lzo, lz4, zstd), and 1.0, 2.x and 3.x in
// both byte orders (the packed bit-field layouts of squashfs-tools 1.x-3.x,
// Linux 2.4 and 2.6) with zlib or the vendor LZMA framings sasquatch knows: the classic
// 13-byte header, a header without the size, and raw streams with lc=3 lp=0
// pb=2 (the "shsq"/"qshs" squashfs-lzma magic included). Extended
// attributes are skipped. A 1.x superblock that does not check out is
// identified with its size and the reason, but not extracted.
//
// Every read is bounded by the chunk: block sizes, table offsets and
// references are checked before use, each block decompresses into a buffer of
// at most the block size (an LZMA dictionary is never larger than the block,
// whatever its header asks for), and the directory walk refuses cycles and
// excessive depth.
package squashfs

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

// Name is the format name used in reports.
const Name = "squashfs"

// Format declares squashfs.
var Format = &firmware.Format{
	Name: Name,
	Kind: firmware.KindFilesystem,
	Doc: "SquashFS, the read-only compressed root filesystem of most Linux cameras. " +
		"Version 4.0 images, little- or big-endian, with any mksquashfs compressor (gzip, xz, lzma, lzo, lz4, zstd), " +
		"and version 1.0, 2.x and 3.x images, little- or big-endian, zlib or vendor LZMA (with or without the LZMA header, " +
		"any dictionary size), are extracted natively: files, directories, symlinks, hard links and device nodes " +
		"(recorded in the manifest), with owners from the id or uid/gid tables; extended attributes are " +
		"skipped. A 1.x image whose superblock does not check out is identified with its size and reported as not extractable.",
	Magics: []firmware.Magic{
		{Bytes: []byte("hsqs")},
		{Bytes: []byte("sqsh")},
		{Bytes: []byte(lzmaMagicLE)},
		{Bytes: []byte(lzmaMagicBE)},
	},
	Identify: identify,
	Extract:  extract,
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if off < 0 || size-off < superSize {
		return nil, notFormat(0, "too short for a superblock")
	}
	sb, err := readSuper(r, off, size)
	if err != nil {
		if old, oerr := identifyOld(r, off, size, err); oerr == nil {
			return old, nil
		}
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       int64(sb.BytesUsed),
		Format:     Name,
		Confidence: firmware.ConfidenceMedium,
		Meta: map[string]any{
			"version":    fmt.Sprintf("%d.%d", sb.Major, sb.Minor),
			"block_size": sb.BlockSize,
			"inodes":     sb.Inodes,
			"fragments":  sb.Fragments,
			"bytes_used": sb.BytesUsed,
			"mkfs_time":  sb.ModTime,
			"flags":      fmt.Sprintf("%#04x", sb.Flags),
		},
	}
	if sb.Big {
		c.Meta["endian"] = sb.endian()
	}
	// Structure check: the root inode must decode and be a directory. It
	// also settles the compressor of 3.x and vendor LZMA images.
	fsys, err := newFS(io.NewSectionReader(r, off, int64(sb.BytesUsed)), sb)
	if err == nil {
		defer fsys.close()
		if ino, err := fsys.inode(sb.RootInode); err == nil && ino.isDir() {
			c.Confidence = firmware.ConfidenceHigh
		} else {
			c.Warnings = append(c.Warnings, "root inode unreadable")
		}
	}
	c.Meta["compression"] = sb.compression()
	c.Desc = fmt.Sprintf("squashfs %d.%d filesystem, %s%s, %d inodes, block size %d",
		sb.Major, sb.Minor, map[bool]string{true: "big-endian, "}[sb.Big], sb.compression(), sb.Inodes, sb.BlockSize)
	return c, nil
}

// identifyOld recognises a squashfs 1.x (either endianness) that readSuper
// refused for the reason why (a minor version other than 0, tables out of
// order): it is reported with its size and the reason but not extracted.
func identifyOld(r io.ReaderAt, off, size int64, why error) (*firmware.Chunk, error) {
	var b [71]byte
	if size-off < int64(len(b)) {
		return nil, notFormat(0, "too short for a superblock")
	}
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, formatErr(0, "reading superblock", err)
	}
	var bo binary.ByteOrder
	endian := "little-endian"
	switch string(b[:4]) {
	case "hsqs", lzmaMagicLE:
		bo = binary.LittleEndian
	case "sqsh", lzmaMagicBE:
		bo, endian = binary.BigEndian, "big-endian"
	default:
		return nil, notFormat(0, "bad magic")
	}
	major, minor := bo.Uint16(b[28:]), bo.Uint16(b[30:])
	if major != 1 {
		return nil, notFormat(28, fmt.Sprintf("unknown version %d.%d", major, minor))
	}
	used := uint64(bo.Uint32(b[8:]))
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
		Warnings: []string{fmt.Sprintf("squashfs %d.%d %s is identified only: its superblock does not check out (%v)", major, minor, endian, why)},
	}, nil
}

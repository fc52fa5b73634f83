package flash

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

// UBIFS declares bare UBIFS images (as mkfs.ubifs writes them, before
// ubinize), which some update packages ship.
var UBIFS = &firmware.Format{
	Name: "ubifs",
	Kind: firmware.KindFilesystem,
	Doc: "UBIFS image as mkfs.ubifs writes it (the filesystem that UBI volumes hold), shipped " +
		"bare in some update packages. The superblock node is CRC-checked and gives the exact " +
		"size (LEB count × LEB size), the minimum I/O unit and the default compressor. " +
		"Extracted by walking the index B-tree from the newest master node: inodes, directory " +
		"entries and data nodes (LZO, zlib, zstd or stored; missing blocks are holes), with " +
		"symlinks, hard links and device nodes, then the journal written after the last commit " +
		"is replayed (newest sequence number wins; deletions and truncations applied). Extended " +
		"attributes and orphans are counted and ignored.",
	Magics:   []firmware.Magic{{Bytes: []byte{0x31, 0x18, 0x10, 0x06}}},
	Identify: identifyUBIFS,
	Extract:  extractUBIFS,
}

const (
	ubifsCommonHdr = 24
	ubifsSBNode    = 6
	ubifsSBSize    = 4096 // the superblock node is padded to this
)

var ubifsCompr = map[uint16]string{0: "none", 1: "lzo", 2: "zlib", 3: "zstd"}

func identifyUBIFS(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if off < 0 || size-off < ubifsSBSize {
		return nil, formatErr("ubifs", 0, "too short for a superblock node", firmware.ErrNotFormat)
	}
	b := make([]byte, ubifsSBSize)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, formatErr("ubifs", 0, "reading superblock node", firmware.ErrTruncated)
	}
	le := binary.LittleEndian
	if le.Uint32(b) != 0x06101831 || b[20] != ubifsSBNode {
		return nil, formatErr("ubifs", 0, "not a superblock node", firmware.ErrNotFormat)
	}
	n := le.Uint32(b[16:])
	if n < ubifsCommonHdr+64 || n > ubifsSBSize {
		return nil, formatErr("ubifs", 16, fmt.Sprintf("superblock node length %d", n), firmware.ErrNotFormat)
	}
	if crcRaw(0xFFFFFFFF, b[8:n]) != le.Uint32(b[4:]) {
		return nil, formatErr("ubifs", 4, "superblock node CRC mismatch", firmware.ErrNotFormat)
	}
	sb := b[ubifsCommonHdr:]
	minIO, lebSize, lebCnt, maxLebCnt := le.Uint32(sb[8:]), le.Uint32(sb[12:]), le.Uint32(sb[16:]), le.Uint32(sb[20:])
	fmtVersion, compr := le.Uint32(sb[56:]), le.Uint16(sb[60:])
	if lebSize < ubifsSBSize || lebSize > 16<<20 || lebCnt == 0 || lebCnt > maxLebCnt || minIO == 0 || minIO > lebSize {
		return nil, formatErr("ubifs", ubifsCommonHdr+12, fmt.Sprintf("LEB geometry %d × %d (min I/O %d)", lebCnt, lebSize, minIO), firmware.ErrNotFormat)
	}
	total := int64(lebCnt) * int64(lebSize)
	c := &firmware.Chunk{
		Offset:     off,
		Size:       total,
		Format:     "ubifs",
		Confidence: firmware.ConfidenceHigh,
		Desc: fmt.Sprintf("UBIFS image, format %d, %d LEBs of %d bytes, min I/O %d, %s compression",
			fmtVersion, lebCnt, lebSize, minIO, ubifsCompr[compr]),
		Meta: map[string]any{
			"leb_size": lebSize, "leb_count": lebCnt, "max_leb_count": maxLebCnt,
			"min_io_size": minIO, "format_version": fmtVersion, "compression": ubifsCompr[compr],
		},
	}
	if total > size-off {
		c.Size = size - off
		c.Confidence = firmware.ConfidenceMedium
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: %d LEBs need %d bytes, %d available", lebCnt, total, size-off))
	}
	return c, nil
}

package flash

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

// Cramfs declares cramfs images.
var Cramfs = &firmware.Format{
	Name: "cramfs",
	Kind: firmware.KindFilesystem,
	Doc: "cramfs, the compressed ROM filesystem of older cameras (XiongMai romfs-x.cramfs.img, " +
		"Dahua partition-x.cramfs.img). The superblock gives the exact size; the whole-image " +
		"CRC32 is verified (version 1 images, which carry no size, are measured from their " +
		"directory tree). Both endians (big-endian on MIPS boards), holes, mkfs.cramfs -p's 512-byte " +
		"boot pad, block sizes of 4 to 64 KiB (detected from the first large file), and the kernel 4.15 " +
		"extended block pointers (uncompressed and direct blocks) are read; files, directories, " +
		"symlinks and device nodes are extracted (cramfs has no hard links: identical files " +
		"share their data and are extracted each). Directory cycles and blocks outside the image " +
		"are reported, not followed.",
	Magics: []firmware.Magic{
		{Bytes: []byte{0x45, 0x3D, 0xCD, 0x28}},
		{Bytes: []byte{0x28, 0xCD, 0x3D, 0x45}},
	},
	Identify: identifyCramfs,
	Extract:  extractCramfs,
}

const (
	cramfsMagic     = 0x28CD3D45
	cramfsSuperSize = 76
	cramfsFSIDv2    = 0x1
	cramfsSignature = "Compressed ROMFS"
)

func identifyCramfs(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if off < 0 || size-off < cramfsSuperSize {
		return nil, formatErr("cramfs", 0, "too short for a superblock", firmware.ErrNotFormat)
	}
	var b [cramfsSuperSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, formatErr("cramfs", 0, "reading superblock", firmware.ErrTruncated)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	endian := "little-endian"
	if binary.BigEndian.Uint32(b[:]) == cramfsMagic {
		bo, endian = binary.BigEndian, "big-endian"
	} else if binary.LittleEndian.Uint32(b[:]) != cramfsMagic {
		return nil, formatErr("cramfs", 0, "bad magic", firmware.ErrNotFormat)
	}
	if string(b[16:32]) != cramfsSignature {
		return nil, formatErr("cramfs", 16, "signature is not \"Compressed ROMFS\"", firmware.ErrNotFormat)
	}
	fsSize, flags := int64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
	// mkfs.cramfs -p writes 512 bytes of boot code before the superblock
	// and counts every offset, and the size, from there: the root
	// directory then starts at 512+76 instead of 76.
	var pad int64
	if root := decodeCramfsInode(b[64:], bo); root.offset == cramfsPad+cramfsSuperSize && off >= cramfsPad && flags&cramfsFSIDv2 != 0 {
		pad = cramfsPad
	}
	crc, edition, blocks, files := bo.Uint32(b[32:]), bo.Uint32(b[36:]), bo.Uint32(b[40:]), bo.Uint32(b[44:])
	name := strings.TrimRight(string(b[48:64]), "\x00")
	if flags&cramfsFSIDv2 == 0 {
		// Version 1 images carry no size: measure the tree.
		fsSize = cramfsExtent(io.NewSectionReader(r, off, size-off), size-off)
	}
	fsSize -= pad
	if fsSize < cramfsSuperSize || fsSize > size-off {
		return nil, formatErr("cramfs", 4, fmt.Sprintf("size %d outside the %d bytes available", fsSize, size-off), firmware.ErrNotFormat)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       fsSize,
		Format:     "cramfs",
		Confidence: firmware.ConfidenceMedium,
		Desc:       fmt.Sprintf("cramfs filesystem, %s, %d bytes, %d files, name %q", endian, fsSize, files, name),
		Meta: map[string]any{
			"endian": endian, "size": fsSize, "flags": fmt.Sprintf("%#x", flags), "pad": pad,
			"edition": edition, "blocks": blocks, "files": files, "name": name,
		},
	}
	if pad > 0 {
		c.Desc += ", after a 512-byte boot pad (mkfs.cramfs -p)"
	}
	if flags&cramfsFSIDv2 == 0 {
		c.Warnings = append(c.Warnings, "version 1 cramfs: no size in the superblock; extent measured from the directory tree")
		return c, nil
	}
	// The CRC covers the whole image from the superblock (not the boot
	// pad) with the CRC field zeroed.
	h := crc32.NewIEEE()
	buf := make([]byte, 64<<10)
	for pos := int64(0); pos < fsSize; {
		n := min(int64(len(buf)), fsSize-pos)
		if _, err := r.ReadAt(buf[:n], off+pos); err != nil {
			return nil, formatErr("cramfs", pos, "reading image", firmware.ErrTruncated)
		}
		if pos == 0 {
			clear(buf[32:36])
		}
		h.Write(buf[:n])
		pos += n
	}
	if got := h.Sum32(); got == crc {
		c.Confidence = firmware.ConfidenceHigh
	} else {
		c.Warnings = append(c.Warnings, fmt.Sprintf("CRC %08x, computed %08x", crc, got))
	}
	return c, nil
}

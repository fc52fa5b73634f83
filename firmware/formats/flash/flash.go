// Package flash reads the raw flash filesystems of camera firmware:
// JFFS2 (both endians), cramfs, UBI and bare UBIFS. Each declaration
// walks enough structure to give the chunk's exact
// extent and a high confidence, so `cordon firmware scan` draws a correct
// flash map: JFFS2 node by node with header CRCs, cramfs by its superblock
// size and whole-image CRC, UBI erase block by erase block with header CRCs
// and the volume table's names, UBIFS by its CRC-checked superblock node.
// All four are also extracted: JFFS2 (jffs2_extract.go: both endians,
// every node compression, versions), cramfs (cramfs_extract.go: both
// endians, version 1 and 2, holes, extended block pointers), each UBI volume
// (from a plain image or a raw NAND dump with OOB) as one file, and each
// UBIFS tree through its index B-tree and journal.
package flash

import (
	"hash/crc32"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

func formatErr(name string, off int64, msg string, err error) error {
	return &firmware.FormatError{Format: name, Off: off, Msg: msg, Err: err}
}

// crcRaw is the Linux kernel's crc32_le(seed, p) (no pre/post inversion),
// which JFFS2 (seed 0) and UBI (seed 0xFFFFFFFF) use.
func crcRaw(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, crc32.IEEETable, p)
}

// window reads a ReaderAt through a 64 KiB buffer, for node-by-node walks.
type window struct {
	r     io.ReaderAt
	size  int64 // readable end (absolute)
	buf   []byte
	start int64 // absolute offset of buf[0]
	n     int
}

func newWindow(r io.ReaderAt, size int64) *window {
	return &window{r: r, size: size, buf: make([]byte, 64<<10), start: -1}
}

// at returns n bytes at absolute offset off, or nil when they are not
// available. n must be at most 4 KiB.
func (w *window) at(off int64, n int) []byte {
	if off < 0 || off+int64(n) > w.size {
		return nil
	}
	if w.start < 0 || off < w.start || off+int64(n) > w.start+int64(w.n) {
		m, err := w.r.ReadAt(w.buf[:min(int64(len(w.buf)), w.size-off)], off)
		if m < n && err != nil {
			return nil
		}
		w.start, w.n = off, m
	}
	i := off - w.start
	return w.buf[i : i+int64(n)]
}

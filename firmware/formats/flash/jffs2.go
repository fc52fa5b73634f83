package flash

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

// JFFS2 declares JFFS2 images (NOR flash journalling filesystem), either endian.
var JFFS2 = &firmware.Format{
	Name: "jffs2",
	Kind: firmware.KindFilesystem,
	Doc: "JFFS2, the journalling flash filesystem of NOR-flash cameras (configuration " +
		"partitions such as mtd-x.jffs2). Little- and big-endian images are walked node by " +
		"node, checking each header CRC and skipping erased (0xFF) space, to find the exact " +
		"extent; inode and directory-entry counts are reported. Identified only: not extracted yet.",
	Magics: []firmware.Magic{
		{Bytes: []byte{0x85, 0x19}},
		{Bytes: []byte{0x19, 0x85}},
	},
	Identify: identifyJFFS2,
}

// JFFS2 node types.
const (
	jffs2Dirent      = 0xE001
	jffs2Inode       = 0xE002
	jffs2Cleanmarker = 0x2003
	jffs2Padding     = 0x2004
	jffs2Summary     = 0x2006
	jffs2Xattr       = 0xE008
	jffs2Xref        = 0xE009
)

const jffs2MaxNode = 1 << 20 // no real node is larger than a data block plus header

func knownJFFS2Node(t uint16) bool {
	switch t {
	case jffs2Dirent, jffs2Inode, jffs2Cleanmarker, jffs2Padding, jffs2Summary, jffs2Xattr, jffs2Xref:
		return true
	}
	return false
}

// jffs2Node checks the node header at off and returns its type and length.
func jffs2Node(w *window, bo binary.ByteOrder, off int64) (typ uint16, length uint32, ok bool) {
	h := w.at(off, 12)
	if h == nil || bo.Uint16(h) != 0x1985 {
		return 0, 0, false
	}
	typ, length = bo.Uint16(h[2:]), bo.Uint32(h[4:])
	if length < 12 || length > jffs2MaxNode || !knownJFFS2Node(typ) {
		return 0, 0, false
	}
	if crcRaw(0, h[:8]) != bo.Uint32(h[8:]) {
		return 0, 0, false
	}
	return typ, length, true
}

func identifyJFFS2(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var bo binary.ByteOrder
	endian := ""
	if off < 0 || size-off < 12 {
		return nil, formatErr("jffs2", 0, "too short for a node", firmware.ErrNotFormat)
	}
	// Check the first node header before anything else: the 2-byte magic
	// matches often by chance, so rejecting must be cheap.
	var m [12]byte
	if _, err := r.ReadAt(m[:], off); err != nil {
		return nil, formatErr("jffs2", 0, "reading node header", firmware.ErrTruncated)
	}
	switch {
	case m[0] == 0x85 && m[1] == 0x19:
		bo, endian = binary.LittleEndian, "little-endian"
	case m[0] == 0x19 && m[1] == 0x85:
		bo, endian = binary.BigEndian, "big-endian"
	default:
		return nil, formatErr("jffs2", 0, "bad magic", firmware.ErrNotFormat)
	}
	if !knownJFFS2Node(bo.Uint16(m[2:])) || crcRaw(0, m[:8]) != bo.Uint32(m[8:]) {
		return nil, formatErr("jffs2", 0, "first node header invalid (type or CRC)", firmware.ErrNotFormat)
	}
	w := newWindow(r, size)
	if _, _, ok := jffs2Node(w, bo, off); !ok {
		return nil, formatErr("jffs2", 0, "first node header invalid (length)", firmware.ErrNotFormat)
	}
	counts := map[uint16]int{}
	pos, end := off, off
	nodes := 0
	var warnings []string
	for pos+12 <= size {
		typ, length, ok := jffs2Node(w, bo, pos)
		if ok && pos+int64(length) > size {
			warnings = append(warnings, fmt.Sprintf("node at %#x runs past the end of the image: truncated", pos-off))
			break
		}
		if ok {
			counts[typ]++
			nodes++
			end = pos + int64(length)
			pos = end + (4-end%4)%4
			continue
		}
		// Erased flash (0xFF) or zero fill between nodes and erase blocks:
		// skip it word by word and go on if a valid node follows.
		next := pos
		for next+4 <= size {
			b := w.at(next, 4)
			if b == nil || !(isFill(b, 0xFF) || isFill(b, 0x00)) {
				break
			}
			next += 4
		}
		if next == pos {
			break
		}
		if _, _, ok := jffs2Node(w, bo, next); !ok {
			break
		}
		pos = next
	}
	if end == off {
		return nil, formatErr("jffs2", 0, "first node truncated", firmware.ErrTruncated)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       end - off,
		Format:     "jffs2",
		Confidence: firmware.ConfidenceHigh,
		Desc: fmt.Sprintf("JFFS2 filesystem, %s, %d nodes (%d inodes, %d directory entries)",
			endian, nodes, counts[jffs2Inode], counts[jffs2Dirent]),
		Meta: map[string]any{
			"endian":       endian,
			"nodes":        nodes,
			"inode_nodes":  counts[jffs2Inode],
			"dirent_nodes": counts[jffs2Dirent],
		},
		Warnings: warnings,
	}
	if nodes < 2 {
		c.Confidence = firmware.ConfidenceMedium
	}
	return c, nil
}

func isFill(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

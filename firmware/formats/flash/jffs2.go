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
		"extent; inode and directory-entry counts are reported. Extracted natively as the kernel mounts it: " +
		"the latest version of each inode and name wins (deletions, overwrites, truncations), data " +
		"compressed with zlib, rtime, LZO or LZMA, hard links, symlinks, device nodes and fifos; nodes " +
		"with bad CRCs or marked obsolete are skipped and counted.",
	Magics: []firmware.Magic{
		{Bytes: []byte{0x85, 0x19}},
		{Bytes: []byte{0x19, 0x85}},
	},
	Identify: identifyJFFS2,
	Extract:  extractJFFS2,
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

// jffs2Accurate is the node type bit the kernel clears on NOR flash to mark
// a node obsolete; the header CRC is computed with it set.
const jffs2Accurate = 0x2000

// jffs2Resync bounds how far past damaged bytes (a node header whose CRC
// fails, a bit flip) the walk looks for the next valid node, as the kernel's
// scan steps over them word by word.
const jffs2Resync = 64 << 10

// jffs2Node checks the node header at off and returns its type (with the
// accurate bit set), its length and whether it is marked obsolete.
func jffs2Node(w *window, bo binary.ByteOrder, off int64) (typ uint16, length uint32, obsolete, ok bool) {
	return jffs2Header(bo, w.at(off, 12))
}

// jffs2Header checks the 12-byte node header h.
func jffs2Header(bo binary.ByteOrder, h []byte) (typ uint16, length uint32, obsolete, ok bool) {
	if len(h) < 12 || bo.Uint16(h) != 0x1985 {
		return 0, 0, false, false
	}
	raw := bo.Uint16(h[2:])
	typ, length = raw|jffs2Accurate, bo.Uint32(h[4:])
	if length < 12 || length > jffs2MaxNode || !knownJFFS2Node(typ) {
		return 0, 0, false, false
	}
	var m [8]byte
	copy(m[:], h[:8])
	bo.PutUint16(m[2:], typ)
	if crcRaw(0, m[:]) != bo.Uint32(h[8:]) {
		return 0, 0, false, false
	}
	return typ, length, raw&jffs2Accurate == 0, true
}

// jffs2Walker visits the nodes of an image in flash order. Erased (0xFF) or
// zero fill between nodes is skipped; damaged bytes are skipped when a valid
// node follows within jffs2Resync bytes, and counted.
type jffs2Walker struct {
	w    *window
	bo   binary.ByteOrder
	size int64
	pos  int64
	// end is the end of the last node returned, with its padding to 4 bytes.
	end int64
	// damaged counts the bytes skipped that were neither nodes nor fill;
	// damagedAt is where the first run of them starts.
	damaged, damagedAt int64
	// truncated is the offset of a node that runs past the end, or -1.
	truncated int64
}

func newJFFS2Walker(w *window, bo binary.ByteOrder, off, size int64) *jffs2Walker {
	return &jffs2Walker{w: w, bo: bo, size: size, pos: off, end: off, truncated: -1}
}

func (j *jffs2Walker) valid(off int64) bool {
	_, _, _, ok := jffs2Node(j.w, j.bo, off)
	return ok
}

// next returns the next node, or ok false at the end of the image.
func (j *jffs2Walker) next() (pos int64, typ uint16, length uint32, obsolete, ok bool) {
	for j.pos+12 <= j.size {
		typ, length, obsolete, ok := jffs2Node(j.w, j.bo, j.pos)
		if ok {
			if j.pos+int64(length) > j.size {
				j.truncated = j.pos
				return 0, 0, 0, false, false
			}
			// A node occupies its length rounded up to 4 bytes.
			pos = j.pos
			j.pos = pos + int64(length+3)&^3
			j.end = min(j.pos, j.size)
			return pos, typ, length, obsolete, true
		}
		next := j.pos
		for next+4 <= j.size {
			b := j.w.at(next, 4)
			if b == nil || !(isFill(b, 0xFF) || isFill(b, 0x00)) {
				break
			}
			next += 4
		}
		if next > j.pos && j.valid(next) {
			j.pos = next
			continue
		}
		// Damaged bytes at next: look for a valid node a little further.
		found := int64(-1)
		for q := next + 4; q+12 <= j.size && q-next <= jffs2Resync; q += 4 {
			if b := j.w.at(q, 2); b != nil && j.bo.Uint16(b) == 0x1985 && j.valid(q) {
				found = q
				break
			}
		}
		if found < 0 {
			return 0, 0, 0, false, false
		}
		if j.damaged == 0 {
			j.damagedAt = next
		}
		j.damaged += found - next
		j.pos = found
	}
	return 0, 0, 0, false, false
}

func identifyJFFS2(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if off < 0 || size-off < 12 {
		return nil, formatErr("jffs2", 0, "too short for a node", firmware.ErrNotFormat)
	}
	// Check the first node header before anything else: the 2-byte magic
	// matches often by chance, so rejecting must be cheap.
	var m [12]byte
	if _, err := r.ReadAt(m[:], off); err != nil {
		return nil, formatErr("jffs2", 0, "reading node header", firmware.ErrTruncated)
	}
	bo, endian := jffs2Endian(m[:])
	if bo == nil {
		return nil, formatErr("jffs2", 0, "bad magic", firmware.ErrNotFormat)
	}
	if _, _, _, ok := jffs2Header(bo, m[:]); !ok {
		return nil, formatErr("jffs2", 0, "first node header invalid (type, CRC or length)", firmware.ErrNotFormat)
	}
	counts := map[uint16]int{}
	nodes := 0
	var warnings []string
	walk := newJFFS2Walker(newWindow(r, size), bo, off, size)
	for {
		_, typ, _, _, ok := walk.next()
		if !ok {
			break
		}
		counts[typ]++
		nodes++
	}
	if walk.truncated >= 0 {
		warnings = append(warnings, fmt.Sprintf("node at %#x runs past the end of the image: truncated", walk.truncated-off))
	}
	if walk.damaged > 0 {
		warnings = append(warnings, fmt.Sprintf("%d bytes of damaged data between nodes skipped (first at %#x)", walk.damaged, walk.damagedAt-off))
	}
	end := walk.end
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

// jffs2Endian returns the byte order of the node header magic in h.
func jffs2Endian(h []byte) (binary.ByteOrder, string) {
	switch {
	case len(h) >= 2 && h[0] == 0x85 && h[1] == 0x19:
		return binary.LittleEndian, "little-endian"
	case len(h) >= 2 && h[0] == 0x19 && h[1] == 0x85:
		return binary.BigEndian, "big-endian"
	}
	return nil, ""
}

func isFill(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

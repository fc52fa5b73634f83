// Package yaffs2 reads YAFFS2 NAND images (as written by mkyaffs2image or
// dumped with their spare area): the data partitions of Android-era and
// many NAND cameras. The layout (yaffs_guts.h, yaffs_packedtags2.h):
//
//   - the image is a run of chunks: a page of data (2048 or 4096 bytes)
//     then its spare (64, 128 or 224 bytes), or, with inband tags, the page
//     alone with the tags in its last 16 bytes;
//   - the tags (yaffs_packed_tags2_tags_only, 4 u32) sit at the start of the
//     spare, or after a 2-byte bad-block marker: seq_number (of the erase
//     block, 0x1000..0xefffff00), obj_id, chunk_id, n_bytes. chunk_id 0, or
//     with bit 31 set (extra header info: the parent id in the low bits, the
//     object type in obj_id's top 4 bits), marks an object header; data
//     chunks count from 1 and n_bytes is their length. ECC bytes after the
//     tags are ignored;
//   - an object header (yaffs_obj_hdr) starts the data of a header chunk:
//     type@0 (1 file, 2 symlink, 3 directory, 4 hard link, 5 special),
//     parent_obj_id@4, sum_no_longer_used@8 (0xffff), name[256]@10,
//     yst_mode@268, uid@272, gid@276, atime@280, mtime@284, ctime@288,
//     file_size_low@292, equiv_id@296, alias[160]@300, yst_rdev@460,
//     file_size_high@496. The writers fill the header with 0xff first, so
//     fields a type does not use (a file's alias, a hard link's mode) read
//     as 0xff bytes. Object 1 is the root directory, 3 and 4 the unlinked
//     and deleted folders;
//   - big-endian images (MIPS) swap every u32 of the tags and header.
//
// YAFFS2 has no magic number, so identification is structural: the chunk
// at the candidate offset must be an object header whose tags agree with
// it, and the geometry (page, spare, tag position, endianness) is the one
// under which the most consecutive chunks have sane tags. At least two must.
// A later chunk with the same object and chunk id replaces an earlier one
// (the log-structured update rule); parent chains are walked with a bound,
// so object id cycles end with a warning.
package yaffs2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	formatName = "yaffs2"
	tagsLen    = 16
	hdrLen     = 512

	seqLowest  = 0x00001000
	seqHighest = 0xefffff00

	extraHeader = 0x80000000 // chunk_id: extra header info packed
	extraMask   = 0xf0000000

	typeFile    = 1
	typeSymlink = 2
	typeDir     = 3
	typeLink    = 4
	typeSpecial = 5

	idRoot     = 1
	idUnlinked = 3
	idDeleted  = 4

	// maxErased is how many erased chunks in a row the scan crosses
	// looking for more (a few erase blocks of an unfilled partition).
	maxErased = 4 * 64
	// maxChunks bounds the scan (16 GiB of 4 KiB pages).
	maxChunks = 1 << 22
)

// Format declares YAFFS2.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindFilesystem,
	Doc: "YAFFS2 NAND image (mkyaffs2image output or a dump with spare): 2048- or 4096-byte pages with " +
		"64-, 128- or 224-byte spares, tags at the start of the spare or after a bad-block marker, or " +
		"inband tags; both endians. It has no magic: the first object header must agree with its tags " +
		"and at least two consecutive chunks must have sane tags under the detected geometry. Files, " +
		"directories, symlinks and hard links are extracted, devices and FIFOs recorded as headers; " +
		"deleted objects are counted, not extracted.",
	// An object header as the writers leave it: type, parent 1 (the root),
	// then the unused checksum 0xffff.
	Magics:   magics(),
	Identify: identify,
	Extract:  extract,
}

func magics() []firmware.Magic {
	var ms []firmware.Magic
	for _, t := range []byte{typeFile, typeSymlink, typeDir, typeLink, typeSpecial} {
		ms = append(ms,
			firmware.Magic{Bytes: []byte{t, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff}},
			firmware.Magic{Bytes: []byte{0, 0, 0, t, 0, 0, 0, 1, 0xff, 0xff}})
	}
	return ms
}

func formatErr(off int64, msg string, err error) error {
	return &firmware.FormatError{Format: formatName, Off: off, Msg: msg, Err: err}
}

// geometry is one chunk layout.
type geometry struct {
	page, spare int
	tagOff      int // offset of the tags in the spare (0 or 2)
	inband      bool
	bo          binary.ByteOrder
}

func (g geometry) chunk() int64 { return int64(g.page + g.spare) }

// dataLen is the data bytes a chunk holds.
func (g geometry) dataLen() int {
	if g.inband {
		return g.page - tagsLen
	}
	return g.page
}

func (g geometry) tagsAt() int64 {
	if g.inband {
		return int64(g.page - tagsLen)
	}
	return int64(g.page + g.tagOff)
}

func (g geometry) endian() string {
	if g.bo == binary.ByteOrder(binary.BigEndian) {
		return "big-endian"
	}
	return "little-endian"
}

func (g geometry) String() string {
	if g.inband {
		return fmt.Sprintf("%d-byte pages, inband tags, %s", g.page, g.endian())
	}
	return fmt.Sprintf("%d-byte pages, %d-byte spare, tags at spare+%d, %s", g.page, g.spare, g.tagOff, g.endian())
}

// geometries lists the layouts tried, for one byte order.
func geometries(bo binary.ByteOrder) []geometry {
	var gs []geometry
	for _, page := range []int{2048, 4096} {
		for _, spare := range []int{64, 128, 224} {
			for _, off := range []int{0, 2} {
				gs = append(gs, geometry{page: page, spare: spare, tagOff: off, bo: bo})
			}
		}
		gs = append(gs, geometry{page: page, inband: true, bo: bo})
	}
	return gs
}

// tags are one chunk's packed tags.
type tags struct {
	seq, obj, chunk, n uint32
}

func (t tags) erased() bool {
	return t.seq == 0xffffffff && t.obj == 0xffffffff && t.chunk == 0xffffffff && t.n == 0xffffffff
}

func (t tags) isHeader() bool { return t.chunk == 0 || t.chunk&extraHeader != 0 }
func (t tags) id() uint32     { return t.obj &^ extraMask }

// objHeader is the decoded part of a yaffs_obj_hdr.
type objHeader struct {
	typ, parent     uint32
	name            string
	mode, uid, gid  uint32
	mtime           uint32
	size            int64
	equiv           uint32
	alias           string
	rdev            uint32
	nameOK, aliasOK bool
}

func cstring(b []byte) (string, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), false
	}
	return string(b[:i]), true
}

func parseHeader(b []byte, bo binary.ByteOrder) objHeader {
	h := objHeader{typ: bo.Uint32(b), parent: bo.Uint32(b[4:]),
		mode: bo.Uint32(b[268:]), uid: bo.Uint32(b[272:]), gid: bo.Uint32(b[276:]), mtime: bo.Uint32(b[284:]),
		equiv: bo.Uint32(b[296:]), rdev: bo.Uint32(b[460:])}
	h.name, h.nameOK = cstring(b[10:266])
	h.alias, h.aliasOK = cstring(b[300:460])
	h.size = int64(bo.Uint32(b[292:]))
	if hi := bo.Uint32(b[496:]); hi != 0xffffffff && hi != 0 {
		h.size |= int64(hi) << 32
	}
	return h
}

// sane says whether the header could have been written by yaffs, and
// agrees with its chunk's tags.
func (h *objHeader) sane(t tags) bool {
	if h.typ < typeFile || h.typ > typeSpecial || h.parent == 0 || h.parent&extraMask != 0 || !h.nameOK || h.name == "" ||
		(h.typ == typeSymlink && !h.aliasOK) {
		return false
	}
	if t.chunk&extraHeader != 0 {
		if t.obj>>28 != h.typ || t.chunk&^extraMask != h.parent {
			return false
		}
	}
	return t.id() != idRoot || h.typ == typeDir
}

// chunkReader reads tags and data of chunk i relative to base.
type chunkReader struct {
	r    io.ReaderAt
	base int64
	size int64 // readable end, absolute
	g    geometry
	buf  []byte
}

func (c *chunkReader) off(i int) int64 { return c.base + int64(i)*c.g.chunk() }

func (c *chunkReader) tags(i int) (tags, bool) {
	at := c.off(i) + c.g.tagsAt()
	if c.off(i)+c.g.chunk() > c.size {
		return tags{}, false
	}
	var b [tagsLen]byte
	if _, err := c.r.ReadAt(b[:], at); err != nil {
		return tags{}, false
	}
	bo := c.g.bo
	return tags{bo.Uint32(b[:]), bo.Uint32(b[4:]), bo.Uint32(b[8:]), bo.Uint32(b[12:])}, true
}

func (c *chunkReader) header(i int) (objHeader, bool) {
	if c.buf == nil {
		c.buf = make([]byte, hdrLen)
	}
	if _, err := c.r.ReadAt(c.buf, c.off(i)); err != nil {
		return objHeader{}, false
	}
	return parseHeader(c.buf, c.g.bo), true
}

// valid classifies chunk i: 1 a sane chunk, 0 erased, -1 neither (or past
// the end).
func (c *chunkReader) valid(i int) (int, tags) {
	t, ok := c.tags(i)
	switch {
	case !ok:
		return -1, t
	case t.erased():
		return 0, t
	case t.seq < seqLowest || t.seq > seqHighest || t.id() == 0:
		return -1, t
	case t.isHeader():
		h, ok := c.header(i)
		if !ok || !h.sane(t) {
			return -1, t
		}
	case t.n > uint32(c.g.dataLen()) || t.chunk > maxChunks:
		return -1, t
	}
	return 1, t
}

// scan counts the chunks from base under g: it returns the number of
// chunks up to the last sane one and how many were sane.
func scan(r io.ReaderAt, base, size int64, g geometry, limit int) (end, good int) {
	c := &chunkReader{r: r, base: base, size: size, g: g}
	erased := 0
	for i := 0; i < maxChunks && good < limit; i++ {
		v, _ := c.valid(i)
		if v < 0 {
			break
		}
		if v == 0 {
			if erased++; erased > maxErased {
				break
			}
			continue
		}
		erased = 0
		good++
		end = i + 1
	}
	return end, good
}

// detect picks the geometry under which the most chunks from base are
// sane, looking at the first few hundred. The chunk at base must be a
// sane object header.
func detect(r io.ReaderAt, base, size int64) (geometry, bool) {
	var head [10]byte
	if _, err := r.ReadAt(head[:], base); err != nil {
		return geometry{}, false
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if head[0] == 0 {
		bo = binary.BigEndian
	}
	var best geometry
	bestGood := 0
	for _, g := range geometries(bo) {
		c := &chunkReader{r: r, base: base, size: size, g: g}
		if v, t := c.valid(0); v != 1 || !t.isHeader() {
			continue
		}
		if _, good := scan(r, base, size, g, 512); good > bestGood {
			best, bestGood = g, good
		}
	}
	return best, bestGood >= 2
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if off < 0 || size-off < 2048 {
		return nil, formatErr(0, "too short for a chunk", firmware.ErrNotFormat)
	}
	g, ok := detect(r, off, size)
	if !ok {
		return nil, formatErr(0, "no chunk geometry gives an object header followed by sane tags", firmware.ErrNotFormat)
	}
	end, good := scan(r, off, size, g, maxChunks)
	img, err := load(r, off, int64(end)*g.chunk(), g)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       int64(end) * g.chunk(),
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Desc:       fmt.Sprintf("YAFFS2 image, %s, %d chunks, %d objects", g, good, len(img.objs)),
		Meta: map[string]any{
			"page": g.page, "spare": g.spare, "tag_offset": g.tagOff, "inband": g.inband,
			"endian": g.endian(), "chunks": good, "objects": len(img.objs),
		},
	}
	if img.orphans > 0 {
		c.Confidence = firmware.ConfidenceMedium
		c.Warnings = append(c.Warnings, fmt.Sprintf("%d objects or data chunks without a parent or owner", img.orphans))
	}
	return c, nil
}

package flash

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zstd"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// UBIFS on-media constants (Linux fs/ubifs/ubifs-media.h).
const (
	ubifsMagic     = 0x06101831
	ubifsInoNode   = 0
	ubifsDataNode  = 1
	ubifsDentNode  = 2
	ubifsXentNode  = 3
	ubifsPadNode   = 5
	ubifsMstNode   = 7
	ubifsRefNode   = 8
	ubifsIdxNode   = 9
	ubifsCSNode    = 10
	ubifsOrphNode  = 11
	ubifsBlockSize = 4096
	ubifsRootIno   = 1
	ubifsMstLnum   = 1
	ubifsLogLnum   = 3
	ubifsInoHdr    = 160
	ubifsDentHdr   = 56
	ubifsDataHdr   = 48
	ubifsMaxNode   = ubifsInoHdr + ubifsBlockSize + 64 // the largest leaf: an inode with 4 KiB of data
	ubifsXattrFl   = 0x20                              // inode flag: this inode holds an extended attribute
	ubifsCryptFl   = 0x40                              // inode flag: encrypted
	ubifsFlgCrypt  = 0x10                              // superblock flag: encryption supported
	// ubifsMaxDepth bounds the index B-tree (real trees are a few levels deep).
	ubifsMaxDepth = 64
	// ubifsMaxNodes bounds the index walk (index and leaf nodes visited).
	ubifsMaxNodes = 1 << 22
	// ubifsMaxPathDepth bounds the directory tree.
	ubifsMaxPathDepth = 256
)

// Key types, in the top 3 bits of a key's second word.
const (
	ubifsKeyIno = iota
	ubifsKeyData
	ubifsKeyDent
	ubifsKeyXent
)

type ubifsCH struct {
	sqnum uint64
	len   uint32
	typ   byte
}

// ubifsInode is the newest inode node of one inode number.
type ubifsInode struct {
	sqnum          uint64
	size           uint64
	mtime          int64
	mtimeNs        uint32
	nlink          uint32
	uid, gid, mode uint32
	flags          uint32
	data           []byte // symlink target or device number
}

// ubifsDent is the newest directory entry of one (parent, name).
type ubifsDent struct {
	sqnum uint64
	inum  uint64
	typ   byte
	name  string
}

type ubifsLoc struct {
	lnum, offs, len uint32
	sqnum           uint64
}

type dentKey struct {
	parent uint32
	name   string
}

// ubifsFS is a UBIFS image being read: a flat array of LEBs.
type ubifsFS struct {
	r        io.ReaderAt
	size     int64
	leb      int64
	lebCnt   int64
	logLEBs  int64
	lptLEBs  int64
	orphLEBs int64
	flags    uint32
	warn     func(string)

	buf []byte

	inodes map[uint32]*ubifsInode
	dents  map[dentKey]*ubifsDent
	data   map[uint32]map[uint32]ubifsLoc // inum → block → newest data node
	nodes  int
	xattrs int
	bad    int // leaves with a bad CRC or type, skipped
	// dupLeaves counts index entries that point at a leaf seen before.
	dupLeaves int

	zstd *zstd.Decoder
}

// readLEB returns LEB lnum, or nil when it lies outside the image.
func (u *ubifsFS) readLEB(lnum uint32) []byte {
	off := int64(lnum) * u.leb
	if int64(lnum) >= u.lebCnt || off+u.leb > u.size {
		return nil
	}
	b := make([]byte, u.leb)
	if m, _ := u.r.ReadAt(b, off); int64(m) < u.leb {
		return nil
	}
	return b
}

// parseNode checks the node at the start of b (magic, length, CRC; exactly
// n bytes when n > 0) and returns it. at is its offset, for errors.
func parseNode(b []byte, n uint32, at int64) ([]byte, ubifsCH, error) {
	le := binary.LittleEndian
	if len(b) < ubifsCommonHdr || le.Uint32(b) != ubifsMagic {
		return nil, ubifsCH{}, formatErr("ubifs", at, "bad node magic", nil)
	}
	ch := ubifsCH{sqnum: le.Uint64(b[8:]), len: le.Uint32(b[16:]), typ: b[20]}
	if ch.len < ubifsCommonHdr || int64(ch.len) > int64(len(b)) || (n > 0 && ch.len != n) {
		return nil, ch, formatErr("ubifs", at, fmt.Sprintf("node length %d", ch.len), nil)
	}
	b = b[:ch.len]
	if crcRaw(0xFFFFFFFF, b[8:]) != le.Uint32(b[4:]) {
		return nil, ch, formatErr("ubifs", at, "node CRC mismatch", nil)
	}
	return b, ch, nil
}

// node reads the CRC-checked node of n bytes at lnum:offs. The result is
// valid until the next call.
func (u *ubifsFS) node(lnum, offs, n uint32) ([]byte, ubifsCH, error) {
	at := int64(lnum)*u.leb + int64(offs)
	if int64(lnum) >= u.lebCnt || n < ubifsCommonHdr || int64(offs)+int64(n) > u.leb || at+int64(n) > u.size {
		return nil, ubifsCH{}, formatErr("ubifs", at, fmt.Sprintf("node of %d bytes at LEB %d:%d outside the image", n, lnum, offs), firmware.ErrTruncated)
	}
	if int(n) > cap(u.buf) {
		u.buf = make([]byte, n)
	}
	b := u.buf[:n]
	if m, _ := u.r.ReadAt(b, at); m < int(n) {
		return nil, ubifsCH{}, formatErr("ubifs", at, "node truncated", firmware.ErrTruncated)
	}
	return parseNode(b, n, at)
}

// scanLEB calls fn for each valid node of LEB lnum, from its start until
// the first invalid one (or, with skip, trying every 8-byte position).
func (u *ubifsFS) scanLEB(lnum uint32, skip bool, fn func(b []byte, ch ubifsCH)) {
	b := u.readLEB(lnum)
	for offs := 0; b != nil && offs+ubifsCommonHdr <= len(b); {
		nb, ch, err := parseNode(b[offs:], 0, int64(lnum)*u.leb+int64(offs))
		if err != nil {
			if !skip {
				return
			}
			offs += 8
			continue
		}
		fn(nb, ch)
		offs += int(ch.len+7) &^ 7
	}
}

func extractUBIFS(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	sb := make([]byte, ubifsSBSize)
	if _, err := src.ReadAt(sb, 0); err != nil {
		return formatErr("ubifs", 0, "reading superblock node", firmware.ErrTruncated)
	}
	le := binary.LittleEndian
	b := sb[ubifsCommonHdr:]
	u := &ubifsFS{
		r: src, size: src.Size(), leb: int64(le.Uint32(b[12:])), lebCnt: int64(le.Uint32(b[16:])),
		logLEBs: int64(le.Uint32(b[32:])), lptLEBs: int64(le.Uint32(b[36:])), orphLEBs: int64(le.Uint32(b[40:])),
		flags: le.Uint32(b[4:]), warn: out.Warn,
		inodes: map[uint32]*ubifsInode{}, dents: map[dentKey]*ubifsDent{}, data: map[uint32]map[uint32]ubifsLoc{},
	}
	if u.leb < ubifsSBSize || u.leb > 16<<20 {
		return formatErr("ubifs", ubifsCommonHdr+12, fmt.Sprintf("LEB size %d", u.leb), firmware.ErrNotFormat)
	}
	u.lebCnt = min(u.lebCnt, u.size/u.leb)
	if u.flags&ubifsFlgCrypt != 0 {
		out.Warn("ubifs: the filesystem supports encryption: encrypted files and names cannot be read")
	}
	mst, err := u.master()
	if err != nil {
		return err
	}
	le32 := func(i int) uint32 { return le.Uint32(mst[ubifsCommonHdr+i:]) }
	if err := u.walkIndex(ctx, le32(24), le32(28), le32(32)); err != nil {
		return err
	}
	if u.bad > 0 {
		out.Warn(fmt.Sprintf("ubifs: %d index entries point at missing or corrupt nodes, skipped", u.bad))
	}
	if u.dupLeaves > 0 {
		out.Warn(fmt.Sprintf("ubifs: %d index entries point at a node already indexed, skipped", u.dupLeaves))
	}
	if err := u.replayJournal(ctx, le32(20), le.Uint64(mst[32:])); err != nil {
		return err
	}
	if u.xattrs > 0 {
		out.Warn(fmt.Sprintf("ubifs: %d extended attributes ignored", u.xattrs))
	}
	u.countOrphans()
	defer func() {
		if u.zstd != nil {
			u.zstd.Close()
		}
	}()
	return u.emit(ctx, out)
}

// master returns the newest valid master node of LEBs 1 and 2.
func (u *ubifsFS) master() ([]byte, error) {
	var best []byte
	var bestSq uint64
	for lnum := uint32(ubifsMstLnum); lnum <= ubifsMstLnum+1; lnum++ {
		u.scanLEB(lnum, true, func(b []byte, ch ubifsCH) {
			if ch.typ == ubifsMstNode && ch.len >= ubifsCommonHdr+88 && (best == nil || ch.sqnum > bestSq) {
				best, bestSq = bytes.Clone(b), ch.sqnum
			}
		})
	}
	if best == nil {
		return nil, formatErr("ubifs", u.leb, "no valid master node in LEBs 1 and 2", firmware.ErrTruncated)
	}
	return best, nil
}

type idxRef struct {
	lnum, offs, len uint32
	level           int
	depth           int
}

// walkIndex walks the index B-tree from its root, collecting the leaves.
func (u *ubifsFS) walkIndex(ctx context.Context, lnum, offs, n uint32) error {
	le := binary.LittleEndian
	seen := map[uint64]bool{}
	stack := []idxRef{{lnum: lnum, offs: offs, len: n, level: -1}}
	for len(stack) > 0 {
		ref := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if u.nodes++; u.nodes > ubifsMaxNodes {
			return fmt.Errorf("ubifs: index holds more than %d nodes: %w", ubifsMaxNodes, firmware.ErrLimit)
		}
		if u.nodes%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k := uint64(ref.lnum)<<32 | uint64(ref.offs)
		if seen[k] {
			u.warn(fmt.Sprintf("ubifs: index loop at LEB %d:%d, cut", ref.lnum, ref.offs))
			continue
		}
		seen[k] = true
		b, ch, err := u.node(ref.lnum, ref.offs, ref.len)
		if err != nil || ch.typ != ubifsIdxNode || len(b) < ubifsCommonHdr+4 {
			if ref.level < 0 {
				return formatErr("ubifs", int64(ref.lnum)*u.leb+int64(ref.offs), "index root node unreadable", errors.Join(err, firmware.ErrTruncated))
			}
			u.warn(fmt.Sprintf("ubifs: index node at LEB %d:%d unreadable (%v), subtree skipped", ref.lnum, ref.offs, err))
			continue
		}
		b = bytes.Clone(b) // leaves may be in another LEB
		cnt := int(le.Uint16(b[24:]))
		level := int(le.Uint16(b[26:]))
		if cnt == 0 || (len(b)-28)%cnt != 0 || (len(b)-28)/cnt < 20 || (ref.level >= 0 && level != ref.level) || ref.depth > ubifsMaxDepth {
			u.warn(fmt.Sprintf("ubifs: index node at LEB %d:%d inconsistent (%d branches, level %d), subtree skipped", ref.lnum, ref.offs, cnt, level))
			continue
		}
		bsz := (len(b) - 28) / cnt
		for i := cnt - 1; i >= 0; i-- {
			br := b[28+i*bsz:]
			child := idxRef{lnum: le.Uint32(br), offs: le.Uint32(br[4:]), len: le.Uint32(br[8:]), level: level - 1, depth: ref.depth + 1}
			if level > 0 {
				stack = append(stack, child)
				continue
			}
			lk := uint64(child.lnum)<<32 | uint64(child.offs)
			if seen[lk] {
				u.dupLeaves++
				continue
			}
			seen[lk] = true
			if u.nodes%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			u.leaf(child)
		}
	}
	return nil
}

// leaf records one leaf node of the index.
func (u *ubifsFS) leaf(ref idxRef) {
	if u.nodes++; u.nodes > ubifsMaxNodes || ref.len > ubifsMaxNode {
		u.bad++
		return
	}
	b, ch, err := u.node(ref.lnum, ref.offs, ref.len)
	if err != nil || !u.apply(b, ch, ref.lnum, ref.offs) {
		u.bad++
	}
}

// apply records an inode, directory entry or data node when it is newer
// than what is known for its key: an inode with no links and an entry
// pointing at inode 0 are deletions (they come from the journal). It
// returns false for a node that is not a well-formed leaf.
func (u *ubifsFS) apply(b []byte, ch ubifsCH, lnum, offs uint32) bool {
	le := binary.LittleEndian
	if len(b) < ubifsCommonHdr+8 {
		return false
	}
	inum := le.Uint32(b[24:])
	kw := le.Uint32(b[28:])
	ktype := kw >> 29
	switch {
	case ch.typ == ubifsInoNode && ktype == ubifsKeyIno && len(b) >= ubifsInoHdr:
		return u.applyInode(b, ch, inum)
	case (ch.typ == ubifsDentNode && ktype == ubifsKeyDent || ch.typ == ubifsXentNode && ktype == ubifsKeyXent) && len(b) >= ubifsDentHdr:
		return u.applyDent(b, ch, inum)
	case ch.typ == ubifsDataNode && ktype == ubifsKeyData && len(b) >= ubifsDataHdr:
		block := kw & (1<<29 - 1)
		m := u.data[inum]
		if m == nil {
			m = map[uint32]ubifsLoc{}
			u.data[inum] = m
		}
		if old, ok := m[block]; ok && old.sqnum > ch.sqnum {
			return true
		}
		m[block] = ubifsLoc{lnum: lnum, offs: offs, len: ch.len, sqnum: ch.sqnum}
		return true
	default:
		return false
	}
}

// applyInode records inode node b of inode inum (see apply).
func (u *ubifsFS) applyInode(b []byte, ch ubifsCH, inum uint32) bool {
	le := binary.LittleEndian
	dl := le.Uint32(b[112:])
	if int(dl) > len(b)-ubifsInoHdr {
		return false
	}
	if old := u.inodes[inum]; old != nil && old.sqnum > ch.sqnum {
		return true
	}
	ino := &ubifsInode{
		sqnum: ch.sqnum, size: le.Uint64(b[48:]), mtime: int64(le.Uint64(b[72:])), mtimeNs: le.Uint32(b[88:]),
		nlink: le.Uint32(b[92:]), uid: le.Uint32(b[96:]), gid: le.Uint32(b[100:]), mode: le.Uint32(b[104:]),
		flags: le.Uint32(b[108:]), data: bytes.Clone(b[ubifsInoHdr : ubifsInoHdr+int(dl)]),
	}
	if ino.nlink == 0 {
		delete(u.inodes, inum)
		delete(u.data, inum)
		return true
	}
	u.inodes[inum] = ino
	return true
}

// applyDent records directory entry node b of directory inum (see apply);
// extended attribute entries are only counted.
func (u *ubifsFS) applyDent(b []byte, ch ubifsCH, inum uint32) bool {
	le := binary.LittleEndian
	nlen := int(le.Uint16(b[50:]))
	if nlen == 0 || nlen > 255 || ubifsDentHdr+nlen > len(b) {
		return false
	}
	if ch.typ == ubifsXentNode {
		u.xattrs++
		return true
	}
	d := &ubifsDent{sqnum: ch.sqnum, inum: le.Uint64(b[40:]), typ: b[49], name: string(b[ubifsDentHdr : ubifsDentHdr+nlen])}
	k := dentKey{inum, d.name}
	if old := u.dents[k]; old != nil && old.sqnum > d.sqnum {
		return true
	}
	if d.inum == 0 {
		delete(u.dents, k)
		return true
	}
	u.dents[k] = d
	return true
}

// countOrphans reports orphan nodes (inodes deleted while open), which are ignored.
func (u *ubifsFS) countOrphans() {
	n := 0
	first := ubifsLogLnum + u.logLEBs + u.lptLEBs
	for i := range min(u.orphLEBs, u.lebCnt) {
		u.scanLEB(uint32(first+i), false, func(_ []byte, ch ubifsCH) {
			if ch.typ == ubifsOrphNode {
				n++
			}
		})
	}
	if n > 0 {
		u.warn(fmt.Sprintf("ubifs: %d orphan nodes (deleted inodes still open at the last commit) ignored", n))
	}
}

// emit walks the directory tree from the root inode and hands every entry to out.
func (u *ubifsFS) emit(ctx context.Context, out firmware.Sink) error {
	if u.inodes[ubifsRootIno] == nil {
		out.Warn("ubifs: no root inode")
	}
	w := &ubifsWalk{
		u: u, out: out, children: u.children(),
		firstPath:  map[uint32]string{},
		visitedDir: map[uint32]bool{ubifsRootIno: true},
		emitted:    map[uint32]bool{ubifsRootIno: true},
	}
	stack := []ubifsDirItem{{dir: ubifsRootIno}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		kids := w.children[it.dir]
		for i := len(kids) - 1; i >= 0; i-- {
			if err := ctx.Err(); err != nil {
				return err
			}
			sub, err := w.entry(ctx, it, kids[i])
			if err != nil {
				return err
			}
			if sub != nil {
				stack = append(stack, *sub)
			}
		}
	}
	w.warnSkipped()
	return nil
}

// children returns the directory entries of each directory inode, sorted by
// name; deletion entries are left out.
func (u *ubifsFS) children() map[uint32][]*ubifsDent {
	children := map[uint32][]*ubifsDent{}
	for k, d := range u.dents {
		if d.inum == 0 {
			continue // a deletion entry
		}
		children[k.parent] = append(children[k.parent], d)
	}
	for _, c := range children {
		slices.SortFunc(c, func(a, b *ubifsDent) int {
			switch {
			case a.name < b.name:
				return -1
			case a.name > b.name:
				return 1
			}
			return 0
		})
	}
	return children
}

// ubifsWalk is the state of emit's walk of the directory tree.
type ubifsWalk struct {
	u                       *ubifsFS
	out                     firmware.Sink
	children                map[uint32][]*ubifsDent
	firstPath               map[uint32]string
	visitedDir              map[uint32]bool
	emitted                 map[uint32]bool
	missing, badName, loops int
}

// ubifsDirItem is a directory waiting to be walked.
type ubifsDirItem struct {
	dir   uint32
	path  string
	depth int
}

// entry emits the entry d of directory it; it returns the directory to walk
// next when d is one reached for the first time.
func (w *ubifsWalk) entry(ctx context.Context, it ubifsDirItem, d *ubifsDent) (*ubifsDirItem, error) {
	if d.name == "." || d.name == ".." || bytes.ContainsAny([]byte(d.name), "/\x00") {
		w.badName++
		return nil, nil
	}
	p := d.name
	if it.path != "" {
		p = it.path + "/" + d.name
	}
	if d.inum > 0xFFFFFFFF {
		w.missing++
		return nil, nil
	}
	inum := uint32(d.inum)
	ino := w.u.inodes[inum]
	if ino == nil {
		w.missing++
		return nil, nil
	}
	w.emitted[inum] = true
	if err := w.u.emitOne(ctx, w.out, p, inum, ino, w.firstPath); err != nil {
		return nil, err
	}
	if ino.mode&fmtutil.IFMT != fmtutil.IFDIR {
		return nil, nil
	}
	if w.visitedDir[inum] {
		w.loops++
		return nil, nil
	}
	w.visitedDir[inum] = true
	if it.depth+1 > ubifsMaxPathDepth {
		w.loops++
		return nil, nil
	}
	return &ubifsDirItem{dir: inum, path: p, depth: it.depth + 1}, nil
}

// warnSkipped reports the entries the walk skipped and the inodes it never
// reached.
func (w *ubifsWalk) warnSkipped() {
	if w.missing > 0 {
		w.out.Warn(fmt.Sprintf("ubifs: %d directory entries point at missing inodes, skipped", w.missing))
	}
	if w.badName > 0 {
		w.out.Warn(fmt.Sprintf("ubifs: %d directory entries with an invalid name, skipped", w.badName))
	}
	if w.loops > 0 {
		w.out.Warn(fmt.Sprintf("ubifs: %d directories reached twice or too deep (a loop), not descended", w.loops))
	}
	unreached := 0
	for inum, ino := range w.u.inodes {
		if !w.emitted[inum] && ino.flags&ubifsXattrFl == 0 && ino.nlink > 0 {
			unreached++
		}
	}
	if unreached > 0 {
		w.out.Warn(fmt.Sprintf("ubifs: %d inodes not reachable from the root directory, not extracted", unreached))
	}
}

func (u *ubifsFS) emitOne(ctx context.Context, out firmware.Sink, p string, inum uint32, ino *ubifsInode, firstPath map[uint32]string) error {
	h := &firmware.Header{
		Name: p, Mode: unixmode.FromUnix(ino.mode), UID: int(ino.uid), GID: int(ino.gid),
		ModTime: time.Unix(ino.mtime, int64(ino.mtimeNs%1e9)).UTC(), Size: -1,
	}
	var r io.Reader
	switch ino.mode & fmtutil.IFMT {
	case fmtutil.IFDIR:
		h.Type = firmware.TypeDir
	case fmtutil.IFLNK:
		h.Type = firmware.TypeSymlink
		h.Linkname = string(ino.data)
	case fmtutil.IFCHR, fmtutil.IFBLK:
		h.Type = firmware.TypeCharDevice
		if ino.mode&fmtutil.IFMT == fmtutil.IFBLK {
			h.Type = firmware.TypeBlockDevice
		}
		var dev uint64
		switch len(ino.data) {
		case 4:
			dev = uint64(binary.LittleEndian.Uint32(ino.data))
		case 8:
			dev = binary.LittleEndian.Uint64(ino.data)
		default:
			out.Warn(fmt.Sprintf("ubifs: %s: device number of %d bytes", p, len(ino.data)))
		}
		// Linux new_encode_dev: minor low byte, major, then the minor's high bits.
		h.Devmajor = uint32(dev>>8) & 0xFFF
		h.Devminor = uint32(dev&0xFF) | uint32(dev>>12)&^0xFF
	case fmtutil.IFIFO:
		h.Type = firmware.TypeFIFO
	case fmtutil.IFSOCK:
		h.Type = firmware.TypeSocket
	case fmtutil.IFREG:
		if first, ok := firstPath[inum]; ok {
			h.Type = firmware.TypeHardlink
			h.Linkname = first
			break
		}
		firstPath[inum] = p
		h.Type = firmware.TypeFile
		if ino.flags&ubifsCryptFl != 0 {
			out.Warn(fmt.Sprintf("ubifs: %s is encrypted, content not extracted", p))
			h.Size = 0
			break
		}
		h.Size = int64(min(ino.size, 1<<62))
		r = &ubifsFileReader{ctx: ctx, u: u, p: p, inum: inum, size: h.Size, warn: out.Warn}
	default:
		out.Warn(fmt.Sprintf("ubifs: %s: unknown file type in mode %#o, skipped", p, ino.mode))
		return nil
	}
	if h.Type != firmware.TypeFile {
		h.Size = 0
	}
	return out.Add(h, r)
}

// ubifsFileReader streams a regular file block by block: data nodes are
// decompressed, missing blocks (holes) read as zeros.
type ubifsFileReader struct {
	ctx   context.Context
	u     *ubifsFS
	p     string
	inum  uint32
	size  int64
	pos   int64
	block []byte
	bpos  int
	bad   int
	warn  func(string)
}

func (f *ubifsFileReader) Read(p []byte) (int, error) {
	if f.bpos >= len(f.block) {
		if f.pos >= f.size {
			if f.bad > 0 {
				f.warn(fmt.Sprintf("ubifs: %s: %d data blocks unreadable, zero-filled", f.p, f.bad))
				f.bad = 0
			}
			return 0, io.EOF
		}
		if err := f.ctx.Err(); err != nil {
			return 0, err
		}
		blk := f.pos / ubifsBlockSize
		n := min(int64(ubifsBlockSize), f.size-blk*ubifsBlockSize)
		if cap(f.block) < ubifsBlockSize {
			f.block = make([]byte, ubifsBlockSize)
		}
		f.block = f.block[:n]
		clear(f.block)
		if blk < 1<<29 {
			if loc, ok := f.u.data[f.inum][uint32(blk)]; ok {
				if err := f.u.readBlock(loc, f.block); err != nil {
					f.bad++
				}
			}
		}
		f.bpos = 0
		f.pos += n
	}
	n := copy(p, f.block[f.bpos:])
	f.bpos += n
	return n, nil
}

// readBlock decompresses the data node at loc into dst (whose length is
// the bytes wanted; a short block leaves zeros).
func (u *ubifsFS) readBlock(loc ubifsLoc, dst []byte) error {
	b, ch, err := u.node(loc.lnum, loc.offs, loc.len)
	if err != nil {
		return err
	}
	if ch.typ != ubifsDataNode || len(b) < ubifsDataHdr {
		return fmt.Errorf("ubifs: not a data node at LEB %d:%d", loc.lnum, loc.offs)
	}
	le := binary.LittleEndian
	size := int(le.Uint32(b[40:]))
	compr := le.Uint16(b[44:])
	if size > ubifsBlockSize {
		return fmt.Errorf("ubifs: data node of %d bytes", size)
	}
	src := b[ubifsDataHdr:]
	var buf [ubifsBlockSize]byte
	out := buf[:size]
	var n int
	switch compr {
	case 0:
		n = copy(out, src)
	case 1:
		n, err = lzoBlock(out, src)
	case 2:
		zr := flate.NewReader(bytes.NewReader(src))
		n, err = io.ReadFull(zr, out)
		zr.Close()
	case 3:
		if u.zstd == nil {
			u.zstd, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<20),
				zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxWindow(1<<20))
			if err != nil {
				return err
			}
		}
		var d []byte
		d, err = u.zstd.DecodeAll(src, out[:0])
		n = len(d)
	default:
		return fmt.Errorf("ubifs: unknown compressor %d", compr)
	}
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("ubifs: data node decompressed to %d bytes, want %d", n, size)
	}
	copy(dst, out)
	return nil
}

func lzoBlock(dst, src []byte) (n int, err error) {
	// The LZO decoder indexes slices directly; a hostile stream that slips
	// past its checks must become an error, not a crash.
	defer func() {
		if p := recover(); p != nil {
			n, err = 0, fmt.Errorf("lzo: corrupt stream (%v)", p)
		}
	}()
	return lzo.Decompress(src, dst)
}

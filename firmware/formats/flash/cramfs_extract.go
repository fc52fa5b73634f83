package flash

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// The cramfs on-disk layout (Linux include/uapi/linux/cramfs_fs.h), as read
// here:
//
//   - superblock (76 bytes): magic, size, flags, future, "Compressed ROMFS",
//     fsid {crc, edition, blocks, files}, name[16], then the root inode.
//     A big-endian image (mkfs.cramfs -N big, MIPS boards) stores every u32
//     byte-swapped.
//   - inode (12 bytes), three u32 words holding C bitfields: mode:16 uid:16;
//     size:24 gid:8; namelen:6 offset:26. A little-endian compiler packs
//     bitfields from the low bit, a big-endian one from the high bit, so the
//     big-endian words read as mode<<16|uid, size<<8|gid, namelen<<26|offset.
//     namelen and offset count 4-byte units. The size of a device node is its
//     rdev (Linux new_encode_dev).
//   - a directory's offset points at its entries (size bytes in all): each
//     an inode followed by its NUL-padded name. Sub-directories are laid out
//     after their parent, so an offset never points back to an ancestor in a
//     sane image.
//   - a regular file or symlink's offset points at one u32 per 4 KiB page,
//     then the data. Without CRAMFS_FLAG_EXT_BLOCK_POINTERS a pointer is the
//     image offset one past the page's zlib stream, which starts where the
//     previous page's ended (the first right after the pointer table); an
//     empty stream is a hole (CRAMFS_FLAG_HOLES). With the flag, bit 31 marks
//     an uncompressed page and bit 30 a direct pointer: the page starts at
//     (ptr&^flags)<<2, its length is a u16 before the data when compressed
//     and the page (or the file's tail) when not.
//
// cramfs has no hard links: mkfs.cramfs points identical files at the same
// data, and each name is extracted as a file of its own.
const (
	cramfsFlagSorted      = 0x2
	cramfsFlagHoles       = 0x100
	cramfsFlagWrongSig    = 0x200
	cramfsFlagShifted     = 0x400
	cramfsFlagExtPointers = 0x800
	cramfsSupportedFlags  = 0xff | cramfsFlagHoles | cramfsFlagWrongSig | cramfsFlagShifted | cramfsFlagExtPointers

	cramfsBlkUncompressed = 1 << 31
	cramfsBlkDirect       = 1 << 30
	cramfsBlkFlags        = cramfsBlkUncompressed | cramfsBlkDirect

	cramfsPage     = 4096
	cramfsInodeLen = 12
	// cramfsMaxEntries bounds the entries read from all directories; real
	// root filesystems hold a few thousand.
	cramfsMaxEntries = 1 << 20
	cramfsMaxDepth   = 128
)

// cramfsInode is one decoded inode.
type cramfsInode struct {
	mode     uint32 // Unix mode, with the S_IFMT type
	uid, gid int
	size     uint32 // bytes for files, dirs and symlinks; rdev for devices
	nameLen  int    // bytes
	offset   int64  // bytes from the image start
}

func (in *cramfsInode) typ() uint32 { return in.mode & fmtutil.IFMT }

func decodeCramfsInode(b []byte, bo binary.ByteOrder) cramfsInode {
	w0, w1, w2 := bo.Uint32(b), bo.Uint32(b[4:]), bo.Uint32(b[8:])
	if bo == binary.ByteOrder(binary.BigEndian) {
		return cramfsInode{mode: w0 >> 16, uid: int(w0 & 0xffff), size: w1 >> 8, gid: int(w1 & 0xff),
			nameLen: int(w2>>26) * 4, offset: int64(w2&0x3ffffff) * 4}
	}
	return cramfsInode{mode: w0 & 0xffff, uid: int(w0 >> 16), size: w1 & 0xffffff, gid: int(w1 >> 24),
		nameLen: int(w2&0x3f) * 4, offset: int64(w2>>6) * 4}
}

// cramfsImage reads one image: r covers it, from its superblock.
type cramfsImage struct {
	r io.ReaderAt
	// shift is the image offset of the superblock: 512 when mkfs.cramfs -p
	// left a boot-code pad before it (offsets then count from the pad, which
	// is outside the chunk), else 0.
	shift int64
	size  int64 // end of the image, in image offsets (shift + bytes in r)
	page  int64 // block size: the page size of the kernel that made it, 4096 but for rare images
	bo    binary.ByteOrder
	flags uint32
	root  cramfsInode
	warn  func(string)
}

// cramfsPad is the boot-code pad of mkfs.cramfs -p.
const cramfsPad = 512

func openCramfs(r io.ReaderAt, size, shift int64, warn func(string)) (*cramfsImage, error) {
	if size < cramfsSuperSize {
		return nil, formatErr("cramfs", 0, "too short for a superblock", firmware.ErrNotFormat)
	}
	var b [cramfsSuperSize]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, formatErr("cramfs", 0, "reading superblock", firmware.ErrTruncated)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if binary.BigEndian.Uint32(b[:]) == cramfsMagic {
		bo = binary.BigEndian
	} else if binary.LittleEndian.Uint32(b[:]) != cramfsMagic {
		return nil, formatErr("cramfs", 0, "bad magic", firmware.ErrNotFormat)
	}
	return &cramfsImage{r: r, shift: shift, size: shift + size, page: cramfsPage, bo: bo, flags: bo.Uint32(b[8:]),
		root: decodeCramfsInode(b[64:], bo), warn: warn}, nil
}

func (im *cramfsImage) read(off int64, n int) ([]byte, error) {
	if off < im.shift || n < 0 || off+int64(n) > im.size {
		return nil, formatErr("cramfs", off, fmt.Sprintf("%d bytes outside the %d-byte image", n, im.size), firmware.ErrTruncated)
	}
	b := make([]byte, n)
	if _, err := im.r.ReadAt(b, off-im.shift); err != nil {
		return nil, formatErr("cramfs", off, "reading", err)
	}
	return b, nil
}

// cramfsDir is a directory waiting to be listed.
type cramfsDir struct {
	name  string
	in    cramfsInode
	depth int
}

// walk visits every entry below the root, parents before children. It
// reports damage through im.warn and keeps what it can read: a directory
// offset already entered (a cycle or a shared directory) is not entered
// again, nesting and the entry count are bounded.
func (im *cramfsImage) walk(ctx context.Context, visit func(name string, in cramfsInode) error) error {
	if im.root.typ() != fmtutil.IFDIR {
		return formatErr("cramfs", 64, fmt.Sprintf("root inode mode %#o is not a directory", im.root.mode), nil)
	}
	// Directories at distinct but overlapping offsets could make the walk
	// read the image over and over: bound the bytes listed.
	w := &cramfsWalk{im: im, visit: visit, entered: map[int64]bool{}, budget: 2*im.size + 1<<20}
	stack := []cramfsDir{{in: im.root}}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		data, stop := w.enter(d)
		if stop {
			return nil
		}
		if data == nil {
			continue
		}
		subdirs, stop, err := w.list(d, data)
		if err != nil || stop {
			return err
		}
		// Push in reverse so directories are listed in image order.
		for i := len(subdirs) - 1; i >= 0; i-- {
			stack = append(stack, subdirs[i])
		}
	}
	return nil
}

// cramfsWalk is the state of a walk over the directory tree.
type cramfsWalk struct {
	im      *cramfsImage
	visit   func(name string, in cramfsInode) error
	entered map[int64]bool // directory offsets already listed
	entries int
	budget  int64 // bytes of directories left to list
}

// enter returns the bytes of directory d's entries, or nil (with a warning
// unless it is empty) when it is not to be entered; stop ends the walk.
func (w *cramfsWalk) enter(d cramfsDir) (data []byte, stop bool) {
	im := w.im
	where := "/" + d.name
	if d.in.size == 0 {
		return nil, false
	}
	if w.entered[d.in.offset] {
		im.warn(fmt.Sprintf("cramfs: directory %s: offset %#x was already listed (a directory cycle); not entered again", where, d.in.offset))
		return nil, false
	}
	w.entered[d.in.offset] = true
	if d.depth >= cramfsMaxDepth {
		im.warn(fmt.Sprintf("cramfs: directory %s: nesting deeper than %d; not entered", where, cramfsMaxDepth))
		return nil, false
	}
	if d.in.offset < im.shift+cramfsSuperSize {
		im.warn(fmt.Sprintf("cramfs: directory %s: entries at %#x overlap the superblock; not entered", where, d.in.offset))
		return nil, false
	}
	if w.budget -= int64(d.in.size); w.budget < 0 {
		im.warn(fmt.Sprintf("cramfs: directories list more than twice the image's bytes (overlapping directories); %s and the rest are not entered", where))
		return nil, true
	}
	data, err := im.read(d.in.offset, int(d.in.size))
	if err != nil {
		im.warn(fmt.Sprintf("cramfs: directory %s: entries [%#x, +%d) outside the %d-byte image; not entered", where, d.in.offset, d.in.size, im.size))
		return nil, false
	}
	return data, false
}

// list visits the entries of directory d (data holds them) and returns its
// subdirectories; stop ends the walk (too many entries).
func (w *cramfsWalk) list(d cramfsDir, data []byte) (subdirs []cramfsDir, stop bool, err error) {
	im := w.im
	where := "/" + d.name
	for pos := 0; pos < len(data); {
		if pos+cramfsInodeLen > len(data) {
			im.warn(fmt.Sprintf("cramfs: directory %s: %d stray bytes at %#x", where, len(data)-pos, d.in.offset+int64(pos)))
			break
		}
		in := decodeCramfsInode(data[pos:], im.bo)
		nameAt := pos + cramfsInodeLen
		if in.nameLen == 0 || nameAt+in.nameLen > len(data) {
			im.warn(fmt.Sprintf("cramfs: directory %s: entry at %#x has a name of %d bytes past the directory's end; rest of the directory dropped",
				where, d.in.offset+int64(pos), in.nameLen))
			break
		}
		name := string(bytes.TrimRight(data[nameAt:nameAt+in.nameLen], "\x00"))
		pos = nameAt + in.nameLen
		if w.entries++; w.entries > cramfsMaxEntries {
			im.warn(fmt.Sprintf("cramfs: more than %d entries; the rest are dropped", cramfsMaxEntries))
			return nil, true, nil
		}
		if name == "" {
			im.warn(fmt.Sprintf("cramfs: directory %s: entry at %#x has an empty name; dropped", where, d.in.offset+int64(pos)))
			continue
		}
		full := path.Join(d.name, name)
		if d.name == "" {
			full = name
		}
		if err := w.visit(full, in); err != nil {
			return nil, false, err
		}
		if in.typ() == fmtutil.IFDIR {
			subdirs = append(subdirs, cramfsDir{name: full, in: in, depth: d.depth + 1})
		}
	}
	return subdirs, false, nil
}

// cramfsFile reads the pages of one regular file or symlink in order.
type cramfsFile struct {
	im   *cramfsImage
	name string
	in   cramfsInode
	ptrs []uint32
	page int    // next page to decode
	buf  []byte // decoded bytes not yet returned
	zr   io.ReadCloser
	dec  []byte
	err  error
}

var errCramfsBlock = errors.New("bad data block")

func (im *cramfsImage) open(name string, in cramfsInode) (*cramfsFile, error) {
	f := &cramfsFile{im: im, name: name, in: in}
	if in.size == 0 {
		return f, nil
	}
	n := int((int64(in.size) + im.page - 1) / im.page)
	table, err := im.read(in.offset, 4*n)
	if err != nil || in.offset < im.shift+cramfsSuperSize {
		return nil, formatErr("cramfs", in.offset, fmt.Sprintf("block pointers of %d pages outside the image", n), firmware.ErrTruncated)
	}
	f.ptrs = make([]uint32, n)
	for i := range f.ptrs {
		f.ptrs[i] = im.bo.Uint32(table[4*i:])
	}
	return f, nil
}

// block returns the extent of page i and whether it is stored uncompressed,
// as the kernel's cramfs_read_folio computes them.
func (f *cramfsFile) block(i int) (start, n int64, raw bool, err error) {
	ext := f.im.flags&cramfsFlagExtPointers != 0
	ptr := f.ptrs[i]
	if !ext {
		start = f.in.offset + 4*int64(len(f.ptrs))
		if i > 0 {
			start = int64(f.ptrs[i-1])
		}
		return start, int64(ptr) - start, false, nil
	}
	raw = ptr&cramfsBlkUncompressed != 0
	if ptr&cramfsBlkDirect != 0 {
		start = int64(ptr&^cramfsBlkFlags) << 2
		if raw {
			n = min(f.im.page, int64(f.in.size)-int64(i)*f.im.page)
			return start, n, true, nil
		}
		l, err := f.im.read(start, 2)
		if err != nil {
			return 0, 0, false, err
		}
		return start + 2, int64(f.im.bo.Uint16(l)), false, nil
	}
	start = f.in.offset + 4*int64(len(f.ptrs))
	if i > 0 {
		prev := f.ptrs[i-1]
		start = int64(prev &^ cramfsBlkFlags)
		if prev&cramfsBlkDirect != 0 {
			start <<= 2
			if prev&cramfsBlkUncompressed != 0 {
				start += f.im.page
			} else {
				l, err := f.im.read(start, 2)
				if err != nil {
					return 0, 0, false, err
				}
				start += 2 + int64(f.im.bo.Uint16(l))
			}
		}
	}
	return start, int64(ptr&^cramfsBlkFlags) - start, raw, nil
}

func (f *cramfsFile) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if f.page >= len(f.ptrs) {
			f.err = io.EOF
			continue
		}
		if err := f.next(); err != nil {
			f.err = err
		}
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// next decodes the next page into f.buf.
func (f *cramfsFile) next() error {
	i := f.page
	f.page++
	want := min(f.im.page, int64(f.in.size)-int64(i)*f.im.page)
	start, n, raw, err := f.block(i)
	bad := func(msg string) error {
		return formatErr("cramfs", start, fmt.Sprintf("%s: page %d of %d: %s", f.name, i, len(f.ptrs), msg), errCramfsBlock)
	}
	switch {
	case err != nil:
		return bad("block start: " + err.Error())
	case n == 0: // a hole
		f.buf = make([]byte, want)
		return nil
	case n < 0 || n > 2*f.im.page || (raw && n > f.im.page):
		return bad(fmt.Sprintf("block length %d", n))
	case start < f.im.shift+cramfsSuperSize || start+n > f.im.size:
		return bad(fmt.Sprintf("block [%#x, +%d) outside the image", start, n))
	}
	data, err := f.im.read(start, int(n))
	if err != nil {
		return bad(err.Error())
	}
	if raw {
		f.buf = data[:min(int64(len(data)), want)]
	} else {
		if f.dec == nil {
			f.dec = make([]byte, f.im.page+1)
		}
		if f.zr == nil {
			f.zr, err = zlib.NewReader(bytes.NewReader(data))
		} else {
			err = f.zr.(zlib.Resetter).Reset(bytes.NewReader(data), nil)
		}
		if err != nil {
			f.zr = nil
			return bad(err.Error())
		}
		m, err := io.ReadFull(f.zr, f.dec)
		if err != io.ErrUnexpectedEOF && err != io.EOF {
			if err == nil {
				return bad(fmt.Sprintf("inflates past %d bytes", f.im.page))
			}
			return bad(err.Error())
		}
		f.buf = f.dec[:m]
	}
	if int64(len(f.buf)) != want {
		got := len(f.buf)
		f.buf = append(f.buf[:got:got], make([]byte, max(0, want-int64(got)))...)[:want]
		f.im.warn(fmt.Sprintf("cramfs: %s: page %d holds %d bytes, want %d; zero-filled as the kernel does", f.name, i, got, want))
	}
	return nil
}

var errFound = errors.New("found")

// detectPage finds the block size from the first file of more than 4 KiB
// without extended pointers: its first zlib stream starts right after its
// block pointer table, whose length depends on the block size. It returns
// 4096 when nothing tells otherwise.
func (im *cramfsImage) detectPage(ctx context.Context) int64 {
	if im.flags&cramfsFlagExtPointers != 0 {
		return cramfsPage
	}
	page := int64(cramfsPage)
	warn := im.warn
	im.warn = func(string) {}
	defer func() { im.warn = warn }()
	im.walk(ctx, func(name string, in cramfsInode) error {
		if in.typ() != fmtutil.IFREG || in.size <= cramfsPage {
			return nil
		}
		for p := int64(cramfsPage); p <= 1<<16; p *= 2 {
			start := in.offset + 4*((int64(in.size)+p-1)/p)
			ptr, err1 := im.read(start-4*((int64(in.size)+p-1)/p), 4)
			hdr, err2 := im.read(start, 2)
			if err1 != nil || err2 != nil {
				continue
			}
			end := int64(im.bo.Uint32(ptr))
			if end == start {
				continue // a hole: says nothing
			}
			if end > start && hdr[0]&0x0f == 8 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
				page = p
				break
			}
		}
		return errFound
	})
	return page
}

// extractCramfs is Cramfs.Extract.
func extractCramfs(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	shift, _ := c.Meta["pad"].(int64)
	im, err := openCramfs(src, src.Size(), shift, out.Warn)
	if err != nil {
		return err
	}
	if p := im.detectPage(ctx); p != cramfsPage {
		im.page = p
		out.Warn(fmt.Sprintf("cramfs: %d-byte blocks (made for a kernel with %d-byte pages)", p, p))
	}
	if u := im.flags &^ cramfsSupportedFlags; u != 0 {
		out.Warn(fmt.Sprintf("cramfs: unknown flags %#x; reading as if absent", u))
	}
	mtime := time.Unix(0, 0).UTC() // cramfs stores no times
	return im.walk(ctx, func(name string, in cramfsInode) error {
		h := &firmware.Header{Name: name, Mode: unixmode.FromUnix(in.mode),
			UID: in.uid, GID: in.gid, ModTime: mtime, Size: -1}
		switch in.typ() {
		case fmtutil.IFDIR:
			h.Type = firmware.TypeDir
			return out.Add(h, nil)
		case fmtutil.IFREG, fmtutil.IFLNK:
			f, err := im.open(name, in)
			if err != nil {
				out.Warn(fmt.Sprintf("%v; %s not extracted", err, name))
				return nil
			}
			if in.typ() == fmtutil.IFLNK {
				target, err := io.ReadAll(io.LimitReader(f, 4096))
				if err != nil {
					out.Warn(fmt.Sprintf("%v; symlink %s not extracted", err, name))
					return nil
				}
				h.Type, h.Linkname = firmware.TypeSymlink, string(target)
				return out.Add(h, nil)
			}
			h.Type, h.Size = firmware.TypeFile, int64(in.size)
			err = out.Add(h, f)
			if f.zr != nil {
				f.zr.Close()
			}
			if err != nil && errors.Is(err, errCramfsBlock) {
				out.Warn(fmt.Sprintf("%v; content truncated", err))
				return nil
			}
			return err
		case fmtutil.IFCHR, fmtutil.IFBLK:
			h.Type = firmware.TypeCharDevice
			if in.typ() == fmtutil.IFBLK {
				h.Type = firmware.TypeBlockDevice
			}
			h.Devmajor, h.Devminor = (in.size&0xfff00)>>8, (in.size&0xff)|(in.size>>12)&0xfff00
			return out.Add(h, nil)
		case fmtutil.IFIFO:
			h.Type = firmware.TypeFIFO
			return out.Add(h, nil)
		case fmtutil.IFSOCK:
			h.Type = firmware.TypeSocket
			return out.Add(h, nil)
		}
		out.Warn(fmt.Sprintf("cramfs: %s: mode %#o has no file type; dropped", name, in.mode))
		return nil
	})
}

// cramfsExtent measures a version 1 image, whose superblock has no size:
// the end of the furthest directory, pointer table or data block, rounded
// up to the page the way mkfs.cramfs pads.
func cramfsExtent(r io.ReaderAt, size int64) int64 {
	im, err := openCramfs(r, size, 0, func(string) {})
	if err != nil {
		return 0
	}
	end := int64(cramfsSuperSize)
	if im.root.size > 0 {
		end = max(end, im.root.offset+int64(im.root.size))
	}
	ctx := context.Background()
	err = im.walk(ctx, func(name string, in cramfsInode) error {
		switch in.typ() {
		case fmtutil.IFDIR:
			if in.size > 0 {
				end = max(end, in.offset+int64(in.size))
			}
		case fmtutil.IFREG, fmtutil.IFLNK:
			f, err := im.open(name, in)
			if err != nil || len(f.ptrs) == 0 {
				return nil
			}
			end = max(end, in.offset+4*int64(len(f.ptrs)))
			for i := range f.ptrs {
				if start, n, _, err := f.block(i); err == nil && n > 0 && start+n <= size {
					end = max(end, start+n)
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0
	}
	return min(size, (end+cramfsPage-1)/cramfsPage*cramfsPage)
}

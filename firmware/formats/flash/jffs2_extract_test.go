package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
	"github.com/ulikunitz/xz/lzma"
)

// jffs2Fixtures are the images jffs2-recipe.sh builds from the tree that
// jffs2-tree.txt lists, with the data compressions each must use.
var jffs2Fixtures = []struct {
	file   string
	comprs []uint8
}{
	{"jffs2-le-8k-none.img", []uint8{jffs2ComprNone}},
	{"jffs2-be-128k-lzo.img", []uint8{jffs2ComprNone, jffs2ComprLZO}},
	{"jffs2-le-256k-rtime.img", []uint8{jffs2ComprNone, jffs2ComprRtime}},
	{"jffs2-be-appended.img", []uint8{jffs2ComprNone, jffs2ComprZlib}},
	{"jffs2-be-8k-summary.img", []uint8{jffs2ComprNone, jffs2ComprZlib}},
}

// TestJFFS2Tree extracts every mkfs.jffs2 fixture and compares the result
// with the listing of the source tree, byte for byte: type, mode, size,
// sha256, link target and device numbers. Hard links are compared as the
// file they name.
func TestJFFS2Tree(t *testing.T) {
	want := strings.Split(strings.TrimSpace(string(firmwaretest.ReadFixture(t, "jffs2-tree.txt"))), "\n")
	slices.Sort(want)
	for _, fx := range jffs2Fixtures {
		t.Run(fx.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, fx.file)
			if got := jffs2Comprs(t, fx.file, data); !slices.Equal(got, fx.comprs) {
				t.Errorf("compressions used: %v, want %v", got, fx.comprs)
			}
			res := firmwaretest.MustRun(t, JFFS2, data, 0)
			got := jffs2Listing(res.Sink)
			if !slices.Equal(got, want) {
				t.Errorf("listing differs:\n%s", firmwaretest.ListingDiff(want, got))
			}
			if e, _ := res.Sink.Entry("etc/passwd-"); e.Header.Type != firmware.TypeHardlink || e.Header.Linkname != "etc/passwd" {
				t.Errorf("etc/passwd- = %+v, want a hard link to etc/passwd", e.Header)
			}
			if fx.file != "jffs2-be-appended.img" && len(res.Sink.Warnings) > 0 {
				t.Errorf("warnings: %q", res.Sink.Warnings)
			}
		})
	}
}

// TestJFFS2Appended: the appendage mkfs.jffs2 -i writes after an image of an
// older tree re-points every name at new inodes; the older inodes stay on
// flash unnamed, and the report says so.
func TestJFFS2Appended(t *testing.T) {
	res := firmwaretest.MustRun(t, JFFS2, firmwaretest.ReadFixture(t, "jffs2-be-appended.img"), 0)
	if conf, _ := res.Sink.File("etc/ipcam.conf"); !bytes.HasPrefix(conf, []byte("rtsp_port=554")) {
		t.Errorf("etc/ipcam.conf = %q, want the newer version", conf)
	}
	if len(res.Sink.Warnings) != 2 || !strings.Contains(res.Sink.Warnings[0], "unreachable") || !strings.Contains(res.Sink.Warnings[1], "no directory entry names") {
		t.Errorf("warnings: %q", res.Sink.Warnings)
	}
}

// jffs2Comprs lists the compressions of the data nodes in an image.
// Only the images named "summary" hold erase block summary nodes.
func jffs2Comprs(t *testing.T, name string, data []byte) []uint8 {
	bo, _ := jffs2Endian(data)
	walk := newJFFS2Walker(newWindow(bytes.NewReader(data), int64(len(data))), bo, 0, int64(len(data)))
	seen := map[uint8]bool{}
	summaries := 0
	for {
		pos, typ, _, _, ok := walk.next()
		if !ok {
			break
		}
		if typ == jffs2Summary {
			summaries++
		}
		if typ == jffs2Inode && bo.Uint32(data[pos+52:]) > 0 {
			seen[data[pos+56]] = true
		}
	}
	if strings.Contains(name, "summary") != (summaries > 0) {
		t.Errorf("%d erase block summary nodes", summaries)
	}
	var out []uint8
	for c := range seen {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// jffs2Listing renders the entries as jffs2-tree.txt does.
func jffs2Listing(s *firmwaretest.MemSink) []string {
	var out []string
	for _, e := range s.Entries {
		h := e.Header
		mode := fmt.Sprintf("%04o", unixmode.ToUnix(h.Mode))
		var line string
		switch h.Type {
		case firmware.TypeDir:
			line = fmt.Sprintf("dir %s 0 - %s", mode, h.Name)
		case firmware.TypeFile, firmware.TypeHardlink:
			data := e.Data
			if h.Type == firmware.TypeHardlink {
				data, _ = s.File(h.Linkname)
			}
			line = fmt.Sprintf("file %s %d %x %s", mode, len(data), sha256.Sum256(data), h.Name)
		case firmware.TypeSymlink:
			line = fmt.Sprintf("symlink %s 0 - %s -> %s", mode, h.Name, h.Linkname)
		case firmware.TypeCharDevice:
			line = fmt.Sprintf("chardev %s 0 - %s %d,%d", mode, h.Name, h.Devmajor, h.Devminor)
		case firmware.TypeBlockDevice:
			line = fmt.Sprintf("blockdev %s 0 - %s %d,%d", mode, h.Name, h.Devmajor, h.Devminor)
		case firmware.TypeFIFO:
			line = fmt.Sprintf("fifo %s 0 - %s", mode, h.Name)
		default:
			line = fmt.Sprintf("type%d %s 0 - %s", h.Type, mode, h.Name)
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// jffs2Image writes JFFS2 nodes by hand, for the cases mkfs.jffs2 cannot
// make: overlapping versions, deletions, bad CRCs, obsolete nodes, LZMA,
// hostile trees.
type jffs2Image struct {
	bo  binary.ByteOrder
	buf []byte
}

func newJFFS2Image(bo binary.ByteOrder) *jffs2Image {
	img := &jffs2Image{bo: bo}
	img.node(jffs2Cleanmarker, nil)
	return img
}

// node appends a node of type typ whose bytes after the 12-byte header are
// body, padded to 4 bytes, and returns its offset.
func (img *jffs2Image) node(typ uint16, body []byte) int {
	off := len(img.buf)
	h := make([]byte, 12, 12+len(body))
	img.bo.PutUint16(h, 0x1985)
	img.bo.PutUint16(h[2:], typ)
	img.bo.PutUint32(h[4:], uint32(12+len(body)))
	img.bo.PutUint32(h[8:], crcRaw(0, h[:8]))
	img.buf = append(img.buf, append(h, body...)...)
	for len(img.buf)%4 != 0 {
		img.buf = append(img.buf, 0xFF)
	}
	return off
}

func (img *jffs2Image) dirent(pino, version, ino uint32, name string, dtype uint8) int {
	b := make([]byte, 28, 28+len(name))
	bo := img.bo
	bo.PutUint32(b[0:], pino)
	bo.PutUint32(b[4:], version)
	bo.PutUint32(b[8:], ino)
	bo.PutUint32(b[12:], 1700000000)
	b[16], b[17] = uint8(len(name)), dtype
	b = append(b, name...)
	off := img.node(jffs2Dirent, b)
	nb := img.buf[off:]
	bo.PutUint32(nb[32:], crcRaw(0, nb[:32]))
	bo.PutUint32(nb[36:], crcRaw(0, []byte(name)))
	return off
}

type jffs2InodeSpec struct {
	ino, version, mode, isize, offset uint32
	data                              []byte // stored bytes (compressed unless compr is none)
	dsize                             uint32 // decompressed size; len(data) when 0
	compr                             uint8
}

func (img *jffs2Image) inode(s jffs2InodeSpec) int {
	b := make([]byte, 56, 56+len(s.data))
	bo := img.bo
	if s.dsize == 0 && s.compr != jffs2ComprZero {
		s.dsize = uint32(len(s.data))
	}
	bo.PutUint32(b[0:], s.ino)
	bo.PutUint32(b[4:], s.version)
	bo.PutUint32(b[8:], s.mode)
	bo.PutUint32(b[16:], s.isize)
	bo.PutUint32(b[24:], 1700000000)
	bo.PutUint32(b[32:], s.offset)
	bo.PutUint32(b[36:], uint32(len(s.data)))
	bo.PutUint32(b[40:], s.dsize)
	b[44] = s.compr
	b = append(b, s.data...)
	off := img.node(jffs2Inode, b)
	nb := img.buf[off:]
	bo.PutUint32(nb[60:], crcRaw(0, s.data))
	bo.PutUint32(nb[64:], crcRaw(0, nb[:60]))
	return off
}

func (img *jffs2Image) file(ino, version uint32, mode uint32, content string) {
	img.inode(jffs2InodeSpec{ino: ino, version: version, mode: fmtutil.IFREG | mode, isize: uint32(len(content)), data: []byte(content)})
}

func (img *jffs2Image) dir(ino, version uint32) {
	img.inode(jffs2InodeSpec{ino: ino, version: version, mode: fmtutil.IFDIR | 0o755})
}

// lzmaJFFS2 compresses p as JFFS2's LZMA compressor does: lc=lp=pb=0, an
// 8 KiB dictionary, no header.
func lzmaJFFS2(t testing.TB, p []byte) []byte {
	var b bytes.Buffer
	w, err := lzma.WriterConfig{
		Properties:   &lzma.Properties{LC: 0, LP: 0, PB: 0},
		DictCap:      jffs2LZMADict,
		SizeInHeader: true,
		Size:         int64(len(p)),
	}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()[13:]
}

// jffs2Offsets holds the offsets of the bad nodes in the crafted images.
var jffs2Offsets = map[string][]int{}

// jffs2Crafted builds the crafted images the tests and the fuzz target share.
func jffs2Crafted(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		sfx := "-le"
		if bo == binary.BigEndian {
			sfx = "-be"
		}
		out["versions"+sfx] = jffs2VersionsImage(t, bo)
		out["crc"+sfx], jffs2Offsets["crc"+sfx] = jffs2CRCImage(bo)
	}
	out["hostile"] = jffs2HostileImage()
	return out
}

// jffs2VersionsImage is the crafted image of versions, compressors and
// special files.
func jffs2VersionsImage(t testing.TB, bo binary.ByteOrder) []byte {
	// Versions: data overlays, a truncation, a deletion, a rename.
	img := newJFFS2Image(bo)
	img.dir(2, 1)
	img.dirent(1, 1, 2, "etc", 4)
	img.inode(jffs2InodeSpec{ino: 3, version: 1, mode: fmtutil.IFREG | 0o644, isize: 8, data: []byte("AAAAAAAA")})
	img.inode(jffs2InodeSpec{ino: 3, version: 3, mode: fmtutil.IFREG | 0o644, isize: 10, offset: 6, data: []byte("cccc")})
	img.inode(jffs2InodeSpec{ino: 3, version: 2, mode: fmtutil.IFREG | 0o644, isize: 8, offset: 2, data: []byte("bb")})
	img.dirent(2, 1, 3, "overlay", 8)
	img.inode(jffs2InodeSpec{ino: 4, version: 1, mode: fmtutil.IFREG | 0o600, isize: 6, data: []byte("secret")})
	img.inode(jffs2InodeSpec{ino: 4, version: 2, mode: fmtutil.IFREG | 0o600, isize: 3}) // truncate to 3
	img.dirent(2, 2, 4, "truncated", 8)
	img.file(5, 1, 0o644, "deleted")
	img.dirent(2, 3, 5, "gone", 8)
	img.dirent(2, 4, 0, "gone", 8) // unlink
	img.file(6, 1, 0o644, "renamed")
	img.dirent(2, 5, 6, "old-name", 8)
	img.dirent(2, 7, 0, "old-name", 8)
	img.dirent(2, 6, 6, "new-name", 8)
	// LZMA, with both ids; zero-compressed and rtime data; a hole.
	text := bytes.Repeat([]byte("lzma in jffs2 "), 300)
	img.inode(jffs2InodeSpec{ino: 7, version: 1, mode: fmtutil.IFREG | 0o644, isize: uint32(2 * len(text)), data: lzmaJFFS2(t, text), dsize: uint32(len(text)), compr: jffs2ComprLZMA})
	img.inode(jffs2InodeSpec{ino: 7, version: 2, mode: fmtutil.IFREG | 0o644, isize: uint32(2 * len(text)), offset: uint32(len(text)), data: lzmaJFFS2(t, text), dsize: uint32(len(text)), compr: jffs2ComprLZMAOpenWrt})
	img.dirent(1, 2, 7, "lzma", 8)
	img.inode(jffs2InodeSpec{ino: 8, version: 1, mode: fmtutil.IFREG | 0o644, isize: 12, data: []byte("a\x03b\x00a\x02"), dsize: 7, compr: jffs2ComprRtime})
	img.inode(jffs2InodeSpec{ino: 8, version: 2, mode: fmtutil.IFREG | 0o644, isize: 12, offset: 7, dsize: 3, compr: jffs2ComprZero})
	img.dirent(1, 3, 8, "rtime-zero-hole", 8)
	// Special files: an old-style 16-bit device number, a fifo.
	dev := make([]byte, 2)
	bo.PutUint16(dev, 4<<8|65)
	img.inode(jffs2InodeSpec{ino: 9, version: 1, mode: fmtutil.IFCHR | 0o620, data: dev})
	img.dirent(1, 4, 9, "ttyS1", 2)
	img.inode(jffs2InodeSpec{ino: 10, version: 1, mode: fmtutil.IFLNK | 0o777, isize: 8, data: []byte("/etc/new-name")})
	img.dirent(1, 5, 10, "link", 10)
	return img.buf
}

// jffs2CRCImage is the crafted image of damaged nodes; it also returns the
// offsets of the bad-data and obsolete nodes.
func jffs2CRCImage(bo binary.ByteOrder) ([]byte, []int) {
	// Bad CRCs, an obsolete node, damaged bytes between nodes.
	img := newJFFS2Image(bo)
	img.file(2, 1, 0o644, "good data")
	badData := img.inode(jffs2InodeSpec{ino: 2, version: 2, mode: fmtutil.IFREG | 0o644, isize: 9, data: []byte("BAD CRC!!")})
	img.buf[badData+70] ^= 1 // data CRC
	off := img.inode(jffs2InodeSpec{ino: 2, version: 3, mode: fmtutil.IFREG | 0o777, isize: 9, data: []byte("BAD NODE!")})
	img.buf[off+20] ^= 1 // node CRC (mode)
	obsolete := img.inode(jffs2InodeSpec{ino: 2, version: 4, mode: fmtutil.IFREG | 0o644, isize: 9, data: []byte("OBSOLETE!")})
	bo.PutUint16(img.buf[obsolete+2:], jffs2Inode&^jffs2Accurate)
	img.dirent(1, 1, 2, "file", 8)
	off = img.dirent(1, 2, 0, "file", 8)
	img.buf[off+40] ^= 1 // name CRC: this deletion does not count
	img.buf = append(img.buf, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4)
	off = img.inode(jffs2InodeSpec{ino: 3, version: 1, mode: fmtutil.IFREG | 0o644, isize: 11, data: []byte("lost header")})
	img.buf[off+9] ^= 1 // header CRC: the walk steps over the node
	img.file(4, 1, 0o644, "after the damage")
	img.dirent(1, 3, 4, "after", 8)
	return img.buf, []int{badData, obsolete}
}

// jffs2HostileImage is the crafted image of hostile trees.
func jffs2HostileImage() []byte {
	// Hostile trees: a directory that is its own ancestor, a second name
	// for a directory, an entry naming the root, names that climb out,
	// an isize of 4 GiB, a node whose data would run past it.
	img := newJFFS2Image(binary.LittleEndian)
	img.dir(2, 1)
	img.dirent(1, 1, 2, "a", 4)
	img.dir(3, 1)
	img.dirent(2, 1, 3, "b", 4)
	img.dirent(3, 1, 2, "back-to-a", 4)
	img.dirent(3, 2, 1, "root", 4)
	img.dirent(1, 2, 3, "b-again", 4)
	img.dirent(3, 3, 3, "self", 4)
	img.file(4, 1, 0o644, "escape")
	img.dirent(1, 3, 4, "../../escape", 8)
	img.dirent(1, 4, 4, "/etc/abs", 8)
	img.inode(jffs2InodeSpec{ino: 5, version: 1, mode: fmtutil.IFREG | 0o644, isize: 0xFFFFFFFF, data: []byte("huge")})
	img.dirent(1, 5, 5, "huge", 8)
	img.inode(jffs2InodeSpec{ino: 6, version: 1, mode: fmtutil.IFLNK | 0o777, data: []byte("../../../../tmp/cordon-escape-check")})
	img.dirent(1, 6, 6, "link-out", 10)
	img.dirent(1, 7, 99, "no-inode", 8)
	img.dirent(42, 1, 4, "orphan", 8)
	return img.buf
}

// TestJFFS2Versions: the highest version wins range by range, isize
// truncates, ino 0 unlinks, LZMA (both ids), rtime, zero nodes and holes
// decode, in both byte orders.
func TestJFFS2Versions(t *testing.T) {
	imgs := jffs2Crafted(t)
	text := strings.Repeat("lzma in jffs2 ", 300)
	for _, name := range []string{"versions-le", "versions-be"} {
		t.Run(name, func(t *testing.T) {
			res := firmwaretest.MustRun(t, JFFS2, imgs[name], 0)
			s := res.Sink
			for file, want := range map[string]string{
				"etc/overlay":     "AAbbAAcccc",
				"etc/truncated":   "sec",
				"etc/new-name":    "renamed",
				"lzma":            text + text,
				"rtime-zero-hole": "aaaab" + "aa" + "\x00\x00\x00" + "\x00\x00",
			} {
				if got, ok := s.File(file); !ok || string(got) != want {
					t.Errorf("%s = %q (found %v), want %q", file, got, ok, want)
				}
			}
			for _, gone := range []string{"etc/gone", "etc/old-name"} {
				if _, ok := s.Entry(gone); ok {
					t.Errorf("%s extracted, want it deleted", gone)
				}
			}
			if e, _ := s.Entry("ttyS1"); e.Header.Type != firmware.TypeCharDevice || e.Header.Devmajor != 4 || e.Header.Devminor != 65 || e.Header.Mode != 0o620 {
				t.Errorf("ttyS1 = %+v", e.Header)
			}
			if e, _ := s.Entry("link"); e.Header.Type != firmware.TypeSymlink || e.Header.Linkname != "/etc/new-name" {
				t.Errorf("link = %+v", e.Header)
			}
			if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "1 inodes that no directory entry names") {
				t.Errorf("warnings: %q", s.Warnings)
			}
		})
	}
}

// eraseBlocks lays the nodes of img out in erase blocks of the given size,
// as the kernel writes them: a cleanmarker first, no node across a block
// boundary, the rest of a block a padding node or erased (0xFF) flash.
func (img *jffs2Image) eraseBlocks(t *testing.T, size int) []byte {
	walk := newJFFS2Walker(newWindow(bytes.NewReader(img.buf), int64(len(img.buf))), img.bo, 0, int64(len(img.buf)))
	out := &jffs2Image{bo: img.bo}
	pad := false
	for {
		pos, typ, length, _, ok := walk.next()
		if !ok {
			break
		}
		if typ == jffs2Cleanmarker {
			continue
		}
		n := (int(length) + 3) &^ 3
		if len(out.buf)%size == 0 || len(out.buf)%size+n > size {
			if rest := (size - len(out.buf)%size) % size; rest > 0 {
				if pad = !pad; pad {
					out.node(jffs2Padding, bytes.Repeat([]byte{0xFF}, rest-12))
				} else {
					out.buf = append(out.buf, bytes.Repeat([]byte{0xFF}, rest)...)
				}
			}
			out.node(jffs2Cleanmarker, nil)
		}
		if len(out.buf)%size+n > size {
			t.Fatalf("node of %d bytes does not fit a %d-byte erase block", n, size)
		}
		out.buf = append(out.buf, img.buf[pos:pos+int64(n)]...)
	}
	return out.buf
}

// TestJFFS2EraseBlocks: the same nodes in 4 KiB and 256 KiB erase blocks,
// with cleanmarkers, padding nodes and erased space, extract the same.
func TestJFFS2EraseBlocks(t *testing.T) {
	img := newJFFS2Image(binary.BigEndian)
	img.dir(2, 1)
	img.dirent(1, 1, 2, "d", 4)
	var want []string
	for i := uint32(0); i < 40; i++ {
		content := strings.Repeat(fmt.Sprintf("file %d ", i), 40+int(i)*9)
		img.inode(jffs2InodeSpec{ino: 10 + i, version: 1, mode: fmtutil.IFREG | 0o644, isize: uint32(len(content)), data: []byte(content)})
		img.dirent(2, i+1, 10+i, fmt.Sprintf("f%02d", i), 8)
		want = append(want, fmt.Sprintf("d/f%02d type=0 mode=-rw-r--r-- uid=0 gid=0 size=%d sha256=%x", i, len(content), sha256.Sum256([]byte(content))))
	}
	want = append(want, "d type=1 mode=-rwxr-xr-x uid=0 gid=0")
	slices.Sort(want)
	for _, size := range []int{4 << 10, 256 << 10} {
		data := img.eraseBlocks(t, size)
		if size == 4<<10 && len(data) < 20*size {
			t.Fatalf("only %d bytes: not spread over erase blocks", len(data))
		}
		res := firmwaretest.MustRun(t, JFFS2, data, 0)
		if got := res.Sink.Listing(); !slices.Equal(got, want) {
			t.Errorf("%d-byte erase blocks:\n%s", size, firmwaretest.ListingDiff(want, got))
		}
		if len(res.Chunk.Warnings) > 0 || len(res.Sink.Warnings) > 0 {
			t.Errorf("warnings: %q %q", res.Chunk.Warnings, res.Sink.Warnings)
		}
	}
}

// TestJFFS2BadNodes: nodes with a bad data, node or name CRC are skipped and
// counted; an obsolete node is skipped; damaged bytes and a node whose
// header CRC fails are stepped over, and the nodes after them extracted.
func TestJFFS2BadNodes(t *testing.T) {
	imgs := jffs2Crafted(t)
	for _, name := range []string{"crc-le", "crc-be"} {
		t.Run(name, func(t *testing.T) {
			data := imgs[name]
			res := firmwaretest.MustRun(t, JFFS2, data, 0)
			if c := res.Chunk; c.Size < int64(len(data))-3 || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "bytes of damaged data between nodes skipped") {
				t.Errorf("chunk = %+v", c)
			}
			s := res.Sink
			if got, _ := s.File("file"); string(got) != "good data" {
				t.Errorf("file = %q, want the version before the bad ones", got)
			}
			if e, _ := s.Entry("file"); e.Header.Mode != 0o644 {
				t.Errorf("file mode %v", e.Header.Mode)
			}
			if got, _ := s.File("after"); string(got) != "after the damage" {
				t.Errorf("after = %q", got)
			}
			want := []string{
				fmt.Sprintf("jffs2: 3 nodes with a bad CRC skipped (first at %#x: inode data CRC)", jffs2Offsets[name][0]),
				fmt.Sprintf("jffs2: 1 nodes marked obsolete skipped (first at %#x)", jffs2Offsets[name][1]),
			}
			if !slices.Equal(s.Warnings, want) {
				t.Errorf("warnings:\n%s\nwant\n%s", strings.Join(s.Warnings, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestJFFS2Hostile: loops end, hostile names and links stay inside the
// output, a 4 GiB isize is cut, every problem is reported.
func TestJFFS2Hostile(t *testing.T) {
	data := jffs2Crafted(t)["hostile"]
	res := firmwaretest.MustRun(t, JFFS2, data, 0)
	s := res.Sink
	got := s.Names()
	want := []string{"../../escape", "/etc/abs", "a", "a/b", "a/b/back-to-a", "a/b/self", "b-again", "huge", "link-out"}
	if !slices.Equal(got, want) {
		t.Errorf("names %q, want %q", got, want)
	}
	if huge, _ := s.File("huge"); string(huge) != "huge" {
		t.Errorf("huge = %d bytes", len(huge))
	}
	if e, _ := s.Entry("/etc/abs"); e.Header.Type != firmware.TypeHardlink || e.Header.Linkname != "../../escape" {
		t.Errorf("/etc/abs = %+v", e.Header)
	}
	for _, w := range []string{
		"a/b/back-to-a: directory inode 2 already extracted",
		"a/b/root: directory inode 1 already extracted",
		"a/b/self: directory inode 3 already extracted",
		"b-again: directory inode 3 already extracted",
		"huge: inode 5: 4294967291 bytes of holes or zero nodes at 4 (isize 4294967295) pass the chunk's allowance of zeros; cut at 4",
		"no-inode: inode 99 has no inode node",
		"hostile name \"../../escape\"",
		"1 directory entries in directories unreachable from the root",
	} {
		if !slices.ContainsFunc(s.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning %q in %q", w, s.Warnings)
		}
	}
	path := filepath.Join(t.TempDir(), "hostile.jffs2")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	firmwaretest.CheckUnpackStaysInside(t, path, []*firmware.Format{JFFS2}, []string{"../../escape", "/etc/abs", "link-out"})
}

// TestJFFS2Overlap: many nodes over the same range (a hostile overlay)
// resolve in O(n log n), each node decoded once.
func TestJFFS2Overlap(t *testing.T) {
	img := newJFFS2Image(binary.LittleEndian)
	const n = 5000
	sevens := bytes.Repeat([]byte{7, 0xff}, 17) // rtime: 4096 and more bytes of 7
	for v := uint32(1); v <= n; v++ {
		// Each node covers [v, v+4096), newer ones start later: every byte
		// has up to 4096 candidates, and each node wins one byte.
		img.inode(jffs2InodeSpec{ino: 2, version: v, mode: fmtutil.IFREG | 0o644, isize: n + 4096, offset: v, data: sevens, dsize: 4096, compr: jffs2ComprRtime})
	}
	img.inode(jffs2InodeSpec{ino: 2, version: n + 1, mode: fmtutil.IFREG | 0o644, isize: n + 4096, data: []byte("top")})
	img.dirent(1, 1, 2, "f", 8)
	res := firmwaretest.MustRun(t, JFFS2, img.buf, 0)
	got, _ := res.Sink.File("f")
	want := append([]byte("top"), bytes.Repeat([]byte{7}, n+4093)...)
	if !bytes.Equal(got, want) {
		t.Errorf("f: %d bytes, starts %q", len(got), got[:min(len(got), 8)])
	}
	if len(res.Sink.Warnings) > 0 {
		t.Errorf("warnings: %q", res.Sink.Warnings)
	}
}

// TestJFFS2Budget: once the chunk's decompression budget is spent, nodes
// read as zeros and the report counts them.
func TestJFFS2Budget(t *testing.T) {
	img := newJFFS2Image(binary.BigEndian)
	sevens := bytes.Repeat([]byte{7, 0xff}, 17)
	for i := uint32(0); i < 3; i++ {
		img.inode(jffs2InodeSpec{ino: 2, version: i + 1, mode: fmtutil.IFREG | 0o644, isize: 3 * 4096, offset: i * 4096, data: sevens, dsize: 4096, compr: jffs2ComprRtime})
	}
	img.dirent(1, 1, 2, "f", 8)
	s := &firmwaretest.MemSink{}
	x, err := newJFFS2Extractor(context.Background(), io.NewSectionReader(bytes.NewReader(img.buf), 0, int64(len(img.buf))), s)
	if err != nil {
		t.Fatal(err)
	}
	x.budget = 5000
	if err := x.run(); err != nil {
		t.Fatal(err)
	}
	got, _ := s.File("f")
	if want := append(bytes.Repeat([]byte{7}, 4096), make([]byte, 8192)...); !bytes.Equal(got, want) {
		t.Errorf("f = %d bytes, %d sevens", len(got), bytes.Count(got, []byte{7}))
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "2 data nodes that could not be decompressed") || !strings.Contains(s.Warnings[0], "budget") {
		t.Errorf("warnings: %q", s.Warnings)
	}
}

// TestJFFS2Malformed: nodes whose sizes do not fit are skipped and counted.
func TestJFFS2Malformed(t *testing.T) {
	img := newJFFS2Image(binary.BigEndian)
	img.file(2, 1, 0o644, "kept")
	off := img.inode(jffs2InodeSpec{ino: 2, version: 2, mode: fmtutil.IFREG | 0o644, isize: 4, data: []byte("csize")})
	binary.BigEndian.PutUint32(img.buf[off+48:], 1000) // csize past the node
	binary.BigEndian.PutUint32(img.buf[off+64:], crcRaw(0, img.buf[off:off+60]))
	img.inode(jffs2InodeSpec{ino: 2, version: 3, mode: fmtutil.IFREG | 0o644, isize: 1 << 20, data: []byte("x"), dsize: 1 << 20, compr: jffs2ComprZlib})
	img.inode(jffs2InodeSpec{ino: 2, version: 4, mode: fmtutil.IFREG | 0o644, isize: 4, data: []byte("not zlib"), dsize: 4, compr: jffs2ComprZlib})
	img.inode(jffs2InodeSpec{ino: 2, version: 5, mode: fmtutil.IFREG | 0o644, isize: 6, offset: 4, data: []byte("rb"), compr: jffs2ComprDynRubin})
	img.dirent(1, 1, 2, "f", 8)
	res := firmwaretest.MustRun(t, JFFS2, img.buf, 0)
	if got, _ := res.Sink.File("f"); string(got) != "\x00\x00\x00\x00\x00\x00" {
		t.Errorf("f = %q", got)
	}
	want := []string{"2 malformed nodes skipped", "2 data nodes that could not be decompressed"}
	for _, w := range want {
		if !slices.ContainsFunc(res.Sink.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning %q in %q", w, res.Sink.Warnings)
		}
	}
}

func TestRtime(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\x03", "aaaa"},
		{"a\x00b\x00a\x02", "ababa"},
		{"x\xff", "x" + strings.Repeat("x", 255)},
	} {
		dst := make([]byte, len(tc.want))
		if n := rtimeDecompress(dst, []byte(tc.in)); string(dst[:n]) != tc.want {
			t.Errorf("rtime(%q) = %q, want %q", tc.in, dst[:n], tc.want)
		}
	}
	// Truncated input and a short output buffer stop cleanly.
	dst := make([]byte, 2)
	if n := rtimeDecompress(dst, []byte("a\x09b")); n != 2 {
		t.Errorf("n = %d", n)
	}
}

// addJFFS2Seeds adds the crafted images to the JFFS2 fuzz target.
func addJFFS2Seeds(f *testing.F) {
	for _, fx := range jffs2Fixtures {
		f.Add(firmwaretest.ReadFixture(f, fx.file))
	}
	imgs := jffs2Crafted(f)
	for _, k := range slices.Sorted(maps.Keys(imgs)) {
		f.Add(imgs[k])
	}
}

package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

var update = flag.Bool("update", false, "rewrite testdata/cramfs-ext.img from the test writer")

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// cramfsTree is the test tree: text, incompressible data and zero pages of
// odd sizes, an empty file, nested directories, symlinks, and (unless
// noDevices, for fsck.cramfs run without root) device nodes.
func cramfsTree(noDevices bool) *cwNode {
	text := []byte(strings.Repeat("root:x:0:0:root:/root:/bin/sh\n", 300)) // 9000 bytes
	sparse := slices.Concat([]byte("calibration\n"), make([]byte, 3*cramfsPage), []byte("end\n"))
	etc := cwDir("etc",
		cwFile("passwd", text[:31]),
		cwFile("big.txt", text),
		cwFile("empty.conf", nil),
		&cwNode{name: "shadow", mode: 0o100600, uid: 0, gid: 42, data: []byte("root:$1$abcdefgh$Q4D6vqzMdJpH6qbyqvwQ61:19000::::::\n")},
		cwDir("init.d", &cwNode{name: "rcS", mode: 0o100755, data: []byte("#!/bin/sh\ntelnetd -l /bin/sh\n")}),
	)
	usr := cwDir("usr",
		cwDir("lib",
			cwFile("random.bin", randomBytes(1, 10001)),
			cwFile("random-page.bin", randomBytes(2, cramfsPage)),
			cwFile("random-4097.bin", randomBytes(3, cramfsPage+1)),
			cwFile("sparse.dat", sparse),
			cwFile("same-as-passwd", text[:31]),
		),
		cwDir("empty"),
		&cwNode{name: "upgrade", mode: 0o104755, uid: 1000, gid: 100, data: []byte("#!/bin/sh\n")},
	)
	bin := cwDir("bin",
		&cwNode{name: "sh", mode: 0o120777, data: []byte("busybox")},
		&cwNode{name: "busybox", mode: 0o100755, data: slices.Concat([]byte("\x7fELF"), randomBytes(4, 5000), text[:3001])},
		&cwNode{name: "up", mode: 0o120777, data: []byte("../usr/upgrade")},
	)
	root := cwDir("", etc, usr, bin)
	if !noDevices {
		root.children = append(root.children, cwDir("dev",
			&cwNode{name: "console", mode: 0o20600, rdev: 5<<8 | 1},
			&cwNode{name: "mtdblock2", mode: 0o60640, rdev: 31<<8 | 2},
			&cwNode{name: "ttyS300", mode: 0o20600, rdev: 4<<8 | (300 & 0xff) | (300&^0xff)<<12},
			&cwNode{name: "fifo", mode: 0o10644},
		))
	}
	return root
}

// treeListing is what a reader must give for tree, in MemSink.Listing form.
func treeListing(tree *cwNode) []string {
	s := &firmwaretest.MemSink{}
	var walk func(p string, n *cwNode)
	walk = func(p string, n *cwNode) {
		for _, c := range n.children {
			name := strings.TrimPrefix(p+"/"+c.name, "/")
			h := &firmware.Header{Name: name, Mode: unixmode.FromUnix(c.mode), UID: c.uid, GID: c.gid}
			switch c.mode & 0o170000 {
			case 0o040000:
				h.Type = firmware.TypeDir
			case 0o100000:
				h.Type = firmware.TypeFile
			case 0o120000:
				h.Type, h.Linkname = firmware.TypeSymlink, string(c.data)
			case 0o020000:
				h.Type, h.Devmajor, h.Devminor = firmware.TypeCharDevice, (c.rdev&0xfff00)>>8, c.rdev&0xff|(c.rdev>>12)&0xfff00
			case 0o060000:
				h.Type, h.Devmajor, h.Devminor = firmware.TypeBlockDevice, (c.rdev&0xfff00)>>8, c.rdev&0xff|(c.rdev>>12)&0xfff00
			case 0o010000:
				h.Type = firmware.TypeFIFO
			}
			s.Add(h, bytes.NewReader(c.data))
			walk(name, c)
		}
	}
	walk("", tree)
	return s.Listing()
}

func TestCramfsDecodeInode(t *testing.T) {
	// mkfs.cramfs -N little and -N big, the root inode and the entry "d"
	// (a directory of 16 bytes at 0x6c) of the same one-file tree.
	for _, tc := range []struct {
		b    []byte
		bo   binary.ByteOrder
		want cramfsInode
	}{
		{[]byte{0xed, 0x41, 0, 0, 0x20, 0, 0, 0, 0xc0, 0x04, 0, 0}, binary.LittleEndian, cramfsInode{mode: 0o40755, size: 0x20, offset: 0x4c}},
		{[]byte{0x41, 0xed, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0x13}, binary.BigEndian, cramfsInode{mode: 0o40755, size: 0x20, offset: 0x4c}},
		{[]byte{0xed, 0x41, 0, 0, 0x10, 0, 0, 0, 0xc1, 0x06, 0, 0}, binary.LittleEndian, cramfsInode{mode: 0o40755, size: 0x10, nameLen: 4, offset: 0x6c}},
		{[]byte{0x41, 0xed, 0, 0, 0, 0, 0x10, 0, 0x04, 0, 0, 0x1b}, binary.BigEndian, cramfsInode{mode: 0o40755, size: 0x10, nameLen: 4, offset: 0x6c}},
		{[]byte{0xa4, 0x81, 0xe8, 0x03, 0x06, 0, 0, 0x2a, 0xc1, 0x07, 0, 0}, binary.LittleEndian, cramfsInode{mode: 0o100644, uid: 1000, gid: 42, size: 6, nameLen: 4, offset: 0x7c}},
	} {
		if got := decodeCramfsInode(tc.b, tc.bo); got != tc.want {
			t.Errorf("%x: got %+v, want %+v", tc.b, got, tc.want)
		}
	}
}

// TestCramfsWriterVariants extracts every variant the writer makes, embedded
// in a dump, and compares the entries with the tree.
func TestCramfsWriterVariants(t *testing.T) {
	tree := cramfsTree(false)
	want := treeListing(tree)
	for _, w := range cramfsVariants() {
		t.Run(w.String(), func(t *testing.T) {
			img, _ := w.build(tree)
			dump := slices.Concat(bytes.Repeat([]byte{0xA5}, 4096), img, bytes.Repeat([]byte{0xFF}, 8192))
			res := firmwaretest.MustRun(t, Cramfs, dump, 4096)
			if res.Chunk.Size != int64(len(img)) && !(w.v1 && res.Chunk.Size == int64(len(img)+cramfsPage-1)/cramfsPage*cramfsPage) {
				t.Errorf("chunk size %d, image %d", res.Chunk.Size, len(img))
			}
			if len(res.Sink.Warnings) > 0 {
				t.Errorf("warnings: %q", res.Sink.Warnings)
			}
			if got := res.Sink.Listing(); !slices.Equal(got, want) {
				t.Errorf("listing differs:\n%s", firmwaretest.ListingDiff(want, got))
			}
		})
	}
}

func cramfsVariants() []cramfsWriter {
	var ws []cramfsWriter
	for _, be := range []bool{false, true} {
		ws = append(ws,
			cramfsWriter{bigEndian: be},
			cramfsWriter{bigEndian: be, v1: true},
			cramfsWriter{bigEndian: be, holes: true},
			cramfsWriter{bigEndian: be, ext: true},
			cramfsWriter{bigEndian: be, ext: true, holes: true},
		)
	}
	return ws
}

func (w cramfsWriter) String() string {
	s := "le"
	if w.bigEndian {
		s = "be"
	}
	if w.v1 {
		s += "-v1"
	}
	if w.holes {
		s += "-holes"
	}
	if w.ext {
		s += "-ext"
	}
	return s
}

// TestCramfsWriterFixture keeps testdata/cramfs-ext.img (no Debian tool
// writes extended block pointers) equal to what the writer makes.
func TestCramfsWriterFixture(t *testing.T) {
	img, _ := cramfsWriter{ext: true, holes: true}.build(cramfsTree(false))
	path := filepath.Join("testdata", "cramfs-ext.img")
	if *update {
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("%s is stale (%v): go test ./firmware/formats/flash -run CramfsWriterFixture -update", path, err)
	}
}

// memListing renders a MemSink the way firmwaretest.DiskListing renders a folder.
func memListing(s *firmwaretest.MemSink) []string {
	var out []string
	for _, e := range s.Entries {
		h := e.Header
		switch h.Type {
		case firmware.TypeSymlink:
			out = append(out, fmt.Sprintf("%s -> %s", h.Name, h.Linkname))
		case firmware.TypeDir:
			out = append(out, h.Name+"/")
		case firmware.TypeFile:
			out = append(out, fmt.Sprintf("%s size=%d sha256=%x", h.Name, len(e.Data), sha256.Sum256(e.Data)))
		case firmware.TypeFIFO:
			out = append(out, fmt.Sprintf("%s type=%v", h.Name, fs.ModeNamedPipe))
		case firmware.TypeCharDevice:
			out = append(out, fmt.Sprintf("%s type=%v", h.Name, fs.ModeDevice|fs.ModeCharDevice))
		case firmware.TypeBlockDevice:
			out = append(out, fmt.Sprintf("%s type=%v", h.Name, fs.ModeDevice))
		}
	}
	slices.Sort(out)
	return out
}

// TestCramfsAgainstFsck extracts images with util-linux fsck.cramfs and
// compares its files, byte for byte, with ours: the committed mkfs.cramfs
// fixtures and the writer's plain version 2 output in both byte orders
// (fsck.cramfs refuses CRAMFS_FLAG_HOLES and extended block pointers, and
// needs root for device nodes, so those are left to the golden manifests).
func TestCramfsAgainstFsck(t *testing.T) {
	fsck, err := exec.LookPath("fsck.cramfs")
	if err != nil {
		t.Skip("fsck.cramfs (util-linux) not installed; scripts/deps installs it")
	}
	images := map[string][]byte{
		"cramfs.img":     firmwaretest.ReadFixture(t, "cramfs.img"),
		"cramfs-be.img":  firmwaretest.ReadFixture(t, "cramfs-be.img"),
		"cramfs-pad.img": firmwaretest.ReadFixture(t, "cramfs-pad.img"),
		"cramfs-16k.img": firmwaretest.ReadFixture(t, "cramfs-16k.img"),
	}
	if os.Geteuid() != 0 {
		delete(images, "cramfs-be.img") // it holds device nodes
	}
	for _, w := range []cramfsWriter{{}, {bigEndian: true}} {
		images["writer-"+w.String()], _ = w.build(cramfsTree(true))
	}
	for name, img := range images {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "img")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "x")
			args := []string{"--extract=" + out, path}
			if strings.HasSuffix(name, "-16k.img") {
				args = append(args, "-b", "16384")
			}
			if b, err := exec.Command(fsck, args...).CombinedOutput(); err != nil {
				t.Fatalf("fsck.cramfs: %v\n%s", err, b)
			}
			off := int64(0)
			if strings.HasSuffix(name, "-pad.img") {
				off = cramfsPad // the superblock follows the boot pad
			}
			res := firmwaretest.MustRun(t, Cramfs, img, off)
			if res.Chunk.Confidence != firmware.ConfidenceHigh || res.Chunk.Size != int64(len(img))-off {
				t.Errorf("chunk = %+v", res.Chunk)
			}
			want := firmwaretest.DiskListing(t, out)
			var got []string
			for _, l := range memListing(res.Sink) {
				if !strings.HasPrefix(l, "dev/") || os.Geteuid() == 0 {
					got = append(got, l)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("ours (+) and fsck.cramfs's (-) differ:\n%s", firmwaretest.ListingDiff(want, got))
			}
		})
	}
}

// TestCramfsAgainst7z compares the regular files with 7-Zip's extraction of
// the little-endian images (7-Zip reads only those).
func TestCramfsAgainst7z(t *testing.T) {
	sevenZ, err := exec.LookPath("7z")
	if err != nil {
		t.Skip("7z (p7zip-full) not installed; scripts/deps installs it")
	}
	plain, _ := cramfsWriter{}.build(cramfsTree(true))
	for name, img := range map[string][]byte{"cramfs.img": firmwaretest.ReadFixture(t, "cramfs.img"), "writer-le": plain} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "img")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "x")
			// 7-Zip exits 2 when it refuses a symlink leaving the folder
			// (sbin/init -> ../bin/busybox); the files are still written.
			b, _ := exec.Command(sevenZ, "x", "-y", "-o"+out, path).CombinedOutput()
			res := firmwaretest.MustRun(t, Cramfs, img, 0)
			got := onlyFiles(memListing(res.Sink))
			// 7-Zip leaves an empty file for each symlink it refused.
			want := slices.DeleteFunc(onlyFiles(firmwaretest.DiskListing(t, out)), func(l string) bool {
				e, ok := res.Sink.Entry(l[:strings.IndexByte(l, ' ')])
				return ok && e.Header.Type == firmware.TypeSymlink
			})
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("ours (+) and 7z's (-) files differ:\n%s\n7z said:\n%s", firmwaretest.ListingDiff(want, got), b)
			}
		})
	}
}

func onlyFiles(l []string) []string {
	return slices.DeleteFunc(l, func(s string) bool { return !strings.Contains(s, " sha256=") })
}

// TestCramfsHostile: damaged images extract what they can, within bounds,
// and say what they dropped.
func TestCramfsHostile(t *testing.T) {
	tree := cramfsTree(false)
	for _, tc := range []struct {
		name string
		w    cramfsWriter
		edit func(img []byte, lay cwLayout, bo binary.ByteOrder)
		warn string
		keep string // a file that must still be extracted
	}{
		{"dir cycle to root", cramfsWriter{}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			// etc/init.d's entries become the root's: an ancestor.
			setOffset(img[lay.inode["etc/init.d"]:], bo, lay.data[""], uint32(lay.data["usr"]-lay.data[""]))
		}, "directory cycle", "etc/passwd"},
		{"dir cycle to self be", cramfsWriter{bigEndian: true}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			setOffset(img[lay.inode["usr/lib"]:], bo, lay.data["usr"], 0)
		}, "directory cycle", "etc/passwd"},
		{"pointer outside", cramfsWriter{}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			bo.PutUint32(img[lay.data["usr/lib/random.bin"]+4:], 0x0fffff00)
		}, "page 1 of 3: block length", "etc/passwd"},
		{"pointer backwards", cramfsWriter{}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			bo.PutUint32(img[lay.data["etc/big.txt"]+4:], 100)
		}, "page 1 of 3: block length", "etc/passwd"},
		{"direct pointer into its table", cramfsWriter{ext: true}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			p := lay.data["bin/busybox"]
			bo.PutUint32(img[p+4:], uint32(p>>2)|cramfsBlkDirect)
		}, "bin/busybox: page 1 of 2: zlib: invalid header", "etc/passwd"},
		{"table outside", cramfsWriter{}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			setOffset(img[lay.inode["usr/lib/random.bin"]:], bo, 0x3fffff0, 0)
		}, "outside the image", "usr/lib/sparse.dat"},
		{"dir outside", cramfsWriter{}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			setOffset(img[lay.inode["usr"]:], bo, 0x3fffff0, 0)
		}, "directory /usr: entries [0x3fffff0, +56) outside the", "etc/passwd"},
		{"name past dir end", cramfsWriter{}, func(img []byte, lay cwLayout, bo binary.ByteOrder) {
			img[lay.inode["etc/big.txt"]+8] |= 0x3f
		}, "past the directory's end", "bin/busybox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, lay := tc.w.build(tree)
			tc.edit(img, lay, tc.w.bo())
			cramfsFixCRC(img, tc.w.bo())
			firmwaretest.CheckHostile(t, Cramfs, img, tc.warn, tc.keep)
		})
	}
}

// TestCramfsOverlappingDirs: directories at distinct but overlapping
// offsets cannot make the walk read the image over and over.
func TestCramfsOverlappingDirs(t *testing.T) {
	root := cwDir("")
	for i := range 2000 {
		root.children = append(root.children, cwDir(fmt.Sprintf("d%04d", i)))
	}
	w := cramfsWriter{}
	img, lay := w.build(root)
	listing := int64(len(root.children)) * (12 + 8) // inode and "dNNNN" padded to 8
	for i, c := range root.children {
		setOffset(img[lay.inode[c.name]:], w.bo(), lay.data[""]+4*int64(i+1), uint32(listing))
	}
	c, err := Cramfs.Identify(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	s := &firmwaretest.MemSink{MaxFiles: 1 << 20}
	if err := Cramfs.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(img), 0, int64(len(img))), c, s); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(s.Warnings, func(s string) bool { return strings.Contains(s, "more than twice the image's bytes") }) {
		t.Errorf("%d entries, warnings %q", len(s.Entries), s.Warnings[:min(5, len(s.Warnings))])
	}
}

// setOffset rewrites the size (when non-zero) and offset of the inode at b.
func setOffset(b []byte, bo binary.ByteOrder, off int64, size uint32) {
	in := decodeCramfsInode(b, bo)
	if size == 0 {
		size = in.size
	}
	w := cramfsWriter{bigEndian: bo == binary.ByteOrder(binary.BigEndian)}
	n := &cwNode{name: strings.Repeat("x", in.nameLen), mode: in.mode, uid: in.uid, gid: in.gid}
	copy(b, w.inode(n, size, off))
}

// TestCramfsLimits: the Sink's refusal stops the extraction with its error.
func TestCramfsLimits(t *testing.T) {
	img, _ := cramfsWriter{}.build(cramfsTree(false))
	s := &firmwaretest.MemSink{MaxFiles: 5}
	c, err := Cramfs.Identify(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	err = Cramfs.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(img), 0, int64(len(img))), c, s)
	if !errorsIsLimit(err) {
		t.Fatalf("Extract = %v, want ErrLimit", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Cramfs.Extract(ctx, io.NewSectionReader(bytes.NewReader(img), 0, int64(len(img))), c, &firmwaretest.MemSink{}); err != context.Canceled {
		t.Fatalf("cancelled Extract = %v", err)
	}
}

func errorsIsLimit(err error) bool {
	return err != nil && strings.Contains(err.Error(), firmware.ErrLimit.Error())
}

// FuzzCramfsExtract runs Identify and Extract on every cramfs variant: the
// mkfs.cramfs fixtures (both endians, holes), the writer's extended-pointer
// fixture and its version 1 image (FuzzCramfs in flash_test.go seeds only
// the first).
func FuzzCramfsExtract(f *testing.F) {
	for _, s := range []string{"cramfs.img", "cramfs-be.img", "cramfs-holes.img", "cramfs-ext.img", "cramfs-pad.img", "cramfs-16k.img"} {
		f.Add(firmwaretest.ReadFixture(f, s))
	}
	v1, _ := cramfsWriter{v1: true, bigEndian: true}.build(cramfsTree(false))
	f.Add(v1)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Cramfs, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

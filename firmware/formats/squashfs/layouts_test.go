package squashfs

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

// layoutTree is the tree every writer layout is checked with: files of
// mixed content around the block size, incompressible and empty files,
// owners, a symlink, devices, a FIFO, and a directory of 300 entries (more
// than one directory header, listings across metadata blocks).
func layoutTree(blockSize int) []wEntry {
	rng := rand.New(rand.NewPCG(3, 2026))
	e := []wEntry{
		{path: "etc", typ: tDir, mode: 0o755},
		{path: "etc/passwd", typ: tFile, mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{path: "etc/shadow", typ: tFile, mode: 0o600, uid: 0, gid: 42, data: []byte("root:*:0:0:99999:7:::\n")},
		{path: "empty", typ: tFile, mode: 0o644},
		{path: "bin/busybox", typ: tFile, mode: 0o4755, data: mixed(rng, 3*blockSize+77)},
		{path: "bin/random", typ: tFile, mode: 0o755, data: random(rng, blockSize+5)},
		{path: "big/mixed", typ: tFile, mode: 0o644, uid: 1000, gid: 1000, data: mixed(rng, 5*blockSize+1234)},
		{path: "big/zeros", typ: tFile, mode: 0o644, data: make([]byte, 2*blockSize)},
		{path: "sbin/init", typ: tSymlink, mode: 0o777, target: "../bin/busybox"},
		{path: "dev/console", typ: tChar, mode: 0o600, rdev: 5<<8 | 1},
		{path: "dev/mtdblock0", typ: tBlock, mode: 0o640, uid: 0, gid: 6, rdev: 31 << 8},
		{path: "tmp/fifo", typ: tFIFO, mode: 0o644},
	}
	for i := range 300 {
		e = append(e, wEntry{path: fmt.Sprintf("www/cgi-bin/handler-%03d.cgi", i), typ: tFile, mode: 0o755,
			data: []byte(strings.Repeat(fmt.Sprintf("#!/bin/sh\necho %d\n", i), i%7))})
	}
	return e
}

type layout struct {
	name string
	o    wOptions
	// unsquashfs reads 1.0, 2.x and 3.x in either byte order and 4.0
	// little-endian, zlib only.
	unsquashfs bool
}

// layoutImage writes the layout tree in the named layout.
func layoutImage(t testing.TB, name string, blockSize uint32) []byte {
	i := slices.IndexFunc(layouts, func(l layout) bool { return l.name == name })
	if i < 0 {
		t.Fatalf("no layout %q", name)
	}
	o := layouts[i].o
	o.blockSize, o.mtime = blockSize, 1700000000
	return writeTree(t, o, layoutTree(int(blockSize)))
}

var layouts = []layout{
	{"v4-le-gzip", wOptions{major: 4, comp: "gzip"}, true},
	{"v4-be-gzip", wOptions{major: 4, big: true, comp: "gzip"}, false},
	{"v4-be-lzma", wOptions{major: 4, big: true, comp: "lzma"}, false},
	{"v4-be-lzma-raw", wOptions{major: 4, big: true, comp: "lzma-raw"}, false},
	{"v4-le-lzma-nosize-32M-dict", wOptions{major: 4, comp: "lzma-nosize", dictSize: 32 << 20}, false},
	{"v1-le-gzip", wOptions{major: 1, comp: "gzip"}, true},
	{"v1-be-gzip", wOptions{major: 1, big: true, comp: "gzip"}, true},
	{"v1-le-gzip-check", wOptions{major: 1, comp: "gzip", check: true}, true},
	{"v1-be-uncompressed", wOptions{major: 1, big: true, comp: "none"}, true},
	{"v2-le-gzip", wOptions{major: 2, comp: "gzip"}, true},
	{"v2-be-gzip", wOptions{major: 2, big: true, comp: "gzip"}, true},
	{"v2-be-gzip-check", wOptions{major: 2, big: true, comp: "gzip", check: true}, true},
	{"v2-le-lzma-nosize", wOptions{major: 2, comp: "lzma-nosize"}, false},
	{"v3-le-gzip", wOptions{major: 3, comp: "gzip"}, true},
	{"v3-be-gzip", wOptions{major: 3, big: true, comp: "gzip"}, true},
	{"v3-le-gzip-check", wOptions{major: 3, comp: "gzip", check: true}, true},
	{"v3-be-uncompressed", wOptions{major: 3, big: true, comp: "none"}, true},
	{"v3-le-lzma-magic", wOptions{major: 3, comp: "lzma", lzmaMagic: true}, false},
	{"v3-be-lzma-magic", wOptions{major: 3, big: true, comp: "lzma", lzmaMagic: true}, false},
	{"v3-le-lzma-nosize", wOptions{major: 3, comp: "lzma-nosize"}, false},
	{"v3-be-lzma-raw", wOptions{major: 3, big: true, comp: "lzma-raw"}, false},
	{"v3-le-lzma-raw-64M-dict", wOptions{major: 3, comp: "lzma-raw", dictSize: 64 << 20}, false},
}

// TestLayouts writes the layout tree in every layout this package reads
// besides mksquashfs 4's (1.0, 2.x, 3.x, 4.0 big-endian, vendor LZMA framings,
// non-standard dictionary sizes) and checks every entry; unsquashfs
// extracts the ones it can read and must agree byte for byte.
func TestLayouts(t *testing.T) {
	for _, l := range layouts {
		for _, bs := range []uint32{4096, 65536} {
			if l.o.major == 1 {
				bs = min(bs, 32768) // 1.0 blocks are at most 32 KiB
			}
			t.Run(fmt.Sprintf("%s-%dk", l.name, bs>>10), func(t *testing.T) {
				parallelDecode(t)
				o := l.o
				o.blockSize, o.mtime = bs, 1700000000
				tree := layoutTree(int(bs))
				img := writeTree(t, o, tree)
				res := firmwaretest.MustRun(t, Format, img, 0)
				if len(res.Sink.Warnings) > 0 {
					t.Fatalf("warnings: %q", res.Sink.Warnings)
				}
				c := res.Chunk
				wantVersion := fmt.Sprintf("%d.%d", o.major, map[uint16]int{1: 0, 2: 1, 3: 1, 4: 0}[o.major])
				if c.Confidence != firmware.ConfidenceHigh || c.Meta["version"] != wantVersion || c.Meta["block_size"] != bs {
					t.Errorf("chunk %+v", c)
				}
				if o.big != strings.Contains(c.Desc, "big-endian") || !strings.Contains(c.Desc, strings.TrimSuffix(strings.TrimSuffix(o.comp, "-raw"), "-nosize")) && o.comp != "none" {
					t.Errorf("desc %q", c.Desc)
				}
				checkTree(t, res.Sink, tree)
				if l.unsquashfs && !testing.Short() {
					if _, err := exec.LookPath("unsquashfs"); err == nil || testutil.InCI() {
						p := filepath.Join(t.TempDir(), "img")
						if err := os.WriteFile(p, img, 0o644); err != nil {
							t.Fatal(err)
						}
						compareWithUnsquashfs(t, p)
					}
				}
			})
		}
	}
}

// checkTree compares what the sink received with the tree written.
func checkTree(t *testing.T, s *firmwaretest.MemSink, tree []wEntry) {
	t.Helper()
	for _, w := range tree {
		e, ok := s.Entry(w.path)
		if !ok {
			t.Errorf("%s missing", w.path)
			continue
		}
		h := e.Header
		wantType := map[uint16]firmware.EntryType{tDir: firmware.TypeDir, tFile: firmware.TypeFile,
			tSymlink: firmware.TypeSymlink, tBlock: firmware.TypeBlockDevice, tChar: firmware.TypeCharDevice,
			tFIFO: firmware.TypeFIFO}[w.typ]
		if h.Type != wantType || h.Mode != unixmode.FromUnix(uint32(w.mode)) || h.UID != int(w.uid) || h.GID != int(w.gid) {
			t.Errorf("%s: type %d mode %v owner %d:%d, want %d %v %d:%d", w.path, h.Type, h.Mode, h.UID, h.GID,
				wantType, unixmode.FromUnix(uint32(w.mode)), w.uid, w.gid)
		}
		if h.ModTime.Unix() != 1700000000 {
			t.Errorf("%s: mtime %v", w.path, h.ModTime)
		}
		switch w.typ {
		case tFile:
			if i := firstDiff(e.Data, w.data); i >= 0 {
				t.Errorf("%s differs at byte %d (%d vs %d bytes)", w.path, i, len(e.Data), len(w.data))
			}
		case tSymlink:
			if h.Linkname != w.target {
				t.Errorf("%s -> %q", w.path, h.Linkname)
			}
		case tBlock, tChar:
			if h.Devmajor != w.rdev>>8 || h.Devminor != w.rdev&0xff {
				t.Errorf("%s: device %d,%d", w.path, h.Devmajor, h.Devminor)
			}
		}
	}
	var want []string
	for _, w := range tree {
		want = append(want, w.path)
	}
	for _, n := range s.Names() {
		if !containsPrefix(want, n) {
			t.Errorf("unexpected entry %s", n)
		}
	}
}

// containsPrefix reports whether name is one of paths or a directory above one.
func containsPrefix(paths []string, name string) bool {
	for _, p := range paths {
		if p == name || strings.HasPrefix(p, name+"/") {
			return true
		}
	}
	return false
}

// TestLayoutsDamaged corrupts and cuts images of the older layouts:
// extraction must stay within its time budget and report the damage (or
// not notice it), never panic or run away.
func TestLayoutsDamaged(t *testing.T) {
	for _, name := range []string{"v1-le-gzip", "v1-be-gzip", "v1-be-uncompressed", "v2-be-gzip", "v3-be-gzip", "v3-le-lzma-raw-64M-dict", "v4-be-lzma", "v3-be-uncompressed"} {
		img := layoutImage(t, name, 4096)
		reported, runs := 0, 0
		for off := 0; off < len(img); off += max(97, len(img)/60) {
			for _, cut := range []bool{false, true} {
				b := slices.Clone(img)
				if cut {
					clear(b[off:])
				} else {
					for j := off; j < min(off+16, len(b)); j++ {
						b[j] ^= 0xa5
					}
				}
				start := time.Now()
				res, err := firmwaretest.Run(Format, b, 0)
				if err != nil {
					t.Fatalf("%s damaged at %d: %v", name, off, err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("%s damaged at %d took %v", name, off, d)
				}
				runs++
				if res.Chunk == nil || res.ExtractErr != nil || len(res.Sink.Warnings) > 0 || len(res.Chunk.Warnings) > 0 {
					reported++
				}
			}
		}
		if reported < runs/2 {
			t.Errorf("%s: only %d of %d damaged images reported", name, reported, runs)
		}
	}
}

var writeFixtures = flag.Bool("write-fixtures", false, "rewrite the writer-made fixtures in testdata (testdata/recipe.sh runs this)")

// writerFixtures are committed images of the older layouts, made by the
// test writer (mksquashfs 4 cannot make them), so the scan-level fixture
// tests and golden manifests cover them too.
var writerFixtures = map[string]string{
	"squashfs-v1-le-gzip.img":     "v1-le-gzip",
	"squashfs-v1-be-gzip.img":     "v1-be-gzip",
	"squashfs-v2-le-gzip.img":     "v2-le-gzip",
	"squashfs-v3-be-gzip.img":     "v3-be-gzip",
	"squashfs-v3-le-lzma-raw.img": "v3-le-lzma-raw-64M-dict",
	"squashfs-v4-be-lzma.img":     "v4-be-lzma",
}

// TestWriterFixtures checks that the committed writer-made fixtures are
// what the writer makes today (-write-fixtures rewrites them).
func TestWriterFixtures(t *testing.T) {
	for file, name := range writerFixtures {
		img := layoutImage(t, name, 4096)
		p := filepath.Join("testdata", file)
		if *writeFixtures {
			if err := os.WriteFile(p, img, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got := firmwaretest.ReadFixture(t, file); !bytes.Equal(got, img) {
			t.Errorf("%s differs from what the writer makes (go test -run TestWriterFixtures -write-fixtures)", file)
		}
	}
}

// TestV1HostileOwners shrinks a 1.0 image's uid table to one entry: inodes
// whose uid index (type bank and 4-bit field) points past it are reported
// with their offset, the rest is extracted, and nothing runs away.
func TestV1HostileOwners(t *testing.T) {
	img := layoutImage(t, "v1-be-uncompressed", 4096)
	if img[37] != 2 {
		t.Fatalf("fixture has %d uids, want 2", img[37])
	}
	img[37] = 1
	res, err := firmwaretest.Run(Format, img, 0)
	if err != nil || res.Chunk == nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(res.Sink.Warnings, func(w string) bool { return strings.Contains(w, "uid index 1 out of 1") }) &&
		!slices.ContainsFunc(res.Chunk.Warnings, func(w string) bool { return strings.Contains(w, "uid index 1 out of 1") }) {
		t.Errorf("no uid warning: %q %q %v", res.Sink.Warnings, res.Chunk.Warnings, res.ExtractErr)
	}
	if e, ok := res.Sink.Entry("etc/passwd"); !ok || string(e.Data) != "root:x:0:0:root:/root:/bin/sh\n" {
		t.Errorf("etc/passwd not extracted")
	}
}

package ext

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
)

var fixtures = []struct {
	file, variant string
	blockSize     int64
}{
	{"ext-ext2.img", "ext2", 1024},
	{"ext-ext3.img", "ext3", 1024},
	{"ext-ext4.img", "ext4", 4096},
}

func TestFixtures(t *testing.T) {
	var want []string
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, fx.file)
			res, err := firmwaretest.Run(Format, data, 0)
			if err != nil {
				t.Fatal(err)
			}
			c := res.Chunk
			if c == nil {
				t.Fatalf("not identified: %v", res.IdentifyErr)
			}
			if c.Confidence != firmware.ConfidenceHigh || c.Meta["variant"] != fx.variant ||
				c.Meta["block_size"] != fx.blockSize || c.Size != int64(len(data)) || c.Meta["label"] != "camroot" {
				t.Errorf("chunk = %+v", c)
			}
			if res.ExtractErr != nil || len(res.Sink.Warnings) > 0 {
				t.Fatalf("extract: %v, warnings %q", res.ExtractErr, res.Sink.Warnings)
			}
			s := res.Sink
			checkCamrootTree(t, s)
			// ext adds lost+found; otherwise all three hold the same tree.
			got := s.Listing()
			if want == nil {
				want = got
			} else if !slices.Equal(got, want) {
				t.Errorf("listing differs from %s:\n%s\nwant\n%s", fixtures[0].file, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// checkCamrootTree checks the shared tree every fixture holds
// (firmwaretest.CheckSharedTree), then what ext keeps of it: the hard link
// pair, owners and times.
func checkCamrootTree(t *testing.T, s *firmwaretest.MemSink) {
	t.Helper()
	firmwaretest.CheckSharedTree(t, s)
	// The tree's hard link pair: whichever name the directory lists first is the file.
	p, _ := s.Entry("etc/passwd")
	q, _ := s.Entry("etc/passwd-")
	if p.Header.Type+q.Header.Type != firmware.TypeFile+firmware.TypeHardlink {
		t.Errorf("passwd/passwd- types %d/%d, want a file and a hard link", p.Header.Type, q.Header.Type)
	}
	if e := s.CheckEntry(t, "usr/share/www/index.html", firmware.TypeFile, 0o644); e.Header.UID != 1000 || e.Header.GID != 1000 {
		t.Errorf("index.html owned by %d:%d", e.Header.UID, e.Header.GID)
	}
	s.CheckEntry(t, "var/run/.keep", firmware.TypeFile, 0o644)
	if e, _ := s.Entry("bin/busybox"); !e.Header.ModTime.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("busybox mtime %v", e.Header.ModTime)
	}
}

// TestAgainstMke2fs builds images with the real mke2fs holding files large
// enough for double-indirect maps (ext2/3, 1 KiB blocks) and multi-extent
// files, plus a sparse file, and compares every byte.
func TestAgainstMke2fs(t *testing.T) {
	testutil.NeedTool(t, "mke2fs", "e2fsck", "debugfs")
	root := t.TempDir()
	big := make([]byte, 700<<10) // > 12 + 256 blocks of 1 KiB: double indirect
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(root, "big.bin"), big, 0o640); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(root, "sparse.bin"))
	if err != nil {
		t.Fatal(err)
	}
	sparse.WriteAt([]byte("head"), 0)
	sparse.WriteAt([]byte("tail"), 300<<10)
	sparse.Close()
	if err := os.MkdirAll(filepath.Join(root, "a/b/c/d"), 0o755); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 200)
	if err := os.Symlink(long, filepath.Join(root, "a/b/slow-symlink")); err != nil {
		t.Fatal(err)
	}
	for i := range 300 { // enough names for a hashed (htree) directory
		os.WriteFile(filepath.Join(root, "a/b/c/d", fmt.Sprintf("file-%03d", i)), []byte(fmt.Sprint(i)), 0o644)
	}
	for _, typ := range []string{"ext2", "ext3", "ext4"} {
		t.Run(typ, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), typ+".img")
			out, err := exec.Command("mke2fs", "-q", "-F", "-t", typ, "-b", "1024", "-d", root, img, "4M").CombinedOutput()
			if err != nil {
				t.Fatalf("mke2fs: %v\n%s", err, out)
			}
			// e2fsck -D rebuilds the big directory as a hashed (htree) one.
			exec.Command("e2fsck", "-fyD", img).Run() // exits 1 when it changed something
			if out, _ := exec.Command("debugfs", "-R", "htree /a/b/c/d", img).CombinedOutput(); !strings.Contains(string(out), "Root node dump") {
				t.Fatalf("a/b/c/d is not an htree directory:\n%s", out)
			}
			res := runImage(t, img)
			if got, _ := res.Sink.File("big.bin"); !bytes.Equal(got, big) {
				t.Errorf("big.bin: %d bytes, differs", len(got))
			}
			got, _ := res.Sink.File("sparse.bin")
			if len(got) != 300<<10+4 || string(got[:4]) != "head" || string(got[300<<10:]) != "tail" || bytes.Count(got, []byte{0}) != 300<<10-4 {
				t.Errorf("sparse.bin wrong (%d bytes)", len(got))
			}
			if e, _ := res.Sink.Entry("a/b/slow-symlink"); e.Header.Linkname != long {
				t.Errorf("slow symlink -> %q", e.Header.Linkname)
			}
			n := 0
			for _, e := range res.Sink.Entries {
				if strings.HasPrefix(e.Header.Name, "a/b/c/d/file-") {
					n++
					var i int
					fmt.Sscanf(e.Header.Name, "a/b/c/d/file-%d", &i)
					if string(e.Data) != fmt.Sprint(i) {
						t.Errorf("%s = %q", e.Header.Name, e.Data)
					}
				}
			}
			if n != 300 {
				t.Errorf("%d of 300 files in the hashed directory", n)
			}
		})
	}
}

// runImage extracts the image file at path, failing the test unless it is
// identified and extracted without an error or a warning.
func runImage(t *testing.T, path string) *firmwaretest.Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.Chunk == nil || res.ExtractErr != nil || len(res.Sink.Warnings) > 0 {
		t.Fatalf("run: %v %v %v %q", err, res.IdentifyErr, res.ExtractErr, res.Sink.Warnings)
	}
	return res
}

func mutate(t testing.TB, name string, fn func(b []byte) []byte) []byte {
	return fn(slices.Clone(firmwaretest.ReadFixture(t, name)))
}

func TestIdentifyRejects(t *testing.T) {
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	}
	for name, data := range map[string][]byte{
		"empty":                nil,
		"short":                make([]byte, 1500),
		"zeros":                make([]byte, 8192),
		"block size":           mutate(t, "ext-ext2.img", put32(1024+24, 9)),
		"zero blocks":          mutate(t, "ext-ext2.img", put32(1024+4, 0)),
		"first block":          mutate(t, "ext-ext4.img", put32(1024+20, 1)),
		"per group":            mutate(t, "ext-ext2.img", put32(1024+32, 0)),
		"inodes":               mutate(t, "ext-ext2.img", put32(1024, 1<<31)),
		"revision":             mutate(t, "ext-ext2.img", put32(1024+76, 7)),
		"truncated, root lost": firmwaretest.ReadFixture(t, "ext-ext3.img")[:4096],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data)))
			if !errors.Is(err, firmware.ErrNotFormat) {
				t.Fatalf("Identify = %v, want ErrNotFormat", err)
			}
		})
	}
}

// TestTruncatedImage: an image cut short is identified with what remains and
// a warning, and extraction recovers the files whose blocks are present.
func TestTruncatedImage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "ext-ext2.img")[:150<<10]
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.Chunk == nil {
		t.Fatal(err, res.IdentifyErr)
	}
	c := res.Chunk
	if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceMedium || len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0], "truncated") {
		t.Fatalf("chunk = %+v", c)
	}
	if got, _ := res.Sink.File("etc/passwd"); !strings.HasPrefix(string(got), "root:") {
		t.Errorf("etc/passwd = %q", got)
	}
}

// TestTruncated zeroes each fixture's tail from many points: extraction ends
// quickly, with an error or warnings when it lost something, never a panic.
func TestTruncated(t *testing.T) {
	for _, fx := range fixtures {
		data := firmwaretest.ReadFixture(t, fx.file)
		for cut := 2048; cut < len(data); cut += len(data) / 50 {
			b := slices.Clone(data)
			clear(b[cut:])
			start := time.Now()
			if _, err := firmwaretest.Run(Format, b, 0); err != nil {
				t.Fatalf("%s zeroed from %d: %v", fx.file, cut, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("%s zeroed from %d took %v", fx.file, cut, d)
			}
		}
	}
}

// TestCorrupt flips bytes across the metadata area of each fixture.
func TestCorrupt(t *testing.T) {
	for _, fx := range fixtures {
		data := firmwaretest.ReadFixture(t, fx.file)
		// About 60 places in the metadata area (superblock, descriptors,
		// bitmaps, inode tables, directories).
		for off := 1024; off < min(len(data), 200<<10); off += min(len(data), 200<<10) / 60 {
			b := slices.Clone(data)
			for i := off; i < min(off+8, len(b)); i++ {
				b[i] ^= 0x5a
			}
			if _, err := firmwaretest.Run(Format, b, 0); err != nil {
				t.Fatalf("%s corrupted at %d: %v", fx.file, off, err)
			}
		}
	}
}

func TestSinkLimit(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "ext-ext4.img")
	sink := &firmwaretest.MemSink{MaxFiles: 3}
	err := Format.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))), nil, sink)
	if !errors.Is(err, firmware.ErrLimit) || len(sink.Entries) != 3 {
		t.Fatalf("Extract = %v with %d entries", err, len(sink.Entries))
	}
}

func TestContextCancel(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "ext-ext2.img")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Format.Extract(ctx, io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))), nil, &firmwaretest.MemSink{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract = %v", err)
	}
}

func FuzzExt(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(firmwaretest.ReadFixture(f, fx.file))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHugeClaim: a superblock claiming 2^40 blocks in a small image is either
// rejected or read within the image, without a table sized by the claim.
func TestHugeClaim(t *testing.T) {
	data := slices.Clone(firmwaretest.ReadFixture(t, "ext-ext4.img"))
	le := binary.LittleEndian
	le.PutUint32(data[1024+4:], 0)        // blocks_count_lo
	le.PutUint32(data[1024+0x150:], 1<<8) // blocks_count_hi: 2^40 blocks
	le.PutUint32(data[1024:], 1<<31)      // inodes
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunk != nil && res.Chunk.Size > int64(len(data)) {
		t.Fatalf("chunk = %+v", res.Chunk)
	}
}

package flash

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/internal/unixmode"
)

var (
	ubiSourcesOnce sync.Once
	ubiSourcesDir  string
	ubiSourcesErr  error
)

// ubiSources builds the sources of the recipe-ubi.sh fixtures (the trees,
// the static volume's blob) once per test binary.
func ubiSources(t *testing.T) string {
	t.Helper()
	testutil.NeedTool(t, "perl", "openssl", "truncate")
	ubiSourcesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cordon-ubi-sources")
		if err != nil {
			ubiSourcesErr = err
			return
		}
		ubiSourcesDir = dir
		out, err := exec.Command("sh", "testdata/recipe-ubi.sh", "sources", dir).CombinedOutput()
		if err != nil {
			ubiSourcesErr = &exec.Error{Name: "recipe-ubi.sh sources: " + string(out), Err: err}
		}
	})
	if ubiSourcesErr != nil {
		t.Fatal(ubiSourcesErr)
	}
	return ubiSourcesDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ubiSourcesDir != "" {
		os.RemoveAll(ubiSourcesDir)
	}
	os.Exit(code)
}

// readNANDFixture returns the de-gzipped Dahua/Hikvision-style NAND dump.
func readNANDFixture(t testing.TB) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(firmwaretest.ReadFixture(t, "ubi-nand.bin.gz")))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// nandUBIOffset is where UBI starts in ubi-nand.bin.gz: after a boot area of
// four erase blocks of 64 pages of 2048+64 bytes.
const nandUBIOffset = 4 * 64 * (2048 + 64)

// extractUBIVolume runs the UBI format on data at off and returns the
// named volume file.
func extractUBIVolume(t *testing.T, data []byte, off int64, name string) ([]byte, *firmwaretest.Result) {
	t.Helper()
	res := firmwaretest.MustRun(t, UBI, data, off)
	vol, ok := res.Sink.File(name)
	if !ok {
		t.Fatalf("no volume file %s in %v (warnings %q)", name, res.Sink.Names(), res.Sink.Warnings)
	}
	return vol, res
}

// devtableEntries are the entries recipe-ubi.sh's device table adds.
var devtableEntries = map[string]string{
	"dev/console":   "type=4 mode=-rw------- uid=0 gid=0 dev=5,1",
	"dev/mtdblock2": "type=5 mode=-rw-r----- uid=0 gid=0 dev=31,2",
	"dev/ttyS300":   "type=4 mode=-rw-rw---- uid=0 gid=0 dev=4,300",
	"dev/initctl":   "type=6 mode=-rw------- uid=0 gid=0",
}

// compareTree checks that the sink holds exactly the tree at src (plus the
// device-table entries when devs is set): every file byte for byte with its
// permission bits, every directory and symlink target, hard links resolved.
func compareTree(t *testing.T, sink *firmwaretest.MemSink, src string, devs bool) {
	t.Helper()
	got := map[string]firmwaretest.MemEntry{}
	for _, e := range sink.Entries {
		if _, dup := got[e.Header.Name]; dup {
			t.Errorf("%s extracted twice", e.Header.Name)
		}
		got[e.Header.Name] = e
	}
	seen := map[string]bool{}
	files := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		e, ok := got[rel]
		if !ok {
			t.Errorf("%s: not extracted", rel)
			return nil
		}
		isFile, err := compareEntry(t, sink, rel, p, e)
		if isFile {
			files++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 15 {
		t.Errorf("only %d files in %s", files, src)
	}
	checkNotInSource(t, got, seen, devs)
}

// compareEntry compares the extracted entry e with the source file p (rel
// in the tree); isFile says p is a regular file.
func compareEntry(t *testing.T, sink *firmwaretest.MemSink, rel, p string, e firmwaretest.MemEntry) (isFile bool, err error) {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		return false, err
	}
	h := e.Header
	switch {
	case info.Mode().IsDir():
		if h.Type != firmware.TypeDir {
			t.Errorf("%s: type %d, want a directory", rel, h.Type)
		}
	case info.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(p)
		if h.Type != firmware.TypeSymlink || h.Linkname != target {
			t.Errorf("%s: type %d -> %q, want symlink -> %q", rel, h.Type, h.Linkname, target)
		}
	case info.Mode().IsRegular():
		want, err := os.ReadFile(p)
		if err != nil {
			return false, err
		}
		data := e.Data
		if h.Type == firmware.TypeHardlink {
			var ok bool
			data, ok = sink.File(h.Linkname)
			if !ok {
				t.Errorf("%s: hard link to %q, which is not a file", rel, h.Linkname)
			}
		} else if h.Type != firmware.TypeFile {
			t.Errorf("%s: type %d, want a file", rel, h.Type)
		}
		isFile = true
		if !bytes.Equal(data, want) {
			t.Errorf("%s: %d bytes differ from the source's %d", rel, len(data), len(want))
		}
	}
	if wantMode := unixmode.FromUnix(uint32(info.Mode().Perm()) | setBits(info.Mode())); info.Mode()&fs.ModeSymlink == 0 && h.Mode != wantMode {
		t.Errorf("%s: mode %v, want %v", rel, h.Mode, wantMode)
	}
	return isFile, nil
}

// checkNotInSource checks the extracted entries the source tree does not
// have: only the device-table entries, when devs, all of them present.
func checkNotInSource(t *testing.T, got map[string]firmwaretest.MemEntry, seen map[string]bool, devs bool) {
	t.Helper()
	for name, e := range got {
		if seen[name] {
			continue
		}
		if want, ok := devtableEntries[name]; ok && devs {
			if g := entryLine(e); g != want {
				t.Errorf("%s: %s, want %s", name, g, want)
			}
			continue
		}
		t.Errorf("%s: extracted, not in the source tree", name)
	}
	if devs {
		for name := range devtableEntries {
			if _, ok := got[name]; !ok {
				t.Errorf("%s: device-table entry not extracted", name)
			}
		}
	}
}

func setBits(m fs.FileMode) uint32 {
	var v uint32
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// entryLine is MemSink.Listing's line for one non-file entry, without the name.
func entryLine(e firmwaretest.MemEntry) string {
	s := &firmwaretest.MemSink{}
	s.Add(&e.Header, nil)
	_, rest, _ := strings.Cut(s.Listing()[0], " ")
	return rest
}

// TestUBIFSSourceTree extracts every UBI/UBIFS fixture of recipe-ubi.sh
// natively and compares the result with the tree it was built from.
func TestUBIFSSourceTree(t *testing.T) {
	src := ubiSources(t)
	t.Run("ubifs-zlib", func(t *testing.T) {
		res := firmwaretest.MustRun(t, UBIFS, firmwaretest.ReadFixture(t, "ubifs-zlib.img"), 0)
		compareTree(t, res.Sink, filepath.Join(src, "root"), true)
		if len(res.Sink.Warnings) > 0 {
			t.Errorf("warnings %q", res.Sink.Warnings)
		}
	})
	t.Run("ubi-volumes", func(t *testing.T) {
		data := firmwaretest.ReadFixture(t, "ubi-volumes.img")
		vol, res := extractUBIVolume(t, data, 0, "rootfs.ubifs")
		blob, ok := res.Sink.File("blob.bin")
		want, _ := os.ReadFile(filepath.Join(src, "blob"))
		if !ok || !bytes.Equal(blob, want) {
			t.Errorf("static volume blob: %d bytes, want the %d of the source", len(blob), len(want))
		}
		if len(res.Sink.Warnings) > 0 || len(res.Sink.Entries) != 2 {
			t.Errorf("entries %v, warnings %q", res.Sink.Names(), res.Sink.Warnings)
		}
		fsRes := firmwaretest.MustRun(t, UBIFS, vol, 0)
		if fsRes.Chunk.Meta["compression"] != "zstd" {
			t.Errorf("compression %v", fsRes.Chunk.Meta["compression"])
		}
		compareTree(t, fsRes.Sink, filepath.Join(src, "root"), false)
	})
	t.Run("ubi-nand", func(t *testing.T) {
		data := readNANDFixture(t)
		vol, res := extractUBIVolume(t, data, nandUBIOffset, "rootfs.ubifs")
		c := res.Chunk
		if c.Meta["nand_page_size"] != int64(2048) || c.Meta["nand_oob_size"] != int64(64) || c.Meta["bad_blocks"] != int64(2) ||
			c.Meta["erased_blocks"] != int64(1) || c.Meta["peb_size"] != int64(128<<10) || c.Size != 18*64*2112 {
			t.Errorf("chunk %+v", c)
		}
		kernel, _ := res.Sink.File("kernel.bin")
		want, _ := os.ReadFile("../../../testdata/firmware/flashdump/kernel.uimage")
		if !bytes.Equal(kernel, want) {
			t.Errorf("static volume kernel: %d bytes, want the %d of kernel.uimage", len(kernel), len(want))
		}
		if ws := strings.Join(res.Sink.Warnings, "\n"); !strings.Contains(ws, `"userdata": no mapped erase blocks`) || len(res.Sink.Warnings) != 1 {
			t.Errorf("warnings %q", res.Sink.Warnings)
		}
		fsRes := firmwaretest.MustRun(t, UBIFS, vol, 0)
		compareTree(t, fsRes.Sink, filepath.Join(src, "nandroot"), true)
	})
}

package squashfs

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestCompressorOptions builds images with the non-default compressor
// options mksquashfs offers (BCJ filters for xz, lzo1x_999, lz4 -Xhc, high
// zstd levels, 1 MiB blocks) and checks every file byte for byte.
func TestCompressorOptions(t *testing.T) {
	testutil.NeedTool(t, "mksquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	files := map[string][]byte{
		"bin/app":    bytes.Repeat([]byte("\x00\x48\x2d\xe9\x04\xb0\x8d\xe2ARM code-ish "), 20000),
		"etc/config": []byte("key=value\n"),
		"empty":      nil,
	}
	// A directory of 600 entries: several directory headers (at most 256
	// entries each), a listing across metadata blocks, an extended
	// directory inode with an index.
	for i := range 600 {
		files[fmt.Sprintf("www/cgi-bin/handler-with-a-long-name-%04d.cgi", i)] = []byte(fmt.Sprint(i))
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"-comp", "xz", "-Xbcj", "arm,armthumb"},
		{"-comp", "xz", "-Xdict-size", "50%"},
		{"-comp", "lzo", "-Xalgorithm", "lzo1x_999", "-Xcompression-level", "9"},
		{"-comp", "lz4", "-Xhc"},
		{"-comp", "zstd", "-Xcompression-level", "19"},
		{"-comp", "gzip", "-b", "1M", "-Xcompression-level", "1"},
		{"-comp", "xz", "-b", "1M", "-no-fragments"},
	} {
		t.Run(filepath.Join(args...), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "v.img")
			cmd := exec.Command("mksquashfs", append([]string{root, img, "-noappend", "-quiet", "-no-progress"}, args...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mksquashfs: %v\n%s", err, out)
			}
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			res, err := firmwaretest.Run(Format, data, 0)
			if err != nil || res.Chunk == nil || res.ExtractErr != nil || len(res.Sink.Warnings) > 0 {
				t.Fatalf("run: %v %v %v %q", err, res.IdentifyErr, res.ExtractErr, res.Sink.Warnings)
			}
			for name, want := range files {
				if got, ok := res.Sink.File(name); !ok || !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes, want %d", name, len(got), len(want))
				}
			}
			if typ := inodeType(t, data, "www", "cgi-bin"); typ != tLDir {
				t.Errorf("www/cgi-bin has inode type %d, want an extended directory", typ)
			}
		})
	}
}

// TestOwners checks uid/gid lookup through the id table, with owners set by
// mksquashfs pseudo definitions (no root needed).
func TestOwners(t *testing.T) {
	testutil.NeedTool(t, "mksquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "b"), []byte("b"), 0o644)
	img := filepath.Join(dir, "o.img")
	cmd := exec.Command("mksquashfs", root, img, "-noappend", "-quiet", "-no-progress",
		"-p", "etc/a m 640 1000 1001", "-p", "etc/b m 2755 70000 5")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(img)
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	for name, want := range map[string][3]int{"etc/a": {1000, 1001, 0o640}, "etc/b": {70000, 5, 0o755}} {
		e, ok := res.Sink.Entry(name)
		if !ok || e.Header.UID != want[0] || e.Header.GID != want[1] || int(e.Header.Mode.Perm()) != want[2] {
			t.Errorf("%s: %+v", name, e.Header)
		}
	}
	if e, _ := res.Sink.Entry("etc/b"); e.Header.Mode&fs.ModeSetgid == 0 {
		t.Errorf("etc/b lost setgid: %v", e.Header.Mode)
	}
}

// inodeType walks the path from the root and returns its inode type.
func inodeType(t *testing.T, data []byte, path ...string) uint16 {
	t.Helper()
	sb, err := readSuper(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := newFS(io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))), sb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	in, err := f.inode(sb.RootInode)
	for _, name := range path {
		if err != nil {
			t.Fatal(err)
		}
		entries, err := f.readDir(in)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(entries, func(e dirEntry) bool { return e.name == name })
		if i < 0 {
			t.Fatalf("%s not found", name)
		}
		in, err = f.inode(entries[i].ref)
		if err != nil {
			t.Fatal(err)
		}
	}
	return in.typ
}

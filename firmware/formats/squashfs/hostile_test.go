package squashfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
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

// entryAt finds the directory entry named name in the directory table of an
// image with uncompressed metadata, and returns the offset of its 8-byte
// entry header.
func entryAt(t *testing.T, img []byte, name string) int {
	t.Helper()
	sb, err := readSuper(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	table := img[sb.DirTable:sb.FragmentTable]
	// Name bytes preceded by their length-1 (u16) at the end of the header.
	var pat []byte
	pat = binary.LittleEndian.AppendUint16(pat, uint16(len(name)-1))
	pat = append(pat, name...)
	i := bytes.Index(table, pat)
	if i < 0 || bytes.Contains(table[i+1:], pat) {
		t.Fatalf("entry %q not found exactly once", name)
	}
	return int(sb.DirTable) + i + 2 - 8
}

// TestDirectoryLoop points etc/init.d at etc itself: the walk must refuse to
// enter it again and finish, with a warning.
func TestDirectoryLoop(t *testing.T) {
	img := slices.Clone(firmwaretest.ReadFixture(t, "squashfs-uncompressed.img"))
	etc, initd := entryAt(t, img, "etc"), entryAt(t, img, "init.d")
	copy(img[initd:initd+2], img[etc:etc+2]) // same metadata block (start 0), etc's offset
	res, err := firmwaretest.Run(Format, img, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	if !slices.ContainsFunc(res.Sink.Warnings, func(w string) bool { return strings.Contains(w, "directory loop") }) {
		t.Errorf("no loop warning: %q", res.Sink.Warnings)
	}
	if _, ok := res.Sink.Entry("etc/init.d/passwd"); ok {
		t.Error("the loop was entered")
	}
	if n := len(res.Sink.Entries); n > 40 {
		t.Errorf("%d entries", n)
	}
}

// TestHostileName renames etc/passwd- to "../../x": the raw name reaches the
// Sink with a warning, and the engine's Sink keeps the write inside the
// output folder.
func TestHostileName(t *testing.T) {
	img := slices.Clone(firmwaretest.ReadFixture(t, "squashfs-uncompressed.img"))
	e := entryAt(t, img, "passwd-")
	copy(img[e+8:], "../../x")
	res, err := firmwaretest.Run(Format, img, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	if _, ok := res.Sink.Entry("etc/../../x"); !ok {
		t.Errorf("raw name not passed on: %q", res.Sink.Names())
	}
	if !slices.ContainsFunc(res.Sink.Warnings, func(w string) bool { return strings.Contains(w, "hostile name") }) {
		t.Errorf("no warning: %q", res.Sink.Warnings)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "hostile.img")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "a", "b", "out")
	rep, err := firmware.Unpack(context.Background(), path, out, firmware.Options{Formats: []*firmware.Format{Format}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "a", "x"), filepath.Join(dir, "a", "b", "x"), filepath.Join(dir, "x")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s written outside the output folder", p)
		}
	}
	found := false
	for _, m := range rep.Manifest {
		if m.OrigName == "etc/../../x" {
			found = true
			if m.Note == "" || (m.Path != "" && !filepath.IsLocal(m.Path)) {
				t.Errorf("manifest entry %+v", m)
			}
		}
	}
	if !found {
		t.Error("hostile entry missing from the manifest")
	}
}

// TestSparseBomb: mksquashfs stores a 256 MiB hole as sparse blocks, so a
// 4 KiB image expands to 256 MiB. The Sink's byte limit ends the extraction
// with ErrLimit, quickly, and what was read is zeros.
func TestSparseBomb(t *testing.T) {
	testutil.NeedTool(t, "mksquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	if err := os.WriteFile(filepath.Join(root, "hole"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(root, "hole"), 256<<20); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "bomb.img")
	if out, err := exec.Command("mksquashfs", root, img, "-quiet", "-no-progress", "-noappend").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 64<<10 {
		t.Fatalf("image of %d bytes: the hole was not stored sparse", len(data))
	}
	sink := &firmwaretest.MemSink{MaxBytes: 1 << 20}
	start := time.Now()
	err = Format.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))), nil, sink)
	if !errors.Is(err, firmware.ErrLimit) {
		t.Fatalf("Extract = %v, want ErrLimit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	got, _ := sink.File("hole")
	if len(got) != 1<<20 || bytes.Count(got, []byte{0}) != len(got) {
		t.Fatalf("kept %d bytes, not all zero", len(got))
	}
}

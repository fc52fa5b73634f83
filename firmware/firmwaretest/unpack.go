package firmwaretest

import (
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
)

// EscapeProbes are the paths outside the output folder that the hostile
// archive fixtures (traversal names, escaping symlinks) try to write.
var EscapeProbes = []string{"/tmp/cordon-escape-check", "/tmp/cordon-escape-check-2"}

// CheckFixturesStayInside runs CheckUnpackStaysInside on testdata/<name>,
// in a subtest each, for every fixture name in hostile with the hostile names
// it holds.
func CheckFixturesStayInside(t *testing.T, formats []*firmware.Format, hostile map[string][]string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(hostile)) {
		t.Run(name, func(t *testing.T) {
			CheckUnpackStaysInside(t, filepath.Join("testdata", name), formats, hostile[name])
		})
	}
}

// CheckUnpackStaysInside unpacks image with the engine and the given formats
// and checks that nothing lands outside the output folder (neither below the
// test's temporary folder nor at EscapeProbes), that symlinks on disk are
// relative and resolve inside it, that no device node, fifo, socket or
// setuid/setgid bit reaches the disk, and that the manifest keeps each of the
// hostile original names.
func CheckUnpackStaysInside(t *testing.T, image string, formats []*firmware.Format, hostile []string) {
	t.Helper()
	for _, e := range EscapeProbes {
		if _, err := os.Lstat(e); err == nil {
			t.Skipf("%s exists before the test", e)
		}
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	rep, err := firmware.Unpack(context.Background(), image, out, firmware.Options{Formats: formats})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range EscapeProbes {
		if _, err := os.Lstat(e); err == nil {
			os.Remove(e)
			t.Errorf("%s was written outside the output folder", e)
		}
	}
	inside := func(p string) bool { return p == out || strings.HasPrefix(p, out+string(filepath.Separator)) }
	err = filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == parent {
			return err
		}
		if !inside(p) {
			t.Errorf("%s written outside %s", p, out)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
			t.Errorf("%s has mode %v on disk", p, info.Mode())
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				t.Errorf("%s -> %s: absolute symlink on disk", p, target)
			}
			if !inside(filepath.Join(filepath.Dir(p), target)) {
				t.Errorf("%s -> %s resolves outside the output folder", p, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	orig := map[string]bool{}
	for _, e := range rep.Manifest {
		orig[e.OrigName] = true
	}
	for _, want := range hostile {
		if !orig[want] {
			t.Errorf("manifest lacks the original name %q", want)
		}
	}
}

// ReadFixture reads testdata/name, failing the test when it cannot.
func ReadFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

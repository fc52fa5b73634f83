package cpio_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestUnpackStaysInside unpacks the hostile fixtures with the engine and
// checks that nothing lands outside the output folder, that symlinks on disk
// resolve inside it, that no device node or setuid bit reaches the disk, and
// that the manifest keeps the original names.
func TestUnpackStaysInside(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hostile []string
	}{
		{"cpio-traversal.cpio", []string{"../evil", "link", "/tmp/xxxxxxxxxxxxxx/abs/evil"}},
		{"cpio-newc.cpio", []string{"bin/busybox", "dev/console", "dev/mtdblock0", "dev/initctl"}},
	} {
		name := tc.name
		t.Run(name, func(t *testing.T) {
			escapes := []string{"/tmp/cordon-escape-check", "/tmp/cordon-escape-check-2"}
			for _, e := range escapes {
				if _, err := os.Lstat(e); err == nil {
					t.Skipf("%s exists before the test", e)
				}
			}
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			rep, err := firmware.Unpack(context.Background(), filepath.Join("testdata", name), out, firmware.Options{
				Formats: formats.All,
				Logger:  testutil.Logger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range escapes {
				if _, err := os.Lstat(e); err == nil {
					os.Remove(e)
					t.Errorf("%s was written outside the output folder", e)
				}
			}
			err = filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if p == parent {
					return nil
				}
				if p != out && !strings.HasPrefix(p, out+string(filepath.Separator)) {
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
					res := filepath.Join(filepath.Dir(p), target)
					if res != out && !strings.HasPrefix(res, out+string(filepath.Separator)) {
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
			for _, want := range tc.hostile {
				if !orig[want] {
					t.Errorf("manifest lacks the original name %q", want)
				}
			}
		})
	}
}

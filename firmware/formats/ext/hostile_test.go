package ext

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestDirectoryLoop hard-links /etc as /etc/init.d/loop with debugfs: the
// walk lists the link but does not enter /etc twice.
func TestDirectoryLoop(t *testing.T) {
	testutil.NeedTool(t, "debugfs")
	img := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(img, readFixture(t, "ext-ext2.img"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("debugfs", "-w", "-R", "link /etc /etc/init.d/loop", img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	if _, ok := res.Sink.Entry("etc/init.d/loop"); !ok {
		t.Errorf("loop entry missing: %q", res.Sink.Names())
	}
	if _, ok := res.Sink.Entry("etc/init.d/loop/passwd"); ok {
		t.Error("the loop was entered")
	}
	if !slices.ContainsFunc(res.Sink.Warnings, func(w string) bool { return strings.Contains(w, "directory loop") }) {
		t.Errorf("no loop warning: %q", res.Sink.Warnings)
	}
}

package ext

import (
	"fmt"
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
	if err := os.WriteFile(img, firmwaretest.ReadFixture(t, "ext-ext2.img"), 0o644); err != nil {
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

// TestMetaBG reads a meta_bg filesystem (group descriptors spread over the
// meta groups) whose later inodes live beyond the first meta group.
func TestMetaBG(t *testing.T) {
	testutil.NeedTool(t, "mke2fs", "debugfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for i := 1; i <= 60; i++ {
		for j := 1; j <= 12; j++ {
			p := filepath.Join(root, fmt.Sprintf("d%d", i), fmt.Sprintf("f%d", j))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(fmt.Sprintf("%d-%d", i, j)), 0o644)
		}
	}
	img := filepath.Join(dir, "mb.img")
	out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-g", "256", "-N", "2048",
		"-O", "meta_bg,^resize_inode,^flex_bg", "-d", root, img, "16M").CombinedOutput()
	if err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	// 32 inodes per group, 16 descriptors per block: inode 513 on is in meta group 1.
	out, _ = exec.Command("debugfs", "-R", "stat /d60/f12", img).Output()
	var ino int
	if _, err := fmt.Sscanf(string(out), "Inode: %d", &ino); err != nil || ino <= 512 {
		t.Fatalf("d60/f12 is inode %d (%v): the test needs it beyond the first meta group", ino, err)
	}
	res := runImage(t, img)
	for i := 1; i <= 60; i++ {
		for j := 1; j <= 12; j++ {
			name := fmt.Sprintf("d%d/f%d", i, j)
			if got, _ := res.Sink.File(name); string(got) != fmt.Sprintf("%d-%d", i, j) {
				t.Fatalf("%s = %q", name, got)
			}
		}
	}
}

// TestInlineData reads ext4 inline_data inodes made by mke2fs -d: small files
// in i_block, an 80-byte file spilling into the system.data attribute, and
// small directories.
func TestInlineData(t *testing.T) {
	testutil.NeedTool(t, "mke2fs", "debugfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	files := map[string]string{
		"a":        "small\n",
		"b80":      strings.Repeat("0123456789", 8),
		"sub/f1":   "1\n",
		"sub/f2":   "2\n",
		"mid/e1":   "e1",
		"mid/e4":   "e4",
		"mid/e3":   "e3",
		"mid/e2":   "e2",
		"big/file": strings.Repeat("x", 5000),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(data), 0o644)
	}
	os.Symlink("target-of-link", filepath.Join(root, "l"))
	img := filepath.Join(dir, "il.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-O", "inline_data", "-d", root, img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	for _, p := range []string{"/a", "/b80", "/sub", "/mid"} {
		out, _ := exec.Command("debugfs", "-R", "stat "+p, img).Output()
		if !strings.Contains(string(out), "Size of inline data") {
			t.Fatalf("%s is not stored inline; the test needs it to be:\n%s", p, out)
		}
	}
	res := runImage(t, img)
	for name, want := range files {
		if got, ok := res.Sink.File(name); !ok || string(got) != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if e, _ := res.Sink.Entry("l"); e.Header.Linkname != "target-of-link" {
		t.Errorf("l -> %q", e.Header.Linkname)
	}
}

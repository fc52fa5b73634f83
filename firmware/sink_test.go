package firmware

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSafeName(t *testing.T) {
	for _, c := range []struct{ in, want, note string }{
		{"etc/passwd", "etc/passwd", ""},
		{"./etc//passwd", "etc/passwd", ""},
		{"/etc/passwd", "etc/passwd", "absolute"},
		{"../../etc/passwd", "etc/passwd", "escaped"},
		{"a/../../b", "b", "escaped"},
		{"..", "", "not a usable path"},
		{"/", "", "not a usable path"},
		{"", "", "not a usable path"},
		{"dir\\..\\..\\win.ini", "win.ini", "escaped"},
		{"nul\x00byte", "nul_byte", ""},
		{strings.Repeat("x", 300), strings.Repeat("x", 240) + "~", ""},
	} {
		got, note := safeName(c.in)
		if !strings.HasPrefix(got, c.want) || (c.want == "" && got != "") || !strings.Contains(note, c.note) || (c.note == "" && note != "") {
			t.Errorf("safeName(%q) = %q, %q; want %q, note with %q", c.in, got, note, c.want, c.note)
		}
	}
}

// FuzzSink hands the Sink a short script of entries, one per line:
// "<type digit><name>\t<link target>". Nothing may be created outside the
// chunk's folder, no symlink may point outside it (wherever it really is),
// and no special file or setuid bit may appear.
func FuzzSink(f *testing.F) {
	for _, seed := range []string{
		"2a\t.\n1b\t\n2a/b/l\t../../etc",
		"0../../etc/x\t\n2/abs/link\t/bin/busybox\n2escape\t../../../../etc/shadow",
		"2tmpdir\t/tmp\n0tmpdir/x\t",
		"1d\t\n2d/up\t..\n0d/up/up/x\t\n3hard\td/up/x",
		"4dev/console\t\n6fifo\t\n0..\\..\\win.ini\t",
	} {
		f.Add(seed, uint32(0o4755))
	}
	f.Fuzz(func(t *testing.T, script string, mode uint32) {
		base := t.TempDir()
		outDir := filepath.Join(base, "out")
		chunk := filepath.Join(outDir, "x")
		os.MkdirAll(chunk, 0o755)
		root, err := os.OpenRoot(chunk)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		s := &diskSink{ctx: context.Background(), root: root, dir: "x", budget: &budget{limits: Limits{}.withDefaults()}, inSize: 100}
		m := fs.FileMode(mode&0o777) | fs.ModeSetuid
		for i, line := range strings.Split(script, "\n") {
			if i == 8 || line == "" {
				break
			}
			name, target, _ := strings.Cut(line[1:], "\t")
			typ := EntryType((line[0] - '0') % 8)
			s.Add(&Header{Name: name, Type: typ, Mode: m, Linkname: target}, strings.NewReader("content"))
		}
		if ents, _ := os.ReadDir(base); len(ents) != 1 {
			t.Fatalf("something was created beside the output: %v", ents)
		}
		if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
			t.Fatalf("something was created beside the chunk folder: %v", ents)
		}
		filepath.WalkDir(outDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			if info.Mode()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeSetuid|fs.ModeSetgid) != 0 {
				t.Fatalf("%s has mode %v", p, info.Mode())
			}
			if info.Mode()&fs.ModeSymlink != 0 {
				// p is the link's real location (WalkDir does not follow links).
				tgt, _ := os.Readlink(p)
				abs := filepath.Join(filepath.Dir(p), tgt)
				if filepath.IsAbs(tgt) || (abs != chunk && !strings.HasPrefix(abs, chunk+string(filepath.Separator))) {
					t.Fatalf("symlink %s -> %q leaves the chunk folder", p, tgt)
				}
			}
			return nil
		})
		for _, e := range s.entries {
			if e.Path != "" && !strings.HasPrefix(e.Path, "x/") {
				t.Fatalf("manifest path %q outside the chunk folder", e.Path)
			}
		}
	})
}

// TestSinkNoLinkThroughLink: "a -> ." makes "a/b" physically "b", so a link
// "a/b/l -> ../../etc" would pass a lexical check and point outside. Entries
// whose parent goes through a symlink are refused.
func TestSinkNoLinkThroughLink(t *testing.T) {
	out := t.TempDir()
	root, err := os.OpenRoot(out)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	s := &diskSink{ctx: context.Background(), root: root, dir: "x", budget: &budget{limits: Limits{}.withDefaults()}}
	s.Add(&Header{Name: "a", Type: TypeSymlink, Linkname: "."}, nil)
	s.Add(&Header{Name: "b", Type: TypeDir, Mode: 0o755}, nil)
	s.Add(&Header{Name: "a/b/l", Type: TypeSymlink, Linkname: "../../etc"}, nil)
	if _, err := os.Lstat(filepath.Join(out, "b", "l")); err == nil {
		t.Fatalf("link created through a link")
	}
	if e := s.entries[2]; e.Path != "" || !strings.Contains(e.Note, `symlink "a"`) {
		t.Errorf("manifest %+v", e)
	}
}

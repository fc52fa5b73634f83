package formats

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden .manifest files and docs/formats.md")

// fixture is a test image built by a format package's testdata/recipe.sh.
type fixture struct {
	path   string // relative to this folder
	format string // the format it is named after
}

// notFixture are files in testdata folders that are inputs of recipes, not images.
var notFixture = []string{".manifest", ".sh", ".py", ".go", ".txt", ".md", ".dts", ".json"}

// fixtures finds firmware/formats/*/testdata/<format>[-.]* files.
func fixtures(t *testing.T) []fixture {
	t.Helper()
	paths, err := filepath.Glob("*/testdata/*")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(All))
	for _, f := range All {
		names = append(names, f.Name)
	}
	// Longest name first, so "lz4-legacy.lz4" belongs to lz4-legacy, not lz4.
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	var out []fixture
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			continue
		}
		base := filepath.Base(p)
		if slices.ContainsFunc(notFixture, func(s string) bool { return strings.HasSuffix(base, s) }) {
			continue
		}
		for _, n := range names {
			if strings.HasPrefix(base, n+"-") || strings.HasPrefix(base, n+".") {
				out = append(out, fixture{path: p, format: n})
				break
			}
		}
	}
	return out
}

// TestEveryFormatHasAFixture fails when a format in All has no fixture
// (after unblob's test_missing_handlers_integrations_tests).
func TestEveryFormatHasAFixture(t *testing.T) {
	have := map[string]bool{}
	for _, f := range fixtures(t) {
		have[f.format] = true
	}
	seen := map[string]bool{}
	for _, f := range All {
		if seen[f.Name] {
			t.Errorf("format name %q is declared twice", f.Name)
		}
		seen[f.Name] = true
		if !have[f.Name] {
			t.Errorf("format %s has no fixture: add firmware/formats/<pkg>/testdata/%s[-variant].<ext>, built by the package's testdata/recipe.sh", f.Name, f.Name)
		}
		if f.Identify == nil || f.Doc == "" || f.Kind == "" {
			t.Errorf("format %s lacks Identify, Doc or Kind", f.Name)
		}
	}
}

// TestFixtures unpacks every fixture with All and compares the result with
// its golden <fixture>.manifest (go test ./firmware/formats -run Fixtures -update).
func TestFixtures(t *testing.T) {
	for _, fx := range fixtures(t) {
		t.Run(strings.ReplaceAll(fx.path, "/testdata/", "/"), func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			rep, err := firmware.Unpack(context.Background(), fx.path, out, firmware.Options{
				Formats: All,
				Logger:  testutil.Logger(t),
				Limits:  firmware.Limits{Timeout: 2 * time.Minute},
			})
			if err != nil {
				t.Fatal(err)
			}
			if !hasFormat(rep.Chunks, fx.format) {
				t.Errorf("%s is not identified anywhere in %s", fx.format, fx.path)
			}
			got := goldenText(rep)
			golden := fx.path + ".manifest"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden manifest (%v): check the unpack by eye, then run go test ./firmware/formats -run Fixtures -update", err)
			}
			if got != string(want) {
				t.Errorf("unpack of %s differs from %s:\n%s", fx.path, golden, lineDiff(string(want), got))
			}
		})
	}
}

func hasFormat(cs []*firmware.ChunkReport, name string) bool {
	for _, c := range cs {
		if c.Format == name || hasFormat(c.Children, name) {
			return true
		}
	}
	return false
}

// goldenText is the tree manifest: the chunk tree, then every entry with
// its type, original mode, size, sha256 and link target, as written.
func goldenText(rep *firmware.Report) string {
	var b strings.Builder
	b.WriteString("# chunks: offset format size [file]; entries: type mode size sha256 path [-> target] [# note]\n")
	var walk func(cs []*firmware.ChunkReport, indent string)
	walk = func(cs []*firmware.ChunkReport, indent string) {
		for _, c := range cs {
			fmt.Fprintf(&b, "%schunk %#x %s %d", indent, c.Offset, c.Format, c.Size)
			if c.File != "" {
				fmt.Fprintf(&b, " in %s", c.File)
			}
			if c.Encrypted {
				b.WriteString(" encrypted")
			}
			b.WriteString("\n")
			walk(c.Children, indent+"  ")
		}
	}
	walk(rep.Chunks, "")
	for _, u := range rep.Unknown {
		kind := "unknown"
		if u.Padding != "" {
			kind = "padding " + u.Padding
		}
		fmt.Fprintf(&b, "region %#x %d %s\n", u.Offset, u.Size, kind)
	}
	for _, e := range rep.Manifest {
		p := e.Path
		if p == "" {
			p = "(not created) " + e.OrigName
		}
		sum := e.SHA256
		if sum == "" {
			sum = "-"
		}
		fmt.Fprintf(&b, "%s %s %d %s %s", e.Type, e.Mode, e.Size, sum, p)
		if e.LinkTarget != "" {
			fmt.Fprintf(&b, " -> %s", e.LinkTarget)
		}
		if e.Type == "chardev" || e.Type == "blockdev" {
			fmt.Fprintf(&b, " dev %d,%d", e.DevMajor, e.DevMinor)
		}
		if e.Note != "" {
			fmt.Fprintf(&b, " # %s", e.Note)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	inW, inG := map[string]int{}, map[string]int{}
	for _, l := range w {
		inW[l]++
	}
	for _, l := range g {
		inG[l]++
	}
	var b strings.Builder
	n := 0
	for _, l := range w {
		if inG[l] == 0 && n < 40 {
			fmt.Fprintf(&b, "- %s\n", l)
			n++
		}
	}
	for _, l := range g {
		if inW[l] == 0 && n < 80 {
			fmt.Fprintf(&b, "+ %s\n", l)
			n++
		}
	}
	if n == 0 {
		b.WriteString("(same lines, different order or counts)\n")
	}
	return b.String()
}

// TestFormatsDoc keeps docs/formats.md in step with the declarations.
func TestFormatsDoc(t *testing.T) {
	got := formatsDoc()
	path := filepath.Join("..", "..", "docs", "formats.md")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(want, got) {
		t.Errorf("docs/formats.md is stale (%v): run go test ./firmware/formats -run FormatsDoc -update", err)
	}
}

func formatsDoc() []byte {
	var b bytes.Buffer
	b.WriteString("# Firmware formats\n\n")
	b.WriteString("<!-- Generated from the declarations in firmware/formats (formats.All) by\n")
	b.WriteString("     go test ./firmware/formats -run FormatsDoc -update. Do not edit. -->\n\n")
	b.WriteString("`cordon firmware scan` and `cordon firmware unpack` try these formats in this order at every\n")
	b.WriteString("candidate offset (more specific first); `cordon firmware formats` prints the same list. Every\n")
	b.WriteString("format is read natively in Go, with bounds checks and size limits, and has a fixture built by\n")
	b.WriteString("real tools (see the `testdata/recipe.sh` beside each format package).\n\n")
	b.WriteString("The last column says what `cordon firmware unpack` does with a chunk of the format (from its\n")
	b.WriteString("declaration): **extracts** its content, **carves** its bytes out to a file (and looks for chunks\n")
	b.WriteString("embedded in it, except in keys and certificates), or only **identifies** it: the chunk is mapped but not opened, reported as a\n")
	b.WriteString("gap in report.json and as `coverage.unexamined` by `cordon inspect`.\n\n")
	b.WriteString("| # | name | kind | magic (hex, @offset) | action |\n|---|---|---|---|---|\n")
	for i, f := range All {
		var ms []string
		for j, m := range f.Magics {
			if j == 3 {
				ms = append(ms, fmt.Sprintf("+%d more", len(f.Magics)-3))
				break
			}
			s := fmt.Sprintf("`%x`", m.Bytes)
			if m.Offset != 0 {
				s += fmt.Sprintf(" @%#x", m.Offset)
			}
			ms = append(ms, s)
		}
		if len(ms) == 0 {
			ms = []string{"(whole file)"}
		}
		fmt.Fprintf(&b, "| %d | [%s](#%s) | %s | %s | %s |\n", i+1, f.Name, anchor(f.Name), f.Kind, strings.Join(ms, ", "), f.Action())
	}
	kinds := map[firmware.Kind][]*firmware.Format{}
	var order []firmware.Kind
	for _, f := range All {
		if _, ok := kinds[f.Kind]; !ok {
			order = append(order, f.Kind)
		}
		kinds[f.Kind] = append(kinds[f.Kind], f)
	}
	for _, k := range order {
		fmt.Fprintf(&b, "\n## %s\n", strings.ToUpper(string(k[:1]))+string(k[1:]))
		for _, f := range kinds[k] {
			fmt.Fprintf(&b, "\n### %s\n\n%s\n", f.Name, strings.TrimSpace(f.Doc))
		}
	}
	return b.Bytes()
}

func anchor(name string) string {
	return strings.ToLower(strings.NewReplacer(" ", "-", ".", "", "/", "").Replace(name))
}

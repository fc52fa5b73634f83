package flash_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// xmDir holds the layout and the cramfs root of the XiongMai-style dump.
const xmDir = "../../../testdata/firmware/xmdump"

// assembleLayout writes the 16 MiB dump that dir/layout.txt describes and
// returns its path.
func assembleLayout(t testing.TB, dir string) string {
	path, _ := firmwaretest.AssembleDump(t, dir)
	return path
}

// TestXiongMaiDump unpacks the XiongMai-style dump (bootloader | uImage |
// cramfs romfs | JFFS2 config) and checks that every file and symlink of the
// romfs source tree (romfs.files, written by recipe.sh from the folder
// mkfs.cramfs packed) comes back byte for byte, and nothing else.
func TestXiongMaiDump(t *testing.T) {
	path := assembleLayout(t, xmDir)
	out := filepath.Join(t.TempDir(), "out")
	rep, err := firmware.Unpack(context.Background(), path, out, firmware.Options{Formats: formats.All, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var romfs *firmware.ChunkReport
	var chunks []string
	for _, c := range rep.Chunks {
		chunks = append(chunks, fmt.Sprintf("%#x %s", c.Offset, c.Format))
		if c.Offset == 0x340000 {
			romfs = c
		}
	}
	if got, want := strings.Join(chunks, ", "), "0x40000 uimage, 0x340000 cramfs, 0xf40000 jffs2"; got != want {
		t.Errorf("chunks: %s, want %s", got, want)
	}
	if romfs == nil || romfs.Format != "cramfs" || romfs.Confidence != firmware.ConfidenceHigh || len(romfs.Warnings) > 0 {
		t.Fatalf("chunk at 0x340000 = %+v, want a clean cramfs", romfs)
	}
	const root = "0x340000-cramfs.extract/"
	got := map[string]string{}
	for _, m := range rep.Manifest {
		rel, ok := strings.CutPrefix(m.Path, root)
		switch {
		case !ok:
		case m.Type == "file":
			data, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(m.Path)))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			got[rel] = hex.EncodeToString(sum[:])
			if m.SHA256 != got[rel] {
				t.Errorf("%s: manifest sha256 %s, file %s", m.Path, m.SHA256, got[rel])
			}
		case m.Type == "symlink":
			got[rel] = "-> " + m.LinkTarget
		}
	}
	want, err := os.ReadFile(filepath.Join(xmDir, "romfs.files"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		n++
		if name, target, ok := strings.Cut(line, " -> "); ok {
			if got[name] != "-> "+target {
				t.Errorf("symlink %s = %q, want -> %s", name, got[name], target)
			}
			delete(got, name)
			continue
		}
		sum, name, _ := strings.Cut(line, " ")
		if got[name] != sum {
			t.Errorf("%s: sha256 %q, want %s", name, got[name], sum)
		}
		delete(got, name)
	}
	if len(got) > 0 || n < 20 {
		t.Errorf("%d entries listed; extracted but not in romfs.files: %v", n, got)
	}
}

package firmwaretest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// DumpPart is one part of an assembled flash dump.
type DumpPart struct {
	Off  int64
	File string
	Size int64
}

// DumpSize is the size of the flash dumps under testdata/firmware.
const DumpSize = 16 << 20

// AssembleDump writes the DumpSize flash dump that dir/layout.txt describes
// ("OFFSET FILE" lines, # comments), as dir/assemble.sh does: each part at
// its offset, 0xFF everywhere else. It returns the dump's path (in a
// temporary folder) and its parts in layout order.
func AssembleDump(tb testing.TB, dir string) (string, []DumpPart) {
	tb.Helper()
	layout, err := os.ReadFile(filepath.Join(dir, "layout.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	img := bytes.Repeat([]byte{0xFF}, DumpSize)
	var parts []DumpPart
	sc := bufio.NewScanner(bytes.NewReader(layout))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var offs, file string
		if _, err := fmt.Sscan(line, &offs, &file); err != nil {
			tb.Fatalf("layout.txt: %q: %v", line, err)
		}
		off, err := strconv.ParseInt(offs, 0, 64)
		if err != nil {
			tb.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			tb.Fatal(err)
		}
		if off < 0 || off+int64(len(data)) > DumpSize {
			tb.Fatalf("layout.txt: %s at %#x does not fit in %d bytes", file, off, DumpSize)
		}
		copy(img[off:], data)
		parts = append(parts, DumpPart{off, file, int64(len(data))})
	}
	path := filepath.Join(tb.TempDir(), "flash.bin")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path, parts
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestInspectXiongMaiDump runs `cordon inspect` on the XiongMai-style 16 MiB
// flash dump (testdata/firmware/xmdump: bootloader | uImage | cramfs romfs |
// JFFS2 config) and checks that the findings planted in the cramfs root are
// reported inside it. Before cramfs was extracted, the romfs was only carved
// and none of these were found.
func TestInspectXiongMaiDump(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "firmware", "xmdump")
	layout, err := os.ReadFile(filepath.Join(dir, "layout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte{0xFF}, 16<<20)
	sc := bufio.NewScanner(bytes.NewReader(layout))
	for sc.Scan() {
		var offs, file string
		if line := sc.Text(); strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		} else if _, err := fmt.Sscan(line, &offs, &file); err != nil {
			t.Fatalf("layout.txt: %q: %v", line, err)
		}
		off, err := strconv.ParseInt(offs, 0, 64)
		if err != nil {
			t.Fatal(err)
		}
		part, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		copy(img[off:], part)
	}
	work := t.TempDir()
	dump := filepath.Join(work, "flash.bin")
	if err := os.WriteFile(dump, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "report.json")
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"inspect", dump, "--format", "json", "-o", out}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("cordon inspect exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Findings []struct {
			Rule, Path, Evidence, Detail string
		}
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ rule, path, evidence string }{
		{"account.cracked-password", "0x340000-cramfs.extract/etc/passwd", "xmhdipc"},
		{"account.hash-in-passwd", "0x340000-cramfs.extract/etc/passwd", ""},
		{"secret.private-key", "0x340000-cramfs.extract/usr/etc/ssl/device.key", ""},
		{"endpoint.vendor-cloud", "0x340000-cramfs.extract/usr/bin/Sofia", "secu100.net"},
		{"endpoint.vendor-cloud", "0x340000-cramfs.extract/mnt/custom/cloud.ini", "pub-cfg.secu100.net"},
		{"file.setuid", "0x340000-cramfs.extract/usr/bin/upgrade", ""},
	} {
		found := false
		for _, f := range rep.Findings {
			if f.Rule == w.rule && f.Path == w.path && strings.Contains(f.Evidence+" "+f.Detail, w.evidence) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s finding in %s (evidence %q); findings:\n%s", w.rule, w.path, w.evidence, data)
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

// TestInspectXiongMaiDump runs `cordon inspect` on the XiongMai-style 16 MiB
// flash dump (testdata/firmware/xmdump: bootloader | uImage | cramfs romfs |
// JFFS2 config) and checks that the findings planted in the cramfs root are
// reported inside it. Before cramfs was extracted, the romfs was only carved
// and none of these were found.
func TestInspectXiongMaiDump(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "firmware", "xmdump")
	dump, _ := firmwaretest.AssembleDump(t, dir)
	work := t.TempDir()
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

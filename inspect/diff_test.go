package inspect

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	old := runFixture(t, "testdata/fw", Options{})
	new := runFixture(t, newVersionTree(t), Options{})

	d := Diff(old, new)
	if strings.Join(d.Files.Added, ",") != "etc/new.conf" || strings.Join(d.Files.Removed, ",") != "etc/ssl/private/server.key" {
		t.Errorf("files added %v removed %v", d.Files.Added, d.Files.Removed)
	}
	for _, want := range []string{"etc/init.d/rcS", "etc/shadow", "usr/bin/cloudd"} {
		if !strings.Contains(strings.Join(d.Files.Changed, ","), want) {
			t.Errorf("changed files %v lack %s", d.Files.Changed, want)
		}
	}
	// Hardening improved: no regressions, but changes recorded.
	if len(d.Hardening) == 0 {
		t.Error("no hardening change for usr/bin/cloudd")
	}
	for _, h := range d.Hardening {
		if h.Regression {
			t.Errorf("unexpected regression %+v", h)
		}
	}
	// The reverse direction is a regression.
	back := Diff(new, old)
	reg := 0
	for _, h := range back.Hardening {
		if h.Regression && h.Path == "usr/bin/cloudd" {
			reg++
		}
	}
	if reg < 3 { // nx, pie, relro (and canary)
		t.Errorf("reverse diff regressions = %d: %+v", reg, back.Hardening)
	}
	if back.Regressions() == 0 {
		t.Error("Regressions() = 0 for the reverse diff")
	}
	gained := ""
	for _, e := range d.Endpoints.Gained {
		gained += e.Value + ","
	}
	if !strings.Contains(gained, "dev.ys7.com") {
		t.Errorf("endpoints gained = %s", gained)
	}
	lost := ""
	for _, s := range d.Services.Lost {
		lost += s.Name + ","
	}
	if lost != "telnetd," {
		t.Errorf("services lost = %s", lost)
	}
	creds := ""
	for _, c := range d.Credentials {
		creds += c.User + ":" + c.Change + ","
	}
	if creds != "guest:hash-scheme-changed," {
		t.Errorf("credential changes = %s", creds)
	}
	var buf bytes.Buffer
	if err := d.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- etc/ssl/private/server.key", "+ vendor-cloud dev.ys7.com EZVIZ", "hash-scheme-changed etc/shadow user guest: none"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("diff text lacks %q:\n%s", want, buf.String())
		}
	}
}

// newVersionTree copies testdata/fw as the new version of the firmware:
// cloudd replaced by the hardened busybox binary, the telnetd line and the
// 1024-bit key gone, a new vendor endpoint, guest's empty password locked.
func newVersionTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/fw")); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("testdata/fw/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "usr/bin/cloudd"), bb, 0o755))
	must(os.Remove(filepath.Join(dir, "etc/ssl/private/server.key")))
	rcs, _ := os.ReadFile(filepath.Join(dir, "etc/init.d/rcS"))
	must(os.WriteFile(filepath.Join(dir, "etc/init.d/rcS"), bytes.ReplaceAll(rcs, []byte("telnetd -p 2323"), []byte("sleep 1")), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc/new.conf"), []byte("cloud=dev.ys7.com\n"), 0o644))
	shadow, _ := os.ReadFile(filepath.Join(dir, "etc/shadow"))
	must(os.WriteFile(filepath.Join(dir, "etc/shadow"), bytes.Replace(shadow, []byte("guest::"), []byte("guest:*:"), 1), 0o644))
	return dir
}

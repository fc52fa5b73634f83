package cordon_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cordon-vms/cordon"

// TestDependencyBoundaries keeps the package boundaries of STYLE.md true (after
// tailscale's tstest/deptest): only proxy imports gortsplib, inspect never
// imports firmware, egress never imports inspect, and only cmd/cordon imports
// all of them. It also keeps cmd/cordon free of cgo.
func TestDependencyBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		deps[f[0]] = f[1:]
	}
	under := func(pkg, root string) bool {
		return pkg == module+"/"+root || strings.HasPrefix(pkg, module+"/"+root+"/")
	}
	for pkg, ds := range deps {
		for _, d := range ds {
			switch {
			case strings.HasPrefix(d, "github.com/bluenviron/gortsplib") && !under(pkg, "proxy") && !under(pkg, "cmd"):
				t.Errorf("%s imports gortsplib (%s): only proxy may", pkg, d)
			case under(pkg, "inspect") && under(d, "firmware"):
				t.Errorf("%s imports %s: inspect reads an fs.FS and never imports firmware", pkg, d)
			case under(pkg, "egress") && under(d, "inspect"):
				t.Errorf("%s imports %s: egress and inspect meet only through a watch-list file", pkg, d)
			case under(pkg, "firmware") && (under(d, "proxy") || under(d, "inspect") || under(d, "egress")):
				t.Errorf("%s imports %s: firmware stands alone", pkg, d)
			case under(pkg, "proxy") && (under(d, "firmware") || under(d, "inspect") || under(d, "egress")):
				t.Errorf("%s imports %s: proxy stands alone", pkg, d)
			case d == "C":
				t.Errorf("%s uses cgo", pkg)
			}
		}
	}
}

// TestPackageDocs requires a package doc comment in every package (after
// tailscale's pkgdoc_test.go).
func TestPackageDocs(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.Dir}}|{{.Name}}|{{if .GoFiles}}{{.Doc}}{{else}}test-only{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "|", 3)
		if len(f) == 3 && strings.TrimSpace(f[2]) == "" {
			t.Errorf("package %s in %s has no package doc comment", f[1], f[0])
		}
	}
}

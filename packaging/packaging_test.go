// Tests of the Debian package and what it ships: the systemd units
// (systemd-analyze), the Prometheus rules (promtool), the package built by
// scripts/package, and in CI (root, CI=true) its installation, start and
// purge on this machine.
package packaging_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
)

var units = []string{"cordon-proxy.service", "cordon-egress@.service"}

// maxExposure is the goal for systemd-analyze security (0 to 10).
const maxExposure = 2.0

// need skips the test when tool (from Debian package pkg) is missing, and
// fails it in CI, where scripts/deps installs it.
func need(t *testing.T, tool, pkg string) {
	t.Helper()
	_ = pkg // named at each call for the reader: what scripts/deps installs
	testutil.NeedTool(t, tool)
}

func run(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)

// TestUnitsSecurity scores the units offline with systemd-analyze security
// and fails above maxExposure.
func TestUnitsSecurity(t *testing.T) {
	need(t, "systemd-analyze", "systemd")
	for _, u := range units {
		out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", filepath.Join("systemd", u)).CombinedOutput()
		m := exposureRE.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("%s: no exposure level in systemd-analyze's output (%v):\n%s", u, err, out)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("%s: exposure %s %s", u, m[1], m[2])
		if score > maxExposure || m[2] != "OK" {
			t.Errorf("%s: exposure %s %s, want at most %.1f OK:\n%s", u, m[1], m[2], maxExposure, out)
		}
	}
}

// TestUnitsVerify runs systemd-analyze verify on the units with ExecStart
// pointed at /bin/true (the installed binary is checked by
// TestInstallPurge): the syntax, directives and dependencies.
func TestUnitsVerify(t *testing.T) {
	need(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/bin/cordon", "/bin/true")
		s = regexp.MustCompile(`(?m)^Documentation=.*\n`).ReplaceAllString(s, "") // the man pages are not installed here
		name := strings.Replace(u, "@.", "@default.", 1)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestPromRules checks the alert rules with promtool.
func TestPromRules(t *testing.T) {
	need(t, "promtool", "prometheus")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out := run(t, ctx, "promtool", "check", "rules", "prometheus/cordon-rules.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool: %s", out)
	}
}

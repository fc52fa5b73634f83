// Package testutil holds small helpers shared by cordon's tests: loggers that
// write to the test's output and checks for the external tools (ffmpeg,
// GStreamer, softflowd, ...) that interop tests talk to.
package testutil

import (
	"log/slog"
	"os"
	"os/exec"
	"testing"
)

// Logger returns a debug-level logger that writes to t's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// InCI reports whether the tests run under CI (CI=true), where .ci/run has
// installed every external tool, so a missing tool is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") != "" }

// NeedTool returns the path of each named program. When one is missing it skips
// the test with the reason (or fails it in CI, where scripts/deps installs them).
func NeedTool(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, len(names))
	for i, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			if InCI() {
				t.Fatalf("%s is not installed; scripts/deps should have installed it", n)
			}
			t.Skipf("%s is not installed (run scripts/deps as root to install the test tools)", n)
		}
		paths[i] = p
	}
	return paths
}

// NeedRoot skips the test (with the reason) unless it runs as root.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", why)
	}
}

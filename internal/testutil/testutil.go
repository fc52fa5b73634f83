// Package testutil holds small helpers shared by cordon's tests: loggers that
// write to the test's output and checks for the external tools (ffmpeg,
// GStreamer, softflowd, ...) that interop tests talk to, and the CPU clock
// of benchmarks.
package testutil

import (
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
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

// CPUTime is the process's user+system CPU time so far, for benchmarks that
// report CPU per unit of work (machines are noisy; wall time is not CPU).
func CPUTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MustHex decodes hex written with optional spaces ("16 03 01"), for test
// vectors; it panics on bad input (a broken test table, not a test failure).
func MustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

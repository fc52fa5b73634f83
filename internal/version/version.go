// Package version is cordon's one version string, for `cordon version`, the
// SARIF and CycloneDX reports and anything else that names the build.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is set at link time by release builds:
//
//	go build -ldflags "-X github.com/cordon-vms/cordon/internal/version.Version=v1.2.3" ./cmd/cordon
//
// Otherwise String derives it from the module build info.
var Version = ""

// BuildDate is the build date (RFC 3339, UTC) set at link time by builds
// without VCS stamping; otherwise Date reads the commit time from the build
// info (go build -buildvcs=true), which keeps builds reproducible:
//
//	go build -ldflags "-X github.com/cordon-vms/cordon/internal/version.BuildDate=2026-12-01T00:00:00Z" ./cmd/cordon
var BuildDate = ""

// Commit is the VCS revision set at link time, for builds where the go
// command cannot stamp it (a git worktree, -buildvcs=false); the build
// info's vcs.revision is used otherwise.
var Commit = ""

// String returns the version: Version when set at link time; else the
// module version when cordon was built as a module dependency (go install
// …@v1.2.3); else "devel". A build from a VCS checkout appends the
// revision, "+dirty" when the tree had uncommitted changes:
// "devel+3f2a1b9c0d1e" or "devel+3f2a1b9c0d1e-dirty".
func String() string {
	bi, _ := debug.ReadBuildInfo()
	return from(Version, Commit, bi)
}

// from is String for a linked version and commit (either may be empty).
func from(linked, commit string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	v := "devel"
	if bi != nil {
		if mv := bi.Main.Version; mv != "" && !strings.HasPrefix(mv, "(") && !strings.Contains(mv, "+dirty") {
			v = mv
		}
	}
	rev := commit
	if rev == "" {
		rev = revision(bi)
	}
	if rev == "" || v != "devel" {
		return v
	}
	rev, dirty := strings.CutSuffix(rev, "-dirty")
	v += "+" + rev[:min(len(rev), 12)]
	if dirty {
		v += "-dirty"
	}
	return v
}

// Revision returns the VCS revision the binary was built from (with
// "-dirty" for a modified tree), or "" when the build was not stamped.
func Revision() string {
	if Commit != "" {
		return Commit
	}
	bi, _ := debug.ReadBuildInfo()
	return revision(bi)
}

func revision(bi *debug.BuildInfo) string {
	if bi == nil {
		return ""
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// Date returns the build date: BuildDate when set at link time, else the
// commit time from the build info, else "" (a build without either).
func Date() string {
	bi, _ := debug.ReadBuildInfo()
	return date(BuildDate, bi)
}

func date(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.time" {
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				return t.UTC().Format(time.RFC3339)
			}
		}
	}
	return ""
}

// Long is the one-line description of the build that `cordon version`
// prints: the version, then the revision and date when known, the Go
// version and the platform.
func Long() string {
	s := "cordon " + String()
	if r := Revision(); r != "" && !strings.Contains(String(), r[:min(len(r), 12)]) {
		s += " (" + r + ")"
	}
	if d := Date(); d != "" {
		s += " built " + d
	}
	return s + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

// Collector returns the cordon_build_info gauge: always 1, with the build
// described by its labels (version, revision, build_date, goversion), as
// Prometheus's own *_build_info metrics do. Each command that serves
// /metrics registers it.
func Collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cordon_build_info",
		Help: "Always 1; the labels describe the running build (the version is the one cordon version, SARIF and CycloneDX reports name).",
		ConstLabels: prometheus.Labels{
			"version":    String(),
			"revision":   Revision(),
			"build_date": Date(),
			"goversion":  runtime.Version(),
		},
	}, func() float64 { return 1 })
}

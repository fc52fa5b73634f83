// Package version is cordon's one version string, for `cordon version`, the
// SARIF and CycloneDX reports and anything else that names the build.
package version

import (
	"runtime/debug"
	"strings"
)

// Version is set at link time by release builds:
//
//	go build -ldflags "-X github.com/cordon-vms/cordon/internal/version.Version=v1.2.3" ./cmd/cordon
//
// Otherwise String derives it from the module build info.
var Version = ""

// String returns the version: Version when set at link time; else the
// module version when cordon was built as a module dependency (go install
// …@v1.2.3); else "devel". A build from a VCS checkout appends the
// revision, "+dirty" when the tree had uncommitted changes:
// "devel+3f2a1b9c0d1e" or "devel+3f2a1b9c0d1e-dirty".
func String() string {
	bi, _ := debug.ReadBuildInfo()
	return from(Version, bi)
}

func from(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	v := "devel"
	if bi == nil {
		return v
	}
	if mv := bi.Main.Version; mv != "" && !strings.HasPrefix(mv, "(") && !strings.Contains(mv, "+dirty") {
		v = mv
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
	if rev == "" || v != "devel" {
		return v
	}
	v += "+" + rev[:min(len(rev), 12)]
	if dirty {
		v += "-dirty"
	}
	return v
}

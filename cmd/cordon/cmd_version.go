package main

import (
	"context"
	"fmt"

	"github.com/cordon-vms/cordon/internal/version"
)

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", `usage: cordon version

Prints cordon's version (the same string SARIF and CycloneDX reports carry:
a release's tag, or "devel+REVISION" for a build from a checkout), the VCS
revision and build date when the build recorded them, the Go version it was
built with and the platform. Prometheus sees the same as cordon_build_info.

	cordon v1.2.0 (3f2a1b9c0d1e...) built 2026-12-01T10:00:00Z go1.26.8 linux/arm64`)
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintln(e.Stdout, version.Long())
	return nil
}

package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/cordon-vms/cordon/internal/version"
)

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", `usage: cordon version

Prints cordon's version (the same string SARIF and CycloneDX reports carry:
a release's tag, or "devel+REVISION" for a build from a checkout), the Go
version it was built with and the platform.`)
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintf(e.Stdout, "cordon %s %s %s/%s\n", version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

package main

import (
	"context"
	"errors"
)

// runProxy is replaced by the proxy implementation; until then the command says so.
func runProxy(ctx context.Context, e *env, args []string) error {
	return errors.New("proxy: not built yet in this tree")
}

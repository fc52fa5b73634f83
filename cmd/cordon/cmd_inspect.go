package main

import (
	"context"
	"errors"
)

// runInspect is replaced by the inspect implementation; until then the command says so.
func runInspect(ctx context.Context, e *env, args []string) error {
	return errors.New("inspect: not built yet in this tree")
}

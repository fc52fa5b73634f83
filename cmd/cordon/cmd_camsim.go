package main

import (
	"context"
	"errors"
)

// runCamsim is replaced by the camsim implementation; until then the command says so.
func runCamsim(ctx context.Context, e *env, args []string) error {
	return errors.New("camsim: not built yet in this tree")
}

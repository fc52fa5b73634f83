package main

import (
	"context"
	"errors"
)

// runBench is replaced by the bench implementation; until then the command says so.
func runBench(ctx context.Context, e *env, args []string) error {
	return errors.New("bench: not built yet in this tree")
}

package main

import (
	"context"
	"errors"
)

// runEgress is replaced by the egress implementation; until then the command says so.
func runEgress(ctx context.Context, e *env, args []string) error {
	return errors.New("egress: not built yet in this tree")
}

package main

import (
	"context"
	"errors"
)

// runFirmware is replaced by the firmware implementation; until then the command says so.
func runFirmware(ctx context.Context, e *env, args []string) error {
	return errors.New("firmware: not built yet in this tree")
}

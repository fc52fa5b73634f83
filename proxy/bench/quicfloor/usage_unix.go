//go:build unix

package main

import (
	"syscall"
	"time"
)

// getUsage returns this process's CPU time (user+system, all threads) and
// context switches so far.
func getUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return usage{cpu: cpu, vcsw: int64(ru.Nvcsw), ivcsw: int64(ru.Nivcsw)}
}

//go:build !unix

package procs

import "time"

// cpuTime is not read on this system: the governor stays off.
func cpuTime() time.Duration { return 0 }

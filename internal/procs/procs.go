// Package procs lets GOMAXPROCS follow the process's CPU use: one P while
// the process uses well under a core, the runtime's default above that.
//
// Why: a proxy's work is many short network events (a camera's read, a
// reader's write), each a few microseconds. With several Ps, the runtime
// wakes a second thread to look for work every time the thread taking an
// event from the network poller starts running it, and that thread spins
// and goes back to sleep: an extra thread wake-up per event. Below one
// core of load, one P does the same work with about 13-25 % less CPU
// (docs/bench.md); above it, the process needs the other cores and gets
// them back within a second.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"
)

// Governor adjusts GOMAXPROCS. The zero value is not usable: use New.
type Governor struct {
	// Max is the GOMAXPROCS used under load (the runtime's default when
	// the governor started).
	Max int
	// Up is the CPU use, in cores, at or above which one P becomes Max. It
	// defaults to 0.6.
	Up float64
	// Down is the CPU use, in cores, at or under which Max Ps become one,
	// once it has lasted DownAfter samples. It defaults to 0.3.
	Down float64
	// DownAfter is the number of consecutive one-second samples at or
	// under Down before going down to one P. It defaults to 10.
	DownAfter int

	cur   int
	quiet int
}

// New returns a governor that starts at one P (it goes up within a second
// of a load that needs more), or nil when there is nothing to govern: the GOMAXPROCS environment
// variable is set (the operator chose), or there is only one P anyway.
func New() *Governor {
	if os.Getenv("GOMAXPROCS") != "" || cpuTime() == 0 {
		return nil
	}
	n := runtime.GOMAXPROCS(0)
	if n < 2 {
		return nil
	}
	return &Governor{Max: n, Up: 0.6, Down: 0.3, DownAfter: 10, cur: 1}
}

// next returns the number of Ps to use after a sample of load (CPU cores
// used over the last second).
func (g *Governor) next(load float64) int {
	switch {
	case g.cur < g.Max && load >= g.Up:
		g.cur, g.quiet = g.Max, 0
	case g.cur > 1 && load <= g.Down:
		g.quiet++
		if g.quiet >= g.DownAfter {
			g.cur, g.quiet = 1, 0
		}
	default:
		g.quiet = 0
	}
	return g.cur
}

// Run samples the process's CPU use once a second and sets GOMAXPROCS
// until ctx ends, then gives the runtime back Max Ps.
func (g *Governor) Run(ctx context.Context, log *slog.Logger) {
	if g == nil {
		return
	}
	runtime.GOMAXPROCS(g.cur)
	defer runtime.GOMAXPROCS(g.Max)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, lastAt := cpuTime(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used := cpuTime()
			load := (used - last).Seconds() / now.Sub(lastAt).Seconds()
			last, lastAt = used, now
			before := g.cur
			if n := g.next(load); n != before {
				runtime.GOMAXPROCS(n)
				log.Debug("GOMAXPROCS follows the CPU use", "procs", n, "cpu_cores", load)
			}
		}
	}
}

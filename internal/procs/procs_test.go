package procs

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
)

func TestNext(t *testing.T) {
	g := &Governor{Max: 4, Up: 0.6, Down: 0.3, DownAfter: 3, cur: 4}
	steps := []struct {
		load float64
		want int
	}{
		{0.2, 4}, {0.1, 4}, // quiet, not long enough
		{0.5, 4},                     // between the thresholds: the quiet count starts again
		{0.3, 4}, {0.3, 4}, {0.3, 1}, // three quiet samples: one P
		{0.59, 1}, {0.1, 1}, // under Up: stays at one
		{0.6, 4},           // at Up: back to Max at once
		{0.9, 4}, {2.5, 4}, // busy
	}
	for i, s := range steps {
		if got := g.next(s.load); got != s.want {
			t.Fatalf("step %d (load %.2f): %d Ps, want %d", i, s.load, got, s.want)
		}
	}
}

func TestNewRespectsEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	if g := New(); g != nil {
		t.Fatalf("New with GOMAXPROCS set = %+v, want nil", g)
	}
}

func TestRunRestoresMax(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	g := &Governor{Max: before, Up: 0.6, Down: 0.3, DownAfter: 10, cur: 1}
	runtime.GOMAXPROCS(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS after Run = %d, want %d", got, before)
	}
	var nilG *Governor
	nilG.Run(ctx, nil) // a nil governor does nothing
}

package proxy

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoffDelays(t *testing.T) {
	b := newBackoff(time.Second, 30*time.Second, 10*time.Minute)
	b.jitter = func() float64 { return 0.5 } // no jitter: factor 1
	var got []time.Duration
	for range 7 {
		got = append(got, b.delay())
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays = %v, want %v s", got, want)
		}
	}
	b.reset()
	if d := b.delay(); d != time.Second {
		t.Errorf("after reset: %v, want 1s", d)
	}
	b.jitter = func() float64 { return 0 }
	if d := b.delay(); d != 1600*time.Millisecond {
		t.Errorf("lowest jitter on 2s: %v, want 1.6s", d)
	}
	b.jitter = func() float64 { return 0.999999 }
	if d := b.delay(); d < 4799*time.Millisecond || d > 4800*time.Millisecond {
		t.Errorf("highest jitter on 4s: %v, want ~4.8s", d)
	}
}

// TestRetryLoopTiming runs the camera reconnect loop in a synctest bubble:
// failed attempts are spaced 1, 2, 4, 8, 16, 30, 30 s (±20 %), and an
// attempt that played resets the spacing to 1 s.
func TestRetryLoopTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b := newBackoff(time.Second, 30*time.Second, 10*time.Minute)
		var at []time.Time
		start := time.Now()
		attempt := func(context.Context) (bool, error) {
			at = append(at, time.Now())
			if len(at) == 8 {
				time.Sleep(time.Minute) // a session that played for a minute
				return true, errors.New("camera closed the session")
			}
			if len(at) == 10 {
				cancel()
			}
			return false, errors.New("connection refused")
		}
		var waits []time.Duration
		retryLoop(ctx, b, attempt, func(err error, d time.Duration) { waits = append(waits, d) })

		if len(at) != 10 {
			t.Fatalf("%d attempts, want 10", len(at))
		}
		base := []float64{1, 2, 4, 8, 16, 30, 30}
		for i, w := range base {
			gap := at[i+1].Sub(at[i]).Seconds()
			if gap < 0.8*w || gap > 1.2*w {
				t.Errorf("gap %d = %.2fs, want %.0fs ±20%%", i, gap, w)
			}
			if waits[i].Seconds() != gap {
				t.Errorf("reported wait %v != actual gap %.2fs", waits[i], gap)
			}
		}
		// Attempt 8 played for a minute then failed: the next wait is back to ~1 s.
		if gap := at[8].Sub(at[7]) - time.Minute; gap < 800*time.Millisecond || gap > 1200*time.Millisecond {
			t.Errorf("wait after a played session = %v, want ~1s", gap)
		}
		if total := at[7].Sub(start); total < 73*time.Second || total > 111*time.Second {
			t.Errorf("7 failed retries took %v", total)
		}
	})
}

// TestRetryLoopAuthFailure: after an authentication failure the loop waits
// the authentication delay (±20 %), not the exponential one, and a new loop
// with the same backoff (an on-demand camera asked for again) waits for
// what is left of it before trying.
func TestRetryLoopAuthFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackoff(time.Second, 30*time.Second, 10*time.Minute)
		b.jitter = func() float64 { return 0.5 }
		ctx, cancel := context.WithCancel(context.Background())
		var at []time.Time
		start := time.Now()
		errs := []error{errors.New("connection refused"), &authError{code: 401}, errors.New("connection refused"), &authError{code: 403}}
		attempt := func(context.Context) (bool, error) {
			at = append(at, time.Now())
			return false, errs[len(at)-1]
		}
		var waits []time.Duration
		retryLoop(ctx, b, attempt, func(err error, d time.Duration) {
			waits = append(waits, d)
			if len(waits) == len(errs) {
				cancel() // an on-demand camera's last reader left
			}
		})
		want := []time.Duration{time.Second, 10 * time.Minute, 2 * time.Second, 10 * time.Minute}
		if !slices.Equal(waits, want) {
			t.Fatalf("waits %v, want %v", waits, want)
		}
		// The loop ended right after the second authentication failure; asked
		// for again 1 minute later, the camera is tried 9 minutes after that.
		time.Sleep(time.Minute)
		ended := at[3]
		ctx2, cancel2 := context.WithCancel(context.Background())
		retryLoop(ctx2, b, func(context.Context) (bool, error) {
			at = append(at, time.Now())
			cancel2()
			return false, nil
		}, func(error, time.Duration) {})
		if got := at[4].Sub(ended); got != 10*time.Minute {
			t.Errorf("next attempt %v after the authentication failure, want 10m", got)
		}
		if got := at[3].Sub(start); got != 10*time.Minute+3*time.Second {
			t.Errorf("attempts %v", at)
		}
	})
}

func TestJitter(t *testing.T) {
	js := &jitterState{clock: 90000}
	t0 := time.Unix(0, 0)
	// Perfectly paced 25 fps: no jitter.
	for i := range 50 {
		js.update(t0.Add(time.Duration(i)*40*time.Millisecond), uint32(i*3600))
	}
	if js.j != 0 {
		t.Fatalf("paced stream jitter = %v, want 0", js.j)
	}
	// One packet 10 ms late: |D| = 900 units, J = 900/16 after it.
	js.update(t0.Add(50*40*time.Millisecond+10*time.Millisecond), 50*3600)
	if d := js.j - 900.0/16; d > 1e-6 || d < -1e-6 {
		t.Errorf("jitter after a 10 ms late packet = %v, want %v", js.j, 900.0/16)
	}
}

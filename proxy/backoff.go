package proxy

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays: min, doubling to max, each with ±20 %
// jitter so that cameras dropped together do not reconnect together.
type backoff struct {
	min, max time.Duration
	next     time.Duration
	jitter   func() float64 // in [0,1); rand.Float64 unless a test sets it
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, next: min, jitter: rand.Float64}
}

// delay returns the next delay and doubles the base for the one after.
func (b *backoff) delay() time.Duration {
	base := b.next
	b.next = min(b.next*2, b.max)
	f := 0.8 + 0.4*b.jitter()
	return time.Duration(float64(base) * f)
}

// reset starts again from min (after a session that worked).
func (b *backoff) reset() { b.next = b.min }

// retryLoop calls attempt until ctx is done. attempt reports whether the
// session got as far as playing (which resets the backoff); between attempts
// it waits b's delay, after telling onRetry about the failure.
func retryLoop(ctx context.Context, b *backoff, attempt func(context.Context) (played bool, err error), onRetry func(err error, wait time.Duration)) {
	for ctx.Err() == nil {
		played, err := attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		if played {
			b.reset()
		}
		d := b.delay()
		onRetry(err, d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

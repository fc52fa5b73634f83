package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays: min, doubling to max, each with ±20 %
// jitter so that cameras dropped together do not reconnect together. After
// an authentication failure the wait is auth (±20 %) instead, and it holds
// even across on-demand restarts (see retryLoop).
type backoff struct {
	min, max time.Duration
	auth     time.Duration
	next     time.Duration
	jitter   func() float64 // in [0,1); rand.Float64 unless a test sets it

	// authHold is when the next attempt may start after an authentication
	// failure; reset does not clear it.
	authHold time.Time
}

func newBackoff(min, max, auth time.Duration) *backoff {
	return &backoff{min: min, max: max, auth: auth, next: min, jitter: rand.Float64}
}

// delay returns the next delay and doubles the base for the one after.
func (b *backoff) delay() time.Duration {
	base := b.next
	b.next = min(b.next*2, b.max)
	return b.jittered(base)
}

func (b *backoff) jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*b.jitter()))
}

// authDelay returns the wait after an authentication failure and holds
// attempts until it has passed.
func (b *backoff) authDelay() time.Duration {
	d := b.jittered(b.auth)
	b.authHold = time.Now().Add(d)
	return d
}

// holding reports whether an authentication failure still holds attempts.
func (b *backoff) holding() bool { return time.Now().Before(b.authHold) }

// reset starts again from min (after a session that worked).
func (b *backoff) reset() { b.next = b.min }

// retryLoop calls attempt until ctx is done. attempt reports whether the
// session was healthy (it delivered media for a while: see
// healthySession), which resets the backoff; between attempts it waits b's
// delay, after telling onRetry about the failure. When attempt fails with
// an *authError, the wait is b's authentication delay instead, and a
// later retryLoop with the same b (an on-demand camera asked for again)
// waits for what is left of it before its first attempt.
func retryLoop(ctx context.Context, b *backoff, attempt func(context.Context) (healthy bool, err error), onRetry func(err error, wait time.Duration)) {
	if !sleepCtx(ctx, time.Until(b.authHold)) {
		return
	}
	for ctx.Err() == nil {
		healthy, err := attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		if healthy {
			b.reset()
		}
		var d time.Duration
		var ae *authError
		if errors.As(err, &ae) {
			d = b.authDelay()
		} else {
			d = b.delay()
		}
		onRetry(err, d)
		if !sleepCtx(ctx, d) {
			return
		}
	}
}

// sleepCtx waits d (nothing when d <= 0); false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package proxy

import (
	"context"
	"errors"
)

// errReconnectAsked ends a camera session that an administrator asked to
// reconnect (POST /v1/cameras/{name}/reconnect, the console's button).
var errReconnectAsked = errors.New("reconnect asked for on the admin listener")

// kickableSession runs one session of the camera (c.session) that
// reconnect can end.
func (c *camera) kickableSession(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.mu.Lock()
	c.kick = cancel
	c.mu.Unlock()
	healthy, err := c.session(ctx)
	c.mu.Lock()
	c.kick = nil
	c.mu.Unlock()
	if errors.Is(context.Cause(ctx), errReconnectAsked) {
		return healthy, errReconnectAsked
	}
	return healthy, err
}

// reconnect ends the camera's running session; the camera reconnects
// after its backoff (timeouts.backoff_min after a healthy session). It
// reports whether a session was running.
func (c *camera) reconnect() bool {
	c.mu.Lock()
	kick := c.kick
	c.mu.Unlock()
	if kick == nil {
		return false
	}
	kick(errReconnectAsked)
	return true
}

package proxy

import (
	"fmt"
	"runtime/debug"
)

// Panic containment. Every goroutine that runs cordon code for one camera or
// one reader (the camera's session loop, the cleaner called from the
// camera's packet callback, the on-demand idle watch, the teardown, a
// reader's batch writer) recovers a panic, so that one camera's bytes can
// never take the process, and with it every other camera, down. A recovered
// panic is logged with its stack, counted in cordon_camera_panics_total, and
// ends that camera's session: the camera is refused and retried with backoff
// (and its cleaner state is rebuilt from scratch, closing its readers), or,
// for a reader's writer, that reader alone is closed.

// panicError is a recovered panic, as the error that ends a session.
type panicError struct {
	where string
	value any
}

func (e *panicError) Error() string {
	return fmt.Sprintf("internal error in the %s (panic: %v); the camera is refused and retried with backoff", e.where, e.value)
}

// contained records a recovered panic of one of c's goroutines: it counts
// it, logs it with the stack, and marks the camera's cleaner state as not to
// be reused.
func (c *camera) contained(where string, v any) *panicError {
	// No lock is taken here: the panic may have left a mutex held.
	c.panics.Add(1)
	c.stream.poisoned.Store(true)
	c.log.Error("camera goroutine panicked; other cameras are not affected",
		"where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	return &panicError{where: where, value: v}
}

// recoverSession is deferred by the camera's session loop: a panic becomes
// the session's error, so retryLoop backs off and reconnects.
func (s *source) recoverSession(where string, played *bool, err *error) {
	if v := recover(); v != nil {
		*played = false // never a reason to reset the backoff
		*err = s.parent.contained(where, v)
	}
}

// recoverPacket is deferred by the packet callback, which runs on the RTSP
// client's reader goroutine: the session is aborted and retried.
func (s *source) recoverPacket() {
	if v := recover(); v != nil {
		s.abortSession(s.parent.contained("stream cleaner", v), "camera stream refused after an internal error; retrying with backoff")
	}
}

// recoverGo is deferred by the camera's helper goroutines (idle watch,
// teardown), whose panic needs no more than containing.
func (c *camera) recoverGo(where string) {
	if v := recover(); v != nil {
		c.contained(where, v)
	}
}

// recoverReader is deferred by a reader's batch writer goroutine: that
// reader's session is closed; the camera and its other readers go on.
func (c *camera) recoverReader(r *reader) {
	if v := recover(); v != nil {
		c.panics.Add(1)
		c.log.Error("reader writer panicked; closing that reader, the camera and its other readers are not affected",
			"remote", r.remote, "user", r.user, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		r.close()
	}
}

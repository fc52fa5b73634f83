package proxy

import "time"

// StateChange is one change of a camera's state, for its history in
// /v1/cameras/{name} and on its console page.
type StateChange struct {
	Time  time.Time `json:"time"`
	State string    `json:"state"`
	// Error is why the camera left "up" or could not get there (redacted
	// like last_error).
	Error string `json:"error,omitempty"`
}

// historySize is how many state changes a camera remembers: enough for
// the last reconnects (each is connecting → up → down) without growing.
const historySize = 30

// stateHistory is a ring of the last historySize state changes, guarded
// by the camera's mutex.
type stateHistory struct {
	ring [historySize]StateChange
	next int // index of the next write
	n    int // entries held
}

func (h *stateHistory) add(c StateChange) {
	h.ring[h.next] = c
	h.next = (h.next + 1) % historySize
	h.n = min(h.n+1, historySize)
}

// list returns the changes, newest first.
func (h *stateHistory) list() []StateChange {
	out := make([]StateChange, 0, h.n)
	for i := 1; i <= h.n; i++ {
		out = append(out, h.ring[(h.next-i+historySize)%historySize])
	}
	return out
}

// history returns the camera's state changes, newest first, with the
// camera's address hidden from the errors.
func (c *camera) history() []StateChange {
	c.mu.Lock()
	out := c.hist.list()
	c.mu.Unlock()
	for i := range out {
		out[i].Error = hideCamera(out[i].Error, c.cfg.URL)
	}
	return out
}

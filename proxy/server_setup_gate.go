package proxy

import (
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
)

// SETUP serialization: a workaround for a data race in gortsplib v5.6.4
// (docs/upstream/gortsplib-setup-race.md).
//
// On the first SETUP of a UDP session, gortsplib's ServerStream.readerAdd
// ranges, under the stream's mutex only, over the set-up medias (a map) and
// transport of every other reader of the stream, while each of those
// readers' own SETUPs write them under the reader's own lock. Two readers
// (from one address, for the map) setting up at once race, and the map race
// can end the whole process ("concurrent map iteration and map write"),
// which no recover catches.
//
// Both sides of the race run between OnSetup's return and the answer's
// OnResponse, on the session's and then the connection's goroutine, with
// nothing else in between. So each successful OnSetup takes the stream's
// setupGate and the connection's OnResponse gives it back: a UDP session's
// first SETUP (the one that ranges over the others) takes it exclusively,
// every other SETUP (which only writes its own session) takes it shared.
// TCP-only traffic therefore never waits, and a UDP reader waits at most for
// the SETUPs in flight on its camera, microseconds each (gortsplib sleeps 1 s
// after OnSetup for a GStreamer User-Agent, the longest hold in practice).
//
// Nothing can hold a gate forever: OnConnClose gives back what its
// connection holds, a hold ends on its own after setupHoldMax, and a SETUP
// that cannot take its gate within setupWaitMax is answered 503. The gate is
// fair (first come, first served), so shared holders cannot starve a UDP
// reader.

const (
	setupWaitMax = 6 * time.Second // room for GStreamer clients (gortsplib holds each of their SETUPs 1 s), under the 10 s clients wait for an answer
	setupHoldMax = 5 * time.Second
)

// setupGate is a fair readers–writer lock whose acquisition times out and
// whose release may happen on another goroutine.
type setupGate struct {
	shared  int  // shared holders
	excl    bool // an exclusive holder
	waiters []*gateWaiter
	refs    int // holders and waiters (setupGates drops an unused gate)
}

type gateWaiter struct {
	excl    bool
	granted bool
	ready   chan struct{}
}

// setupGates holds one gate per reader-facing stream while it is in use.
type setupGates struct {
	mu    sync.Mutex
	gates map[*gortsplib.ServerStream]*setupGate
	held  sync.Map // *gortsplib.ServerConn → *setupHold
}

// setupHold is one SETUP's hold on a gate.
type setupHold struct {
	once  sync.Once
	gs    *setupGates
	st    *gortsplib.ServerStream
	excl  bool
	timer *time.Timer
}

func (g *setupGate) can(excl bool) bool {
	if excl {
		return !g.excl && g.shared == 0
	}
	return !g.excl
}

func (g *setupGate) take(excl bool) {
	if excl {
		g.excl = true
	} else {
		g.shared++
	}
}

// grant hands the gate to the waiters at the head of the queue that can
// have it (gs.mu held).
func (g *setupGate) grant() {
	for len(g.waiters) > 0 && g.can(g.waiters[0].excl) {
		w := g.waiters[0]
		g.waiters = g.waiters[1:]
		g.take(w.excl)
		w.granted = true
		close(w.ready)
	}
}

// acquire takes st's gate for connection sc's SETUP, exclusively or shared,
// waiting at most wait. The hold ends in release(sc), or by itself after
// holdMax (then expired, if not nil, is called). It reports whether the
// gate was taken.
func (gs *setupGates) acquire(sc *gortsplib.ServerConn, st *gortsplib.ServerStream, excl bool, wait, holdMax time.Duration, expired func()) bool {
	gs.release(sc) // a connection has one request in flight: nothing to keep
	gs.mu.Lock()
	if gs.gates == nil {
		gs.gates = map[*gortsplib.ServerStream]*setupGate{}
	}
	g := gs.gates[st]
	if g == nil {
		g = &setupGate{}
		gs.gates[st] = g
	}
	g.refs++
	if len(g.waiters) == 0 && g.can(excl) {
		g.take(excl)
		gs.mu.Unlock()
		gs.hold(sc, st, excl, holdMax, expired)
		return true
	}
	w := &gateWaiter{excl: excl, ready: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	gs.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		gs.hold(sc, st, excl, holdMax, expired)
		return true
	case <-t.C:
	}
	gs.mu.Lock()
	if w.granted { // granted as the timer fired
		gs.mu.Unlock()
		gs.hold(sc, st, excl, holdMax, expired)
		return true
	}
	for i, o := range g.waiters {
		if o == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			break
		}
	}
	g.grant() // the waiters behind this one may go now
	gs.drop(st, g)
	gs.mu.Unlock()
	return false
}

func (gs *setupGates) hold(sc *gortsplib.ServerConn, st *gortsplib.ServerStream, excl bool, holdMax time.Duration, expired func()) {
	h := &setupHold{gs: gs, st: st, excl: excl}
	gs.mu.Lock() // end reads h.timer under gs.mu
	h.timer = time.AfterFunc(holdMax, func() {
		if h.end() && expired != nil {
			expired()
		}
	})
	gs.mu.Unlock()
	gs.held.Store(sc, h)
}

// release ends the hold of connection sc's SETUP, if any.
func (gs *setupGates) release(sc *gortsplib.ServerConn) {
	if h, ok := gs.held.LoadAndDelete(sc); ok {
		h.(*setupHold).end()
	}
}

// end gives the gate back, once; it reports whether this call did.
func (h *setupHold) end() (ended bool) {
	h.once.Do(func() {
		ended = true
		gs := h.gs
		gs.mu.Lock()
		defer gs.mu.Unlock()
		h.timer.Stop()
		g := gs.gates[h.st]
		if h.excl {
			g.excl = false
		} else {
			g.shared--
		}
		g.grant()
		gs.drop(h.st, g)
	})
	return ended
}

// drop forgets one reference to st's gate g, and g when unused (gs.mu held).
func (gs *setupGates) drop(st *gortsplib.ServerStream, g *setupGate) {
	g.refs--
	if g.refs == 0 {
		delete(gs.gates, st)
	}
}

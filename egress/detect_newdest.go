package egress

import "fmt"

// KindNewDestination is the Kind of newDestinationDetector.
const KindNewDestination = "new-destination"

var newDestinationDetector = &Detector{
	Kind:     KindNewDestination,
	Severity: "low",
	Raised:   "with a baseline: a camera opens a flow to a non-allowed (camera, peer, proto, port) not in the baseline (after the `learn` period). The baseline is a JSON file saved every minute and at exit, so it survives restarts; `--reset-baseline` deletes it",
	Fields:   "`dst`, `proto`, `port`",
	new:      func(e *Engine) any { return &newDestination{e: e} },
}

// newDestination raises new-destination when a baseline is configured; its
// state is the Baseline.
type newDestination struct{ e *Engine }

func (d *newDestination) flowOpened(f *flow, _ *packet, ts int64) {
	if d.e.base == nil || !f.watchable() {
		return
	}
	isNew, learning := d.e.base.seen(baseKey{cam: f.cam, dst: f.peer, proto: f.proto, port: f.port}, ts)
	if !isNew || learning || f.rolled { // a scan's destinations are in its roll-up
		return
	}
	d.e.raise(aggKey{cam: f.cam, det: newDestinationDetector, dst: f.peer, port: f.port}, ts, 0, 1, func(a *Alert) {
		a.Proto, a.Port = protoName(f.proto), f.port
		a.Detail = fmt.Sprintf("first contact of camera %s with %s %s/%d: not in the learned baseline", f.cam, f.peer, protoName(f.proto), f.port)
	})
}

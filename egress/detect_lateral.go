package egress

import "fmt"

// KindLateral is the Kind of lateralDetector.
const KindLateral = "lateral"

var lateralDetector = &Detector{
	Kind:     KindLateral,
	Severity: "high",
	Raised:   "a camera opens a management port (`lateral.ports`) on another camera or on a `lateral.core` host, and no allow rule permits it",
	Fields:   "`dst`, `proto`, `port`",
	new:      func(e *Engine) any { return &lateral{e: e} },
}

// lateral raises lateral for the flows the engine classified as lateral
// (flow.lateral: a management port on a camera or core host).
type lateral struct{ e *Engine }

func (d *lateral) flowOpened(f *flow, p *packet, ts int64) {
	if !f.watchable() || !f.lateral {
		return
	}
	what := "core host"
	if d.e.isCamera(f.peer) {
		what = "camera"
	}
	d.e.raise(aggKey{cam: f.cam, det: lateralDetector, dst: f.peer, port: f.port}, ts, p.ipLen, 1, func(a *Alert) {
		a.Proto, a.Port = protoName(f.proto), f.port
		a.Detail = fmt.Sprintf("camera %s opened %s/%d (a management port) on %s %s", f.cam, protoName(f.proto), f.port, what, f.peer)
	})
}

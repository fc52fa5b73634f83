package egress

import (
	"fmt"
	"strings"
)

// KindLateral is the Kind of lateralDetector.
const KindLateral = "lateral"

// maxLateralTargets bounds the targets listed in one lateral alert.
const maxLateralTargets = 256

var lateralDetector = &Detector{
	Kind:     KindLateral,
	Severity: "high",
	Raised:   "a camera opens a management port (`lateral.ports`) on another camera or on a `lateral.core` host, and no allow rule permits it; one alert per camera and window lists every target, so a sweep of 50 hosts is one alert",
	Fields:   "`dst`, `proto`, `port` (the first target), `destinations` (every target host:port, up to 256), `count` flows",
	new:      func(e *Engine) any { return &lateral{e: e} },
}

// lateral raises lateral for the flows the engine classified as lateral
// (flow.lateral: a management port on a camera or core host). Its state is
// the list of targets kept on each open alert.
type lateral struct{ e *Engine }

func (d *lateral) flowOpened(f *flow, p *packet, ts int64) {
	if !f.watchable() || !f.lateral {
		return
	}
	what := "core host"
	if d.e.isCamera(f.peer) {
		what = "camera"
	}
	target := fmt.Sprintf("%s %s/%d (%s)", f.peer, protoName(f.proto), f.port, what)
	pd := d.e.raise(aggKey{cam: f.cam, det: lateralDetector}, ts, p.ipLen, 1, func(a *Alert) {
		a.Dst, a.Proto, a.Port = f.peer.String(), protoName(f.proto), f.port
	})
	for _, t := range pd.a.Destinations {
		if t == target {
			return
		}
	}
	if len(pd.a.Destinations) >= maxLateralTargets {
		pd.extra++
	} else {
		pd.a.Destinations = append(pd.a.Destinations, target)
	}
	if pd.finish == nil {
		cam := f.cam
		pd.finish = func(pd *pending) {
			ts := pd.a.Destinations
			if len(ts) == 1 && pd.extra == 0 {
				pd.a.Detail = fmt.Sprintf("camera %s opened a management port on %s", cam, ts[0])
				return
			}
			more := ""
			if pd.extra > 0 {
				more = fmt.Sprintf(" and %d more", pd.extra)
			}
			pd.a.Detail = fmt.Sprintf("camera %s opened management ports on %d targets%s: %s", cam, len(ts)+int(pd.extra), more, strings.Join(ts, ", "))
		}
	}
}

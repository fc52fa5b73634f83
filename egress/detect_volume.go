package egress

import (
	"fmt"
	"time"
)

// KindVolume is the Kind of volumeDetector.
const KindVolume = "volume"

var volumeDetector = &Detector{
	Kind:     KindVolume,
	Severity: "high",
	Raised:   "a camera sends more than `bytes` to non-allowed destinations (on flows it opened) within `window`",
	Fields:   "`bytes` (window total), `dst`/`port` of the flow that crossed the threshold",
	new: func(e *Engine) any {
		d := &volume{e: e}
		d.windows = newCamState[struct{}](1, maxStateEntries, func(w *volumeWindow, now int64) int64 {
			if now-w.start >= int64(e.p.Thresholds.Volume.Window) {
				return -1 // ended
			}
			return int64(min(w.bytes, 1<<62))
		}, &e.m.StateEvictions)
		d.windows.dropped = func(w *volumeWindow) { w.gone = true }
		return d
	},
}

// volume counts each camera's bytes to non-allowed destinations, in windows:
// one window per camera, so at the global bound only ended windows give way
// and a new camera never takes a running one.
type volume struct {
	e       *Engine
	windows *camState[struct{}, *volumeWindow]
}

type volumeWindow struct {
	start int64
	bytes uint64
	alert *pending
	// gone says it is no longer its camera's window (a new one took its
	// place, or it was dropped to make room): a flow's cached pointer to
	// it (flow.vol) is then stale.
	gone bool
}

// cameraSent counts bytes a camera sends on a flow it opened to a
// non-allowed destination, and raises volume once per window above the
// threshold.
func (d *volume) cameraSent(f *flow, p *packet, ts int64, _ bool) {
	if !f.watchable() {
		return
	}
	e := d.e
	th := e.p.Thresholds.Volume
	w := f.vol
	if w == nil || w.gone {
		w, _ = d.windows.get(f.cam, struct{}{})
	}
	if w == nil || ts-w.start >= int64(th.Window) {
		nw := &volumeWindow{start: ts}
		if !d.windows.put(f.cam, struct{}{}, nw, ts) {
			return // counted
		}
		if w != nil {
			w.gone = true
		}
		w = nw
	}
	f.vol = w
	w.bytes += p.ipLen
	if w.bytes <= uint64(th.Bytes) {
		return
	}
	if w.alert == nil {
		w.alert = e.raise(aggKey{cam: f.cam, det: volumeDetector}, ts, w.bytes, 1, func(a *Alert) {
			a.Dst, a.Proto, a.Port = f.peer.String(), protoName(f.proto), f.port
		})
		window, limit, start := th.Window, th.Bytes, time.Unix(0, w.start).UTC()
		ww := w
		w.alert.finish = func(p *pending) {
			p.a.Detail = fmt.Sprintf("camera %s sent %s to non-allowed destinations in the %s window from %s (threshold %s); the threshold was crossed on a flow to %s %s/%d",
				p.key.cam, ByteSize(ww.bytes), window, start.Format(time.RFC3339), limit, p.a.Dst, p.a.Proto, p.a.Port)
			p.a.Bytes = ww.bytes
		}
		return
	}
	if !w.alert.emitted {
		w.alert.a.LastSeen = time.Unix(0, ts).UTC()
	}
}

package egress

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// KindBeacon is the Kind of beaconDetector.
const KindBeacon = "beacon"

var beaconDetector = &Detector{
	Kind:     KindBeacon,
	Severity: "medium",
	Raised:   "the last `events` contacts of a camera with one non-allowed destination (proto/port) have a mean interval ≥ `min_interval` and a standard deviation ≤ `max_jitter` × mean. A contact is a new flow, or a packet after `min_interval`/2 of silence on a flow; retransmitted SYNs are not contacts, so failing connects with exponential backoff do not look periodic",
	Fields:   "`dst`, `port`; `detail`: period ± deviation, jitter %",
	new: func(e *Engine) any {
		// Destinations contacted once go first.
		score := func(s *beaconState, _ int64) int64 { return int64(len(s.t)) }
		return &beacon{e: e, dests: newCamState[beaconKey](maxBeaconPerCamera, maxStateEntries, score, &e.m.StateEvictions)}
	},
}

// maxBeaconPerCamera bounds the destinations one camera's contacts are kept
// for: a camera flooding new destinations recycles its own state, never
// another camera's.
const maxBeaconPerCamera = 4096

// beacon keeps the last contact times of each camera with each non-allowed
// destination, per camera (camState: a camera at its bound drops one of its
// own destinations, preferring one contacted once; at the global bound,
// the camera with the most destinations drops one of its own).
type beacon struct {
	e     *Engine
	dests *camState[beaconKey, *beaconState]
}

type beaconKey struct {
	dst   netip.Addr
	proto uint8
	port  uint16
}

type beaconState struct {
	t   []int64 // the last Events contact times, sorted
	buf [beaconInline]int64
}

// beaconInline contact times are kept in beaconState itself (one
// allocation per destination): the default events, 6, fit.
const beaconInline = 8

// flowOpened: a new flow is a contact.
func (d *beacon) flowOpened(f *flow, _ *packet, ts int64) {
	if f.watchable() {
		d.contact(f, ts)
	}
}

// cameraSent: a packet after min_interval/2 of silence on a flow is a
// contact; retransmitted SYNs are not.
func (d *beacon) cameraSent(f *flow, _ *packet, ts int64, fresh bool) {
	if fresh || !f.watchable() || f.lastCamOut == 0 || (f.proto == protoTCP && f.synOnly) {
		return
	}
	if ts-f.lastCamOut >= int64(d.e.p.Thresholds.Beacon.MinInterval)/2 {
		d.contact(f, ts)
	}
}

// contact records one contact of a camera with a non-allowed destination
// and raises beacon when the last contacts are regularly spaced.
func (d *beacon) contact(f *flow, ts int64) {
	e := d.e
	th := e.p.Thresholds.Beacon
	k := beaconKey{dst: f.peer, proto: f.proto, port: f.port}
	cs := d.dests.cams[f.cam]
	s := cs[k]
	if s == nil {
		s = &beaconState{}
		s.t = s.buf[:0:min(th.Events, beaconInline)]
		if th.Events > beaconInline {
			s.t = make([]int64, 0, th.Events)
		}
		if !d.dests.add(f.cam, cs, k, s, ts) {
			return // counted
		}
	}
	n := th.Events
	if len(s.t) == n {
		if ts < s.t[0] {
			return // older than everything kept
		}
		copy(s.t, s.t[1:])
		s.t = s.t[:n-1]
	}
	i, _ := slices.BinarySearch(s.t, ts)
	s.t = slices.Insert(s.t, i, ts)
	if len(s.t) < n {
		return
	}
	mean := float64(s.t[n-1]-s.t[0]) / float64(n-1)
	if mean < float64(th.MinInterval) {
		return
	}
	var ss float64
	for j := 1; j < n; j++ {
		d := float64(s.t[j]-s.t[j-1]) - mean
		ss += d * d
	}
	sd := math.Sqrt(ss / float64(n-1))
	if sd > th.MaxJitter*mean {
		return
	}
	e.raise(aggKey{cam: f.cam, det: beaconDetector, dst: f.peer, port: f.port}, ts, 0, 1, func(a *Alert) {
		a.Proto, a.Port = protoName(f.proto), f.port
		a.Detail = fmt.Sprintf("camera %s contacted %s %s/%d %d times at regular intervals: every %s ± %s (jitter %.0f%%, limit %.0f%%)",
			f.cam, f.peer, protoName(f.proto), f.port, n, time.Duration(mean).Round(100*time.Millisecond), time.Duration(sd).Round(10*time.Millisecond), 100*sd/mean, 100*th.MaxJitter)
	})
}

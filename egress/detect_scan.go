package egress

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// KindScan is the Kind of scanDetector.
const KindScan = "scan"

// Bounds of the scan roll-up.
const (
	scanDistinct  = 20   // distinct unexpected destinations per camera and window alerted one by one
	scanTracked   = 1024 // destinations counted one by one in a roll-up (beyond: totals only)
	scanTop       = 10   // destinations listed in a roll-up alert
	maxScanStates = 1 << 14
)

var scanDetector = &Detector{
	Kind:     KindScan,
	Severity: "high",
	Raised: fmt.Sprintf("a camera opens flows to more than %d distinct destinations that no allow rule permits within one aggregation window (a scan, a flood, a worm): "+
		"the first %d raise unexpected-destination one by one, the rest are rolled up into one scan alert per camera and window (in the windows that follow while it goes on, all of them), so a flood cannot bury other alerts; a public resolver or DNS-over-HTTPS/TLS name is never rolled up (its high unexpected-destination alert stands)", scanDistinct, scanDistinct),
	Fields:  "`count` flows rolled up, `bytes` of their first packets, `destinations` (the most contacted, with their flow counts), `detail`: distinct destinations and ports",
	Summary: true,
	new:     func(e *Engine) any { return &scan{e: e, cams: map[netip.Addr]*scanState{}} },
}

// scan counts, per camera and window, the distinct destinations of the
// flows unexpected-destination would report, and takes over once there are
// more than scanDistinct of them: it marks the flow rolled (unexpected,
// beacon and new-destination then leave it to the roll-up) and counts it in
// the camera's one scan alert.
type scan struct {
	e    *Engine
	cams map[netip.Addr]*scanState
}

type scanState struct {
	start int64                     // window start
	first []netip.Addr              // the first scanDistinct destinations of the window
	dsts  map[netip.AddrPort]uint64 // rolled-up destinations and their flows (at most scanTracked)
	ports map[uint16]struct{}       // distinct ports of the rolled-up flows (at most scanTracked)
	over  uint64                    // rolled-up flows to destinations beyond scanTracked
	// rollAll: the camera was scanning in the previous window, so this
	// one is rolled up from its first destination.
	rollAll bool
	alert   *pending
}

func (d *scan) flowOpened(f *flow, p *packet, ts int64) {
	if !f.watchable() || f.lateral || resolverService(f.proto, f.port) != "" && publicResolvers[f.peer] != "" {
		return // a public resolver is high on its own (unexpected), never rolled up
	}
	e := d.e
	s := d.cams[f.cam]
	if s == nil || ts-s.start >= int64(e.p.Thresholds.Aggregate) {
		if s == nil && len(d.cams) >= maxScanStates {
			evictOne(d.cams)
			e.m.StateEvictions.Add(1)
		}
		// A camera that was scanning in the window just ended goes on being
		// rolled up from its first destination.
		rollAll := false
		if s != nil && s.alert != nil {
			e.emit(s.alert) // the roll-up ends with its window
			rollAll = ts-s.start < 2*int64(e.p.Thresholds.Aggregate)
		}
		s = &scanState{start: ts, rollAll: rollAll}
		d.cams[f.cam] = s
	}
	if slices.Contains(s.first, f.peer) {
		return
	}
	if !s.rollAll && len(s.first) < scanDistinct {
		s.first = append(s.first, f.peer)
		return
	}
	f.rolled = true
	dst := netip.AddrPortFrom(f.peer, f.port)
	if s.dsts == nil {
		s.dsts, s.ports = map[netip.AddrPort]uint64{}, map[uint16]struct{}{}
	}
	if _, ok := s.dsts[dst]; ok || len(s.dsts) < scanTracked {
		s.dsts[dst]++
	} else {
		s.over++
	}
	if len(s.ports) < scanTracked {
		s.ports[f.port] = struct{}{}
	}
	pd := e.raise(aggKey{cam: f.cam, det: scanDetector}, ts, p.ipLen, 1, func(a *Alert) { a.Proto = protoName(f.proto) })
	if pd != s.alert {
		s.alert = pd
		st, cam := s, f.cam
		pd.finish = func(pd *pending) { st.describe(pd, cam) }
	}
}

// describe writes the roll-up's detail and destinations at emission.
func (s *scanState) describe(pd *pending, cam netip.Addr) {
	type dc struct {
		d netip.AddrPort
		n uint64
	}
	top := make([]dc, 0, len(s.dsts))
	for d, n := range s.dsts {
		top = append(top, dc{d, n})
	}
	slices.SortFunc(top, func(a, b dc) int { return cmp.Or(cmp.Compare(b.n, a.n), a.d.Compare(b.d)) })
	a := &pd.a
	a.Destinations = a.Destinations[:0]
	var names []string
	for _, t := range top[:min(len(top), scanTop)] {
		a.Destinations = append(a.Destinations, fmt.Sprintf("%s (%d)", t.d, t.n))
		names = append(names, t.d.String())
	}
	distinct := fmt.Sprintf("%d", len(s.dsts))
	if s.over > 0 {
		distinct = fmt.Sprintf("at least %d", len(s.dsts))
	}
	if len(top) > 0 {
		a.Dst, a.Port = top[0].d.Addr().String(), top[0].d.Port()
	}
	after := fmt.Sprintf("after %d distinct ones alerted one by one in the window", scanDistinct)
	if s.rollAll {
		after = "continuing a scan of the previous window"
	}
	a.Detail = fmt.Sprintf("camera %s opened %d flows to %s destinations (address and port; %d ports) that no allow rule permits, %s: scan or flood; most contacted: %s",
		cam, a.Count, distinct, len(s.ports), after, strings.Join(names, ", "))
}

package egress

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// aggKey identifies the alerts folded together within one window: one
// camera, one kind, one destination (address, port or domain as the kind
// needs).
type aggKey struct {
	cam    netip.Addr
	det    *Detector
	dst    netip.Addr
	domain string
	port   uint16
}

// pending is an alert being aggregated until its window ends.
type pending struct {
	a       Alert
	key     aggKey
	end     int64 // window end, Unix ns
	emitted bool
	finish  func(*pending) // refreshes the detail at emission (optional)
	extra   uint64         // roll-ups: destinations beyond those listed
	sent    uint64         // occurrences already reported by the at-once alert
	// suppressed: the repeats within a suppression period (quiet), summed
	// up when it ends.
	suppressed bool
}

// raise records one occurrence of an alert: the first in a window creates it
// (build fills the kind-specific fields), later ones add count and bytes.
func (e *Engine) raise(k aggKey, ts int64, bytes, count uint64, build func(*Alert)) *pending {
	p := e.agg[k]
	if p != nil && ts >= p.end {
		e.emit(p)
		p = nil
	}
	t := time.Unix(0, ts).UTC()
	if p != nil {
		p.a.Count += count
		p.a.Bytes += bytes
		if t.After(p.a.LastSeen) {
			p.a.LastSeen = t
		}
		if t.Before(p.a.FirstSeen) {
			p.a.FirstSeen = t
		}
		return p
	}
	if len(e.agg) >= e.maxPending {
		e.m.StateEvictions.Add(1)
		e.emitLargest() // emit early rather than grow without bound
	}
	p = &pending{key: k, end: ts + int64(e.p.Thresholds.Aggregate)}
	p.a = Alert{
		Kind: k.det.Kind, Severity: k.det.Severity,
		Camera: e.cameraName(k.cam), Src: k.cam.String(),
		FirstSeen: t, LastSeen: t, Count: count, Bytes: bytes,
	}
	if until, ok := e.quiet[k]; ok && ts < until {
		// Suppressed: one summary of the repeats when the period ends.
		p.end, p.suppressed, p.a.Repeat = until, true, true
	}
	if k.dst.IsValid() {
		p.a.Dst = k.dst.String()
	}
	if f := e.cur; f != nil {
		p.a.setFlow(f)
	}
	build(&p.a)
	e.agg[k] = p
	e.aggNext = min(e.aggNext, p.end)
	if !p.suppressed {
		e.urgent = append(e.urgent, p)
	}
	return p
}

// quietFrom starts the suppression period of p's key at its first
// occurrence (Thresholds.Suppress), bounded like the other state.
func (e *Engine) quietFrom(p *pending) {
	d := int64(e.p.Thresholds.Suppress)
	if d <= 0 || p.suppressed {
		return
	}
	if _, ok := e.quiet[p.key]; !ok && len(e.quiet) >= maxStateEntries {
		evictOne(e.quiet)
		e.m.StateEvictions.Add(1)
	}
	e.quiet[p.key] = p.a.FirstSeen.UnixNano() + d
}

// expireQuiet forgets the suppression periods that have ended.
func (e *Engine) expireQuiet() {
	for k, until := range e.quiet {
		if until <= e.now {
			delete(e.quiet, k)
		}
	}
}

// sendUrgent sends at once the first occurrence of each high or critical
// alert raised since the last call (the aggregate's repeats follow at the
// end of its window, see emit). It runs before the engine lock is released,
// when the detectors have finished the alert (roll-ups their first target,
// an upgraded severity its final word).
func (e *Engine) sendUrgent() {
	for _, p := range e.urgent {
		if p.emitted || p.sent > 0 || severityID(p.a.Severity) < 4 || p.key.det.Summary {
			continue
		}
		tmp := *p
		tmp.a.Destinations = slices.Clone(p.a.Destinations)
		if p.finish != nil {
			p.finish(&tmp)
		}
		tmp.a.finalize()
		p.sent = p.a.Count
		e.quietFrom(p)
		e.m.Alerts[p.key.det.index].Add(1)
		e.outbox = append(e.outbox, tmp.a)
	}
	clear(e.urgent)
	e.urgent = e.urgent[:0]
}

// flush emits the pending alerts whose window has ended (all of them when
// all is set), oldest first.
func (e *Engine) flush(all bool) {
	if !all && e.now < e.aggNext {
		return
	}
	var due []*pending
	e.aggNext = math.MaxInt64
	for _, p := range e.agg {
		if all || p.end <= e.now {
			due = append(due, p)
		} else {
			e.aggNext = min(e.aggNext, p.end)
		}
	}
	slices.SortFunc(due, func(x, y *pending) int {
		return cmp.Or(x.a.FirstSeen.Compare(y.a.FirstSeen), cmp.Compare(x.key.det.index, y.key.det.index),
			cmp.Compare(x.a.Camera, y.a.Camera), cmp.Compare(x.a.Dst, y.a.Dst),
			cmp.Compare(x.a.Domain, y.a.Domain), cmp.Compare(x.a.Port, y.a.Port))
	})
	for _, p := range due {
		e.emit(p)
	}
}

// emitLargest emits early the pending alerts of the camera that has the
// most: a camera flooding alerts cuts its own short, never another's.
func (e *Engine) emitLargest() {
	per := map[netip.Addr]int{}
	var big netip.Addr
	for k := range e.agg {
		per[k.cam]++
		if per[k.cam] > per[big] {
			big = k.cam
		}
	}
	var due []*pending
	for k, p := range e.agg {
		if k.cam == big {
			due = append(due, p)
		}
	}
	slices.SortFunc(due, func(x, y *pending) int { return x.a.FirstSeen.Compare(y.a.FirstSeen) })
	for _, p := range due {
		e.emit(p)
	}
}

// emit finishes p and queues it for the sink. Sinks are called by deliver,
// outside the engine lock: a slow webhook never holds up packet handling.
func (e *Engine) emit(p *pending) {
	if e.agg[p.key] == p {
		delete(e.agg, p.key)
	}
	if p.emitted {
		return
	}
	p.emitted = true
	if p.sent > 0 {
		if p.a.Count <= p.sent {
			return // sent at once, and not repeated since
		}
		p.a.Count -= p.sent
		p.a.Repeat = true
	}
	if p.finish != nil {
		p.finish(p)
	}
	switch {
	case p.suppressed:
		p.a.Detail = fmt.Sprintf("%d more times while suppressed (thresholds.suppress %s after an alert): %s", p.a.Count, e.p.Thresholds.Suppress, p.a.Detail)
	case p.a.Repeat:
		p.a.Detail = fmt.Sprintf("%d more times since the alert sent at once: %s", p.a.Count, p.a.Detail)
	default:
		e.quietFrom(p)
	}
	p.a.finalize()
	e.m.Alerts[p.key.det.index].Add(1)
	e.outbox = append(e.outbox, p.a)
}

// unlockAndDeliver releases the engine lock and hands the alerts emitted
// while it was held to the sink, in order. Deliveries are serialised by
// sendMu, taken before the engine lock is released, so alerts reach the
// sink in the order they were emitted whichever goroutine sends them.
func (e *Engine) unlockAndDeliver(ctx context.Context) {
	if len(e.urgent) > 0 {
		e.sendUrgent()
	}
	if len(e.outbox) == 0 {
		e.mu.Unlock()
		return
	}
	out := e.outbox
	e.outbox = nil
	e.sendMu.Lock()
	e.mu.Unlock()
	defer e.sendMu.Unlock()
	for _, a := range out {
		if err := e.sink.Send(ctx, a); err != nil {
			e.m.SendErrors.Add(1)
			e.log.Error("delivering an alert failed", "kind", a.Kind, "camera", a.Camera, "error", err)
		}
	}
}

// finalize fills the fields derived from the others as emitted.
func (a *Alert) finalize() {
	a.Timestamp, a.EventType = a.FirstSeen, "alert"
	a.SeverityID = severityID(a.Severity)
	a.Proto = eveProto(a.Proto)
}

// setFlow records the flow that raised a: its endpoints, initiator first,
// its flow_id and Community ID.
func (a *Alert) setFlow(f *flow) {
	src, dst := f.init.Addr(), f.resp.Addr()
	a.SrcIP, a.DestIP = src.String(), dst.String()
	if f.proto == protoTCP || f.proto == protoUDP {
		a.SrcPort, a.DestPort = f.init.Port(), f.resp.Port()
	}
	switch {
	case !isICMP(f.proto):
		a.CommunityID = communityID(f.proto, src, dst, a.SrcPort, a.DestPort)
	case !f.icmpSeen:
		return // a flow record keeps no ICMP type and code: no Community ID
	case f.icmpRev: // hashed as its first packet was sent
		a.CommunityID = communityID(f.proto, dst, src, uint16(f.icmpType), uint16(f.icmpCode))
	default:
		a.CommunityID = communityID(f.proto, src, dst, uint16(f.icmpType), uint16(f.icmpCode))
	}
	h := fnv.New64a()
	h.Write([]byte(a.CommunityID))
	a.FlowID = h.Sum64() &^ (1 << 63)
}

// severityID is the numeric severity (OCSF severity_id; ECS event.severity).
func severityID(s string) int {
	switch s {
	case "info":
		return 1
	case "low":
		return 2
	case "medium":
		return 3
	case "high":
		return 4
	case "critical":
		return 5
	}
	return 0
}

// eveProto writes a protocol name as EVE does (TCP, UDP, ICMP, IPv6-ICMP).
func eveProto(p string) string {
	switch p {
	case "icmpv6":
		return "IPv6-ICMP"
	case "":
		return ""
	}
	return strings.ToUpper(p)
}

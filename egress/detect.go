package egress

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/egress/dnsparse"
	"github.com/cordon-vms/cordon/egress/quicinitial"
	"github.com/cordon-vms/cordon/egress/tlsparse"
	"golang.org/x/net/publicsuffix"
)

// aggKey identifies the alerts folded together within one window: one
// camera, one kind, one destination (address, port or domain as the kind
// needs).
type aggKey struct {
	cam    netip.Addr
	kind   kind
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
	if len(e.agg) >= maxPending {
		e.m.StateEvictions.Add(1)
		e.flush(true) // emit early rather than grow without bound
	}
	p = &pending{key: k, end: ts + int64(e.p.Thresholds.Aggregate)}
	p.a = Alert{
		Kind: Kinds[k.kind], Severity: kindSeverity[k.kind],
		Camera: e.cameraName(k.cam), Src: k.cam.String(),
		FirstSeen: t, LastSeen: t, Count: count, Bytes: bytes,
	}
	if k.dst.IsValid() {
		p.a.Dst = k.dst.String()
	}
	build(&p.a)
	e.agg[k] = p
	return p
}

// flush emits the pending alerts whose window has ended (all of them when
// all is set), oldest first.
func (e *Engine) flush(all bool) {
	var due []*pending
	for _, p := range e.agg {
		if all || p.end <= e.now {
			due = append(due, p)
		}
	}
	slices.SortFunc(due, func(x, y *pending) int {
		return cmp.Or(x.a.FirstSeen.Compare(y.a.FirstSeen), cmp.Compare(x.key.kind, y.key.kind),
			cmp.Compare(x.a.Camera, y.a.Camera), cmp.Compare(x.a.Dst, y.a.Dst),
			cmp.Compare(x.a.Domain, y.a.Domain), cmp.Compare(x.a.Port, y.a.Port))
	})
	for _, p := range due {
		e.emit(p)
	}
}

func (e *Engine) emit(p *pending) {
	if e.agg[p.key] == p {
		delete(e.agg, p.key)
	}
	if p.emitted {
		return
	}
	p.emitted = true
	if p.finish != nil {
		p.finish(p)
	}
	e.m.Alerts[p.key.kind].Add(1)
	if err := e.sink.Send(e.ctx, p.a); err != nil {
		e.m.SendErrors.Add(1)
		e.log.Error("delivering an alert failed", "kind", p.a.Kind, "camera", p.a.Camera, "err", err)
	}
}

// inspectDNS reads a DNS query the camera sent: watch-listed names raise
// vendor-cloud, and every query counts towards dns-tunnel.
func (e *Engine) inspectDNS(f *flow, p *packet, ts int64) {
	msg := p.payload
	if f.proto == 6 { // DNS over TCP: 2-byte length prefix
		if len(msg) < 2 {
			return
		}
		msg = msg[2:]
	}
	q, err := dnsparse.Parse(msg, e.nameBuf[:])
	if err != nil || q.Response || q.Opcode != 0 || len(q.Name) == 0 {
		return
	}
	name := string(q.Name)
	if en, ok := e.wl.MatchDomain(name); ok {
		e.raiseVendor(f, ts, name, fmt.Sprintf("DNS query for %s (%s) to %s matches watch-list domain %s (%s: %s)", name, qtypeName(q.Type), f.peer, en.Domain, en.Vendor, en.Note), aggKey{domain: en.Domain})
	}
	e.dnsTunnel(f, name, q.Type, ts)
}

func qtypeName(t uint16) string {
	switch t {
	case dnsparse.TypeA:
		return "A"
	case dnsparse.TypeAAAA:
		return "AAAA"
	case dnsparse.TypeTXT:
		return "TXT"
	case dnsparse.TypeNULL:
		return "NULL"
	case 5:
		return "CNAME"
	case 15:
		return "MX"
	case 33:
		return "SRV"
	case 65:
		return "HTTPS"
	}
	return "type " + itoa(int(t))
}

type dnsKey struct {
	cam    netip.Addr
	domain string
}

type dnsWindow struct {
	start      int64
	queries    int
	txtNull    int
	hexNames   int
	long       map[uint64]struct{}
	maxEntropy float64
	example    string
}

func (e *Engine) dnsTunnel(f *flow, name string, qtype uint16, ts int64) {
	th := e.p.Thresholds.DNSTunnel
	reg, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		reg = name
	}
	k := dnsKey{cam: f.cam, domain: reg}
	w := e.dns[k]
	if w == nil || ts-w.start >= int64(th.Window) {
		if w == nil && len(e.dns) >= maxStateEntries {
			evictOne(e.dns)
			e.m.StateEvictions.Add(1)
		}
		w = &dnsWindow{start: ts, long: map[uint64]struct{}{}}
		e.dns[k] = w
	}
	w.queries++
	if qtype == dnsparse.TypeTXT || qtype == dnsparse.TypeNULL {
		w.txtNull++
	}
	sub := strings.TrimSuffix(strings.TrimSuffix(name, reg), ".")
	susp, hex, ent := suspiciousName(sub, th.MinLength)
	if hex {
		w.hexNames++
	}
	w.maxEntropy = max(w.maxEntropy, ent)
	if susp && len(w.long) < 4*th.LongNames+16 {
		if _, dup := w.long[fnv64(name)]; !dup && w.example == "" {
			w.example = name
		}
		w.long[fnv64(name)] = struct{}{}
	}
	if w.queries < th.Queries || len(w.long) < th.LongNames {
		return
	}
	pd := e.raise(aggKey{cam: f.cam, kind: kTunnel, domain: reg}, ts, 0, 1, func(a *Alert) {
		a.Dst, a.Domain, a.Proto, a.Port = f.peer.String(), reg, protoName(f.proto), f.port
	})
	window := th.Window.D()
	pd.finish = func(p *pending) {
		p.a.Detail = fmt.Sprintf("camera %s sent %d queries with %d distinct long or high-entropy names under %s within %s (thresholds %d and %d; %d TXT/NULL, %d hex-encoded, max entropy %.1f bits/char), e.g. %s",
			f.cam, w.queries, len(w.long), reg, window, th.Queries, th.LongNames, w.txtNull, w.hexNames, w.maxEntropy, w.example)
	}
}

// suspiciousName reports whether the subdomain part of a query name looks
// like encoded data: long, a long hex label, or high character entropy.
func suspiciousName(sub string, minLen int) (susp, hexLabel bool, entropy float64) {
	if sub == "" {
		return false, false, 0
	}
	for label := range strings.SplitSeq(sub, ".") {
		if len(label) >= 16 && isHex(label) {
			hexLabel = true
		}
	}
	var counts [256]int
	n := 0
	for i := 0; i < len(sub); i++ {
		if sub[i] != '.' {
			counts[sub[i]]++
			n++
		}
	}
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(n)
			entropy -= p * math.Log2(p)
		}
	}
	susp = len(sub) >= minLen || hexLabel || (n >= 12 && entropy >= 3.5)
	return susp, hexLabel, entropy
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// evictOne drops an arbitrary entry (Go randomises map iteration order).
func evictOne[K comparable, V any](m map[K]V) {
	for k := range m {
		delete(m, k)
		return
	}
}

// inspectPayload looks at the first payload packets the camera sends on a
// flow it opened: watch-list payload signatures, the Host of a plain-HTTP
// request, TLS ClientHello SNI and QUIC Initial SNI (decrypted).
func (e *Engine) inspectPayload(f *flow, p *packet, ts int64) {
	f.inspected++
	if f.inspected >= maxInspect {
		f.inspDone = true
	}
	pl := p.payload
	if !f.watched && f.inspected == 1 {
		if en, ok := e.wl.MatchTraffic(protoName(f.proto), f.port, pl); ok {
			f.watched = true
			e.raiseVendor(f, ts, "", fmt.Sprintf("%s payload to %s:%d starts with %x, matching the watch-list signature %s (%s: %s)",
				protoName(f.proto), f.peer, f.port, pl[:min(len(pl), 8)], en.PayloadPrefix, en.Vendor, en.Note), aggKey{dst: f.peer, port: f.port})
		}
	}
	switch f.proto {
	case 6:
		if f.inspected == 1 {
			if host, ok := httpHost(pl); ok {
				f.inspDone = true
				e.sniCheck(f, ts, host, "HTTP request Host header")
				return
			}
		}
		if f.tlsBuf == nil && !tlsparse.LooksLikeRecord(pl) {
			return
		}
		data := pl
		if f.tlsBuf != nil {
			f.tlsBuf = append(f.tlsBuf, pl[:min(len(pl), maxTLSBuffer-len(f.tlsBuf))]...)
			data = f.tlsBuf
		}
		ch, err := tlsparse.ParseRecords(data)
		if errors.Is(err, tlsparse.ErrTruncated) && len(data) < maxTLSBuffer && !f.inspDone {
			if f.tlsBuf == nil {
				f.tlsBuf = append(make([]byte, 0, 2*len(pl)), pl...)
			}
			return
		}
		f.tlsBuf, f.inspDone = nil, true
		if err == nil && ch.ServerName != "" {
			e.sniCheck(f, ts, ch.ServerName, "TLS ClientHello SNI")
		}
	case 17:
		if f.quic == nil && !quicinitial.IsInitial(pl) {
			return
		}
		if f.quic == nil {
			f.quic = &quicinitial.Assembler{}
		}
		ch, err := f.quic.Add(pl)
		if errors.Is(err, quicinitial.ErrMorePacketsNeeded) && !f.inspDone {
			return
		}
		f.quic, f.inspDone = nil, true
		if err == nil && ch.ServerName != "" {
			e.sniCheck(f, ts, ch.ServerName, "QUIC Initial (decrypted) ClientHello SNI")
		}
	}
}

func (e *Engine) sniCheck(f *flow, ts int64, sni, where string) {
	e.m.SNIs.Add(1)
	if en, ok := e.wl.MatchDomain(sni); ok {
		e.raiseVendor(f, ts, sni, fmt.Sprintf("%s to %s:%d names %s, which matches watch-list domain %s (%s: %s)", where, f.peer, f.port, sni, en.Domain, en.Vendor, en.Note), aggKey{dst: f.peer, domain: en.Domain})
	}
}

type beaconKey struct {
	cam, dst netip.Addr
	proto    uint8
	port     uint16
}

type beaconState struct {
	t []int64 // the last Events contact times, sorted
}

// beaconEvent records one contact of a camera with a non-allowed destination
// and raises beacon when the last contacts are regularly spaced.
func (e *Engine) beaconEvent(f *flow, ts int64) {
	th := e.p.Thresholds.Beacon
	k := beaconKey{cam: f.cam, dst: f.peer, proto: f.proto, port: f.port}
	s := e.beacons[k]
	if s == nil {
		if len(e.beacons) >= maxStateEntries {
			evictOne(e.beacons)
			e.m.StateEvictions.Add(1)
		}
		s = &beaconState{t: make([]int64, 0, th.Events)}
		e.beacons[k] = s
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
	e.raise(aggKey{cam: f.cam, kind: kBeacon, dst: f.peer, port: f.port}, ts, 0, 1, func(a *Alert) {
		a.Proto, a.Port = protoName(f.proto), f.port
		a.Detail = fmt.Sprintf("camera %s contacted %s %s/%d %d times at regular intervals: every %s ± %s (jitter %.0f%%, limit %.0f%%)",
			f.cam, f.peer, protoName(f.proto), f.port, n, time.Duration(mean).Round(100*time.Millisecond), time.Duration(sd).Round(10*time.Millisecond), 100*sd/mean, 100*th.MaxJitter)
	})
}

type volumeWindow struct {
	start int64
	bytes uint64
	alert *pending
}

// volumeAdd counts bytes a camera sends on a flow it opened to a non-allowed
// destination, and raises volume once per window above the threshold.
func (e *Engine) volumeAdd(f *flow, p *packet, ts int64) {
	th := e.p.Thresholds.Volume
	w := e.volume[f.cam]
	if w == nil || ts-w.start >= int64(th.Window) {
		if w == nil && len(e.volume) >= maxStateEntries {
			evictOne(e.volume)
			e.m.StateEvictions.Add(1)
		}
		w = &volumeWindow{start: ts}
		e.volume[f.cam] = w
	}
	w.bytes += p.ipLen
	if w.bytes <= uint64(th.Bytes) {
		return
	}
	if w.alert == nil {
		w.alert = e.raise(aggKey{cam: f.cam, kind: kVolume}, ts, w.bytes, 1, func(a *Alert) {
			a.Dst, a.Proto, a.Port = f.peer.String(), protoName(f.proto), f.port
		})
		window, limit, start := th.Window.D(), th.Bytes, time.Unix(0, w.start).UTC()
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

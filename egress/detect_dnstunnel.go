package egress

import (
	"fmt"
	"math"
	"strings"

	"github.com/cordon-vms/cordon/egress/dnsparse"
	"golang.org/x/net/publicsuffix"
)

// KindDNSTunnel is the Kind of dnsTunnelDetector.
const KindDNSTunnel = "dns-tunnel"

var dnsTunnelDetector = &Detector{
	Kind:     KindDNSTunnel,
	Severity: "high",
	Raised:   "within `window`, one camera sends ≥ `queries` queries (over UDP or TCP) and ≥ `long_names` distinct suspicious names under one registered domain (public-suffix aware). A name is suspicious when the part left of the registered domain has ≥ `min_length` characters, a hex label of ≥ 16 characters, or ≥ 3.5 bits/char entropy over ≥ 12 characters",
	Fields:   "`domain` (registered), `dst` resolver; `detail`: queries, distinct names, TXT/NULL count, hex-encoded count, max entropy, an example",
	new: func(e *Engine) any {
		d := &dnsTunnel{e: e}
		d.windows = newCamState[string](maxDNSPerCamera, maxStateEntries, func(w *dnsWindow, now int64) int64 {
			if now-w.start >= int64(e.p.Thresholds.DNSTunnel.Window) {
				return -1 // ended
			}
			return int64(w.queries)
		}, &e.m.StateEvictions)
		return d
	},
}

// maxDNSPerCamera bounds the registered domains one camera's query windows
// are kept for: a camera querying ever new domains recycles its own windows
// (ended ones, then those with the fewest queries), never another camera's.
const maxDNSPerCamera = 256

// dnsTunnel counts each camera's DNS queries per registered domain, in
// windows, whatever resolver they go to.
type dnsTunnel struct {
	e       *Engine
	windows *camState[string, *dnsWindow]
	// regs memoizes the registered domain of the names queried lately
	// (cameras ask for the same few names over and over); emptied when
	// it reaches maxRegMemo names.
	regs map[string]string
}

// maxRegMemo bounds dnsTunnel.regs.
const maxRegMemo = 4096

// registered returns the registered domain of name (public suffix + 1),
// or name itself when it has none.
func (d *dnsTunnel) registered(name string) string {
	if reg, ok := d.regs[name]; ok {
		return reg
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		reg = name
	}
	if d.regs == nil || len(d.regs) >= maxRegMemo {
		d.regs = make(map[string]string, 64)
	}
	d.regs[name] = reg
	return reg
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

func (d *dnsTunnel) cameraSent(f *flow, p *packet, ts int64, _ bool) {
	if p.dns == nil || !f.outbound {
		return
	}
	d.query(f, p.dnsName, p.dns.Type, ts)
}

// dnsQuery counts a DNS query the camera sent over TCP.
func (d *dnsTunnel) dnsQuery(f *flow, q *dnsparse.Question, name string, ts int64) {
	if f.outbound {
		d.query(f, name, q.Type, ts)
	}
}

func (d *dnsTunnel) query(f *flow, name string, qtype uint16, ts int64) {
	e := d.e
	th := e.p.Thresholds.DNSTunnel
	reg := d.registered(name)
	w, _ := d.windows.get(f.cam, reg)
	if w == nil || ts-w.start >= int64(th.Window) {
		w = &dnsWindow{start: ts, long: map[uint64]struct{}{}}
		if !d.windows.put(f.cam, reg, w, ts) {
			return // counted
		}
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
	pd := e.raise(aggKey{cam: f.cam, det: dnsTunnelDetector, domain: reg}, ts, 0, 1, func(a *Alert) {
		a.Dst, a.Domain, a.Proto, a.Port = f.peer.String(), reg, protoName(f.proto), f.port
	})
	window := th.Window
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

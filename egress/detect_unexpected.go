package egress

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// KindUnexpectedDestination is the Kind of unexpectedDetector.
const KindUnexpectedDestination = "unexpected-destination"

var unexpectedDetector = &Detector{
	Kind:         KindUnexpectedDestination,
	Severity:     "medium",
	SeverityNote: "high for a public DNS resolver (8.8.8.8, 1.1.1.1, 114.114.114.114, …) on 53, 853 (DNS-over-TLS) or 443 (DNS-over-HTTPS), and for a TLS/QUIC server name of a public DNS-over-HTTPS/TLS service (dns.google, cloudflare-dns.com, dns.quad9.net, …) on any address: the camera bypasses the site's resolver; low for an inbound connection from a stranger, and for a unicast reply to the camera's own multicast discovery (SSDP M-SEARCH, mDNS, WS-Discovery)",
	Raised:       "a camera opens a flow to a peer no allow rule permits (multicast/broadcast excluded); one alert per camera and peer address per window, for the first 20 distinct peers of a camera in a window (then scan takes over)",
	Fields:       "`dst`, `proto`, `port` (first port seen), `bytes` sent by the camera, `count` flows",
	new:          func(e *Engine) any { return &unexpected{e: e} },
}

// unexpected raises unexpected-destination for flows no allow rule permits
// (lateral movement has its own kind) and for inbound connections from
// strangers. Its per-flow state is flow.agg, the open alert that later
// bytes of the flow are added to.
type unexpected struct{ e *Engine }

func (d *unexpected) flowOpened(f *flow, p *packet, ts int64) {
	switch {
	case !f.outbound && !f.allowed && !f.local:
		d.raiseInbound(f, ts)
	case f.watchable() && !f.lateral && !f.rolled:
		f.agg = d.raise(f, ts, p.ipLen)
	}
}

func (d *unexpected) cameraSent(f *flow, p *packet, ts int64, fresh bool) {
	if fresh || !f.watchable() || f.agg == nil {
		return
	}
	if f.agg.emitted { // its window closed: a new alert for the rest of the flow
		f.agg = d.raise(f, ts, p.ipLen)
		return
	}
	f.agg.a.Bytes += p.ipLen
	if t := time.Unix(0, ts).UTC(); t.After(f.agg.a.LastSeen) {
		f.agg.a.LastSeen = t
	}
}

func (d *unexpected) raise(f *flow, ts int64, bytes uint64) *pending {
	return d.e.raise(aggKey{cam: f.cam, det: unexpectedDetector, dst: f.peer}, ts, bytes, 1, func(a *Alert) {
		a.Proto, a.Port = protoName(f.proto), f.port
		if f.solicited != "" {
			a.Severity = "low"
			a.Detail = fmt.Sprintf("%s answered camera %s's %s (multicast discovery) with a unicast reply from %s/%d, which no allow rule permits", f.peer, f.cam, f.solicited, protoName(f.proto), f.port)
			return
		}
		if name := publicResolvers[f.peer]; name != "" {
			if how := resolverService(f.proto, f.port); how != "" {
				a.Severity = "high"
				a.Detail = fmt.Sprintf("camera %s uses the public DNS resolver %s (%s) over %s (%s/%d) instead of the allowed resolver: hard-coded in its firmware?", f.cam, f.peer, name, how, protoName(f.proto), f.port)
				return
			}
		}
		a.Detail = fmt.Sprintf("camera %s contacted %s on %s/%d, which no allow rule permits", f.cam, f.peer, protoName(f.proto), f.port)
	})
}

func (d *unexpected) raiseInbound(f *flow, ts int64) {
	d.e.raise(aggKey{cam: f.cam, det: unexpectedDetector, dst: f.peer}, ts, 0, 1, func(a *Alert) {
		a.Proto, a.Port = protoName(f.proto), f.port
		a.Severity = "low"
		a.Detail = fmt.Sprintf("inbound connection from %s to camera port %s/%d: the peer is not in the allow list", f.peer, protoName(f.proto), f.port)
	})
}

// resolverService names the DNS service on a port of a public resolver,
// "" for other ports.
func resolverService(proto uint8, port uint16) string {
	switch {
	case port == 53:
		return "DNS"
	case port == 853:
		return "DNS-over-TLS"
	case port == 443 && proto == protoTCP:
		return "DNS-over-HTTPS"
	case port == 443 && proto == protoUDP:
		return "DNS-over-HTTPS/3"
	}
	return ""
}

// serverName is told the TLS or QUIC server name (or HTTP Host) a camera
// asked for on f: a public DNS-over-HTTPS/TLS service's name on a flow no
// allow rule permits makes its unexpected-destination alert high.
func (d *unexpected) serverName(f *flow, ts int64, name, where string) {
	if !f.watchable() || f.lateral { // rolled up into a scan or not: it is high
		return
	}
	svc := dohService(name)
	if svc == "" {
		return
	}
	if f.agg == nil || f.agg.emitted {
		f.agg = d.raise(f, ts, 0)
	}
	a := &f.agg.a
	a.Severity, a.Domain = "high", name
	d.e.urgent = append(d.e.urgent, f.agg) // now high: sent at once
	a.Detail = fmt.Sprintf("camera %s reaches %s, the %s DNS-over-HTTPS/TLS service, at %s (%s/%d; %s) instead of the allowed resolver: it bypasses the site's DNS", f.cam, name, svc, f.peer, protoName(f.proto), f.port, where)
}

// dohServices are the names of public DNS-over-HTTPS and DNS-over-TLS
// services (a name matches itself and the names under it).
var dohServices = map[string]string{
	"dns.google": "Google", "dns.google.com": "Google",
	"cloudflare-dns.com": "Cloudflare", "one.one.one.one": "Cloudflare",
	"dns.quad9.net": "Quad9", "dns9.quad9.net": "Quad9", "dns10.quad9.net": "Quad9", "dns11.quad9.net": "Quad9",
	"doh.opendns.com": "OpenDNS", "dns.opendns.com": "OpenDNS",
	"dns.alidns.com": "AliDNS", "doh.pub": "DNSPod", "dns.pub": "DNSPod", "doh.360.cn": "360",
	"dns.adguard-dns.com": "AdGuard", "dns.adguard.com": "AdGuard", "dns.nextdns.io": "NextDNS",
}

// dohService returns the provider of a DNS-over-HTTPS/TLS service name, "" if
// name is not one.
func dohService(name string) string {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for {
		if svc, ok := dohServices[name]; ok {
			return svc
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return ""
		}
		name = name[i+1:]
	}
}

// publicResolvers are well-known public DNS resolvers that camera firmware
// hard-codes (XMEye: 114.114.114.114 and 8.8.8.8).
var publicResolvers = func() map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for addr, name := range map[string]string{
		"8.8.8.8": "Google", "8.8.4.4": "Google", "2001:4860:4860::8888": "Google", "2001:4860:4860::8844": "Google",
		"1.1.1.1": "Cloudflare", "1.0.0.1": "Cloudflare", "2606:4700:4700::1111": "Cloudflare",
		"9.9.9.9": "Quad9", "149.112.112.112": "Quad9",
		"208.67.222.222": "OpenDNS", "208.67.220.220": "OpenDNS",
		"114.114.114.114": "114DNS", "114.114.115.115": "114DNS",
		"223.5.5.5": "AliDNS", "223.6.6.6": "AliDNS", "119.29.29.29": "DNSPod", "180.76.76.76": "Baidu",
	} {
		m[netip.MustParseAddr(addr)] = name
	}
	return m
}()

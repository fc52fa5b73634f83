package egress

import (
	"errors"
	"fmt"

	"github.com/cordon-vms/cordon/egress/dnsparse"
	"github.com/cordon-vms/cordon/egress/quicinitial"
	"github.com/cordon-vms/cordon/egress/tlsparse"
)

// KindVendorCloud is the Kind of vendorDetector.
const KindVendorCloud = "vendor-cloud"

var vendorDetector = &Detector{
	Kind:     KindVendorCloud,
	Severity: "high",
	Raised:   "a DNS query (any resolver, allowed or not), the Host header of a plain-HTTP request, a TLS ClientHello SNI (reassembled across TCP segments), or a QUIC Initial SNI (client Initial decrypted per RFC 9001 §5 / RFC 9369, CRYPTO frames reassembled across Initial packets) names a watch-listed domain; or the peer address, the port, or the first payload bytes match a watch-list entry",
	Fields:   "`domain` (queried name / Host / SNI), `dst`, `port`, `detail` names the matching entry, its vendor and note",
	new:      func(e *Engine) any { return &vendor{e: e} },
}

// vendor matches flows a camera opens, allowed or not, against the
// watch-list. Its per-flow state is in flow: watched, and the payload
// inspection fields (inspected, inspDone, tlsBuf, quic).
type vendor struct{ e *Engine }

func (d *vendor) flowOpened(f *flow, _ *packet, ts int64) {
	if !f.outbound {
		return
	}
	wl := d.e.wl
	if en, ok := wl.MatchAddr(f.peer); ok {
		f.watched = true
		d.raise(f, ts, "", fmt.Sprintf("destination %s is on the watch-list (%s: %s)", f.peer, en.Vendor, en.Note), aggKey{dst: f.peer})
	} else if en, ok := wl.MatchTraffic(protoName(f.proto), f.port, nil); ok {
		f.watched = true
		d.raise(f, ts, "", fmt.Sprintf("%s port %d matches the watch-list (%s: %s)", protoName(f.proto), f.port, en.Vendor, en.Note), aggKey{dst: f.peer, port: f.port})
	}
}

func (d *vendor) cameraSent(f *flow, p *packet, ts int64, _ bool) {
	if !f.outbound {
		return
	}
	if q := p.dns; q != nil {
		name := string(q.Name)
		if en, ok := d.e.wl.MatchDomain(name); ok {
			d.raise(f, ts, name, fmt.Sprintf("DNS query for %s (%s) to %s matches watch-list domain %s (%s: %s)", name, qtypeName(q.Type), f.peer, en.Domain, en.Vendor, en.Note), aggKey{domain: en.Domain})
		}
	}
	if len(p.payload) > 0 && !f.inspDone {
		d.inspectPayload(f, p, ts)
	}
}

func (d *vendor) raise(f *flow, ts int64, domain, detail string, k aggKey) {
	k.cam, k.det = f.cam, vendorDetector
	d.e.raise(k, ts, 0, 1, func(a *Alert) {
		a.Proto, a.Port, a.Domain = protoName(f.proto), f.port, domain
		if a.Dst == "" {
			a.Dst = f.peer.String()
		}
		a.Detail = detail
	})
}

// inspectPayload looks at the first payload packets the camera sends on a
// flow it opened: watch-list payload signatures, the Host of a plain-HTTP
// request, TLS ClientHello SNI and QUIC Initial SNI (decrypted).
func (d *vendor) inspectPayload(f *flow, p *packet, ts int64) {
	f.inspected++
	if f.inspected >= maxInspect {
		f.inspDone = true
	}
	pl := p.payload
	if !f.watched && f.inspected == 1 {
		if en, ok := d.e.wl.MatchTraffic(protoName(f.proto), f.port, pl); ok {
			f.watched = true
			d.raise(f, ts, "", fmt.Sprintf("%s payload to %s:%d starts with %x, matching the watch-list signature %s (%s: %s)",
				protoName(f.proto), f.peer, f.port, pl[:min(len(pl), 8)], en.PayloadPrefix, en.Vendor, en.Note), aggKey{dst: f.peer, port: f.port})
		}
	}
	switch f.proto {
	case protoTCP:
		if f.inspected == 1 {
			if host, ok := httpHost(pl); ok {
				f.inspDone = true
				d.serverName(f, ts, host, "HTTP request Host header")
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
			d.serverName(f, ts, ch.ServerName, "TLS ClientHello SNI")
		}
	case protoUDP:
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
			d.serverName(f, ts, ch.ServerName, "QUIC Initial (decrypted) ClientHello SNI")
		}
	}
}

// serverName checks a server name the camera asked for (SNI, Host).
func (d *vendor) serverName(f *flow, ts int64, sni, where string) {
	d.e.m.SNIs.Add(1)
	if en, ok := d.e.wl.MatchDomain(sni); ok {
		d.raise(f, ts, sni, fmt.Sprintf("%s to %s:%d names %s, which matches watch-list domain %s (%s: %s)", where, f.peer, f.port, sni, en.Domain, en.Vendor, en.Note), aggKey{dst: f.peer, domain: en.Domain})
	}
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

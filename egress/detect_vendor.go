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
	Raised:   "a DNS query (any resolver, allowed or not; over TCP every query of a connection, however the stream is cut into segments — see Limits), the Host header of a plain-HTTP request, a TLS ClientHello SNI (reassembled from the first TCP segments in any order: retransmitted, overlapping — first copy wins — or out of order, up to 64 segments within its first 16 KiB; segments that bring no new byte of them — old duplicates, past 16 KiB, retransmissions —, which the server ignores too, are skipped until the camera has sent 1 MiB), or a QUIC Initial SNI (client Initial decrypted per RFC 9001 §5 / RFC 9369, CRYPTO frames reassembled across Initial packets; undecryptable or foreign Initials on the same flow do not end the search, up to 16 Initials; other datagrams are skipped until the camera has sent 1 MiB) names a watch-listed domain; or the peer address, the port, or the first payload bytes match a watch-list entry (payload signatures are matched on the first payload the camera sends on a flow it opened, never on DNS messages nor on the ports of DHCP, NTP, NetBIOS, SNMP, syslog, SSDP, WS-Discovery, mDNS and LLMNR, and with their framing where the entry has one: PPPP needs 0xF1 and a header length equal to the datagram's, not one byte)",
	Fields:   "`domain` (queried name / Host / SNI), `dst`, `port`, `detail` names the matching entry, its vendor and note",
	new:      func(e *Engine) any { return &vendor{e: e} },
}

// vendor matches flows a camera opens, allowed or not, against the
// watch-list. Its per-flow state is in flow: watched, and the payload
// inspection fields (inspected, inspDone, synSeen, isn, flight, quic).
type vendor struct {
	e *Engine
	// spare are released flights whose buffers the next flights reuse
	// (at most maxSpareFlights).
	spare []*tcpFlight
}

const maxSpareFlights = 64

// newFlight returns an empty flight starting at sequence number base.
func (d *vendor) newFlight(base uint32) *tcpFlight {
	n := len(d.spare)
	if n == 0 {
		return &tcpFlight{base: base}
	}
	fl := d.spare[n-1]
	d.spare = d.spare[:n-1]
	*fl = tcpFlight{base: base, buf: fl.buf[:0], have: fl.have[:0]}
	return fl
}

// release ends f's payload inspection, keeping its flight for reuse.
func (d *vendor) release(f *flow) {
	if f.flight != nil && len(d.spare) < maxSpareFlights {
		d.spare = append(d.spare, f.flight)
	}
	f.flight, f.quic = nil, nil
}

func (d *vendor) flowOpened(f *flow, _ *packet, ts int64) {
	if !f.outbound {
		return
	}
	wl := d.e.wl
	if en, ok := wl.MatchAddr(f.peer); ok {
		f.watched = true
		d.raise(f, ts, "", fmt.Sprintf("destination %s is on the watch-list (%s: %s)", f.peer, en.Vendor, en.Note), aggKey{dst: f.peer})
	} else if en, ok := wl.MatchTraffic(protoName(f.proto), f.port, nil, 0); ok {
		f.watched = true
		d.raise(f, ts, "", fmt.Sprintf("%s port %d matches the watch-list (%s: %s)", protoName(f.proto), f.port, en.Vendor, en.Note), aggKey{dst: f.peer, port: f.port})
	}
}

func (d *vendor) cameraSent(f *flow, p *packet, ts int64, _ bool) {
	if !f.outbound {
		return
	}
	if q := p.dns; q != nil {
		d.query(f, q, p.dnsName, ts, "")
	}
	if f.proto == protoTCP && p.flags&(tcpSYN|tcpACK) == tcpSYN {
		f.synSeen, f.isn = true, p.seq
	}
	if len(p.payload) > 0 && !f.inspDone {
		d.inspectPayload(f, p, ts)
	}
}

// dnsQuery checks a DNS query the camera sent over TCP.
func (d *vendor) dnsQuery(f *flow, q *dnsparse.Question, name string, ts int64) {
	d.query(f, q, name, ts, " over TCP")
}

func (d *vendor) query(f *flow, q *dnsparse.Question, name string, ts int64, over string) {
	if en, ok := d.e.wl.MatchDomain(name); ok {
		d.raise(f, ts, name, fmt.Sprintf("DNS query for %s (%s)%s to %s matches watch-list domain %s (%s: %s)", name, qtypeName(q.Type), over, f.peer, en.Domain, en.Vendor, en.Note), aggKey{domain: en.Domain})
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
// request and the TLS ClientHello SNI (reassembled from the first TCP
// segments in any order), and the QUIC Initial SNI (decrypted).
func (d *vendor) inspectPayload(f *flow, p *packet, ts int64) {
	if (f.flight != nil && f.flight.nothingNew(p.seq, len(p.payload))) ||
		(f.proto == protoUDP && f.inspected > 0 && !quicinitial.IsInitial(p.payload)) {
		// A TCP segment before the stream start, past the first flight,
		// or a retransmission (the peer ignores it too), or a datagram
		// that is not a QUIC Initial (junk datagrams first hid a QUIC
		// SNI): it does not use up the segments or datagrams looked at,
		// until the camera has sent maxFlightIgnored bytes on the flow.
		if f.bytes[0] >= maxFlightIgnored {
			f.inspDone = true
			d.release(f)
		}
		return
	}
	f.inspected++
	limit := uint8(maxInspect)
	switch f.proto {
	case protoTCP:
		limit = maxFlightSegments
	case protoUDP:
		limit = maxQUICDatagrams
	}
	if f.inspected >= limit {
		f.inspDone = true
	}
	pl := p.payload
	if !f.watched && f.inspected == 1 && p.dns == nil && !servicePort(f.port) {
		if en, ok := d.e.wl.MatchTraffic(protoName(f.proto), f.port, pl, p.size); ok {
			f.watched = true
			sig := en.PayloadPrefix
			if en.Framing != "" {
				sig += " with " + string(en.Framing) + " framing"
			}
			d.raise(f, ts, "", fmt.Sprintf("%s payload to %s:%d starts with %x, matching the watch-list signature %s (%s: %s)",
				protoName(f.proto), f.peer, f.port, pl[:min(len(pl), 8)], sig, en.Vendor, en.Note), aggKey{dst: f.peer, port: f.port})
		}
	}
	switch f.proto {
	case protoTCP:
		d.inspectTCP(f, p, ts)
	case protoUDP:
		d.inspectQUIC(f, pl, ts)
	}
	if f.inspDone {
		d.release(f)
	}
}

// servicePort reports whether port is a local-network service's whose
// datagrams payload signatures must not be matched against: their first
// bytes are that protocol's (a DNS transaction ID may start 0xF1, like a
// PPPP datagram).
func servicePort(port uint16) bool {
	switch port {
	case 53, 67, 68, 123, 137, 138, 161, 162, 514, 1900, 3702, 5353, 5355:
		return true
	}
	return false
}

// inspectTCP reads the HTTP request head or the TLS ClientHello at the
// start of the camera's byte stream. The common case — the whole of it in
// the first segment, in order — is parsed in place; otherwise the segments
// are reassembled (tcpFlight) until it is complete or a bound is reached.
func (d *vendor) inspectTCP(f *flow, p *packet, ts int64) {
	if f.flight == nil {
		start := p.seq
		if f.synSeen {
			start = f.isn + 1
		}
		if p.seq == start && !d.streamStart(f, p.payload, ts, f.inspDone) {
			f.inspDone = true
			return
		}
		f.flight = d.newFlight(start)
	}
	data := f.flight.add(p.seq, p.payload)
	if len(data) == 0 {
		return
	}
	last := f.inspDone || len(data) >= maxFlight
	if !d.streamStart(f, data, ts, last) {
		f.inspDone = true
	}
}

// streamStart looks for a server name at the start of a client's byte
// stream. It reports whether more bytes are needed (never when last).
func (d *vendor) streamStart(f *flow, data []byte, ts int64, last bool) (more bool) {
	if f.port == 53 && (len(data) == 0 || data[0] < 0x16) {
		// A length prefix, not a TLS record (22) nor an HTTP method:
		// DNS queries are not 5632 bytes long. Engine.dnsOverTCP reads
		// them.
		return false
	}
	if host, ok := httpHost(data); ok {
		d.serverName(f, ts, host, "HTTP request Host header")
		return false
	}
	if !last && (httpHeadIncomplete(data) || len(data) < 3) {
		return true
	}
	if !tlsparse.LooksLikeRecord(data) {
		return false
	}
	ch, err := tlsparse.ParseRecords(data)
	if errors.Is(err, tlsparse.ErrTruncated) && !last {
		return true
	}
	if err == nil && ch.ServerName != "" {
		d.serverName(f, ts, ch.ServerName, "TLS ClientHello SNI")
	}
	return false
}

// inspectQUIC decrypts the client's QUIC Initial packets and reads the
// ClientHello SNI. An Initial that cannot be decrypted or belongs to no
// handshake (garbage, another DCID) does not end the search: later
// datagrams are tried until a ClientHello is read or maxQUICDatagrams.
func (d *vendor) inspectQUIC(f *flow, pl []byte, ts int64) {
	if !quicinitial.IsInitial(pl) {
		return
	}
	if f.quic == nil {
		f.quic = &quicinitial.Assembler{}
	}
	ch, err := f.quic.Add(pl)
	if err != nil && !errors.Is(err, quicinitial.ErrMorePacketsNeeded) && f.quic.Started() {
		// It does not continue the handshake under way: it may start another.
		fresh := &quicinitial.Assembler{}
		if ch2, err2 := fresh.Add(pl); err2 == nil || errors.Is(err2, quicinitial.ErrMorePacketsNeeded) {
			f.quic, ch, err = fresh, ch2, err2
		}
	}
	switch {
	case err == nil:
		f.inspDone = true
		if ch.ServerName != "" {
			d.serverName(f, ts, ch.ServerName, "QUIC Initial (decrypted) ClientHello SNI")
		}
	case errors.Is(err, quicinitial.ErrMorePacketsNeeded):
	default:
		if !f.quic.Started() {
			f.quic = nil // nothing learnt from it: start afresh with the next one
		}
	}
}

// serverName checks a server name the camera asked for (SNI, Host).
func (d *vendor) serverName(f *flow, ts int64, sni, where string) {
	d.e.m.SNIs.Add(1)
	d.e.detectors[unexpectedDetector.index].(*unexpected).serverName(f, ts, sni, where)
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

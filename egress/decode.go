package egress

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/cordon-vms/cordon/egress/dnsparse"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// packet is the part of a decoded packet the engine uses.
type packet struct {
	src, dst   netip.Addr
	proto      uint8
	sport      uint16
	dport      uint16
	flags      uint8  // TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10)
	seq        uint32 // TCP sequence number
	icmpType   uint8
	icmpCode   uint8
	ipLen      uint64 // IP datagram length from the header (not the captured length)
	payload    []byte // transport payload as captured (may be truncated by the snap length)
	size       int    // UDP payload length from the header (0 for other protocols)
	fromRecord bool
	dns        *dnsparse.Question // the DNS query it carries (set by Engine.cameraSent)
	dnsName    string             // dns.Name as a string, made once for the detectors that keep it
}

// IP protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

func isICMP(proto uint8) bool { return proto == protoICMP || proto == protoICMPv6 }

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// dropReason says why a packet was not decoded; every packet that is not
// is counted by its reason and link type (Metrics.Undecoded).
type dropReason uint8

const (
	decoded       dropReason = iota
	dropLinkType             // a link type cordon does not decode
	dropNotIP                // a frame that carries no IP (ARP, LLDP, STP, ...)
	dropMalformed            // a truncated or invalid header
	dropFragment             // an IP fragment held until its datagram is complete
	dropTunnel               // encapsulation nested deeper than maxTunnelDepth
	linkControl              // not a drop: a link-layer control frame (ARP, LLDP, STP, ...), understood, not IP
	numDropReasons
)

// dropNames are the reasons as they appear in --stats and metric labels.
var dropNames = [numDropReasons]string{"", "link-type", "not-ip", "malformed", "fragment", "tunnel-depth", "link-control"}

func (r dropReason) String() string { return dropNames[r] }

// Decoding bounds.
const (
	maxTunnelDepth = 3 // GRE/VXLAN headers unwrapped per packet
	maxExtHeaders  = 8 // IPv6 extension headers walked per packet
)

// IPv6 extension headers (RFC 8200 section 4, RFC 4302, RFC 6275, RFC 7401, RFC 5533).
const (
	ip6HopByHop  = 0
	ip6Routing   = 43
	ip6Fragment  = 44
	ip6AH        = 51
	ip6NoNext    = 59
	ip6DestOpts  = 60
	ip6Mobility  = 135
	ip6HIP       = 139
	ip6Shim6     = 140
	protoGRE     = 47
	etherIPv4    = 0x0800
	etherIPv6    = 0x86dd
	etherTEB     = 0x6558 // transparent Ethernet bridging (GRE-TEB, NVGRE)
	etherERSPAN2 = 0x88be // ERSPAN type I and II
	etherERSPAN3 = 0x22eb // ERSPAN type III
)

// decoder decodes link layers and IP headers with gopacket's
// DecodingLayerParser into preallocated layers, then walks IPv6 extension
// headers, reassembles IP fragments and unwraps GRE, GRE-TEB/ERSPAN and
// VXLAN itself, so that the flow it yields is the innermost one. There is
// no allocation per packet outside fragment reassembly.
type decoder struct {
	eth  layers.Ethernet
	vlan layers.Dot1Q
	sll  layers.LinuxSLL
	sll2 layers.LinuxSLL2
	loop layers.Loopback
	ip4  layers.IPv4
	ip6  layers.IPv6
	tcp  layers.TCP
	udp  layers.UDP

	pEth, pSLL, pSLL2, pLoop, pIP4, pIP6 *gopacket.DecodingLayerParser
	types                                []gopacket.LayerType

	frags *reassembler
	ts    int64    // time of the packet being decoded, Unix ns
	vxlan []uint16 // the UDP ports VXLAN is decoded on (Policy.Decode)

	// tunneled says a packet decoded was a tunnel (GRE, VXLAN, IP in IP)
	// and outer is its outermost header (no payload): a flow of its own,
	// so that a camera cannot hide what it sends by wrapping it. Whoever
	// reads it clears it (Engine.handlePacket).
	tunneled bool
	outer    packet
}

func newDecoder(m *Metrics, vxlanPorts []uint16) *decoder {
	d := &decoder{types: make([]gopacket.LayerType, 0, 8), frags: newReassembler(m), vxlan: vxlanPorts}
	all := []gopacket.DecodingLayer{&d.eth, &d.vlan, &d.sll, &d.sll2, &d.loop, &d.ip4, &d.ip6}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first, all...)
		p.IgnoreUnsupported = true
		return p
	}
	d.pEth = mk(layers.LayerTypeEthernet)
	d.pSLL = mk(layers.LayerTypeLinuxSLL)
	d.pSLL2 = mk(layers.LayerTypeLinuxSLL2)
	d.pLoop = mk(layers.LayerTypeLoopback)
	d.pIP4 = mk(layers.LayerTypeIPv4)
	d.pIP6 = mk(layers.LayerTypeIPv6)
	return d
}

// decode fills p from a link-layer frame captured at ts, or says why it
// could not.
func (d *decoder) decode(data []byte, lt layers.LinkType, ts int64, p *packet) dropReason {
	*p = packet{}
	d.ts = ts
	var parser *gopacket.DecodingLayerParser
	switch lt {
	case layers.LinkTypeEthernet:
		if r, ok := d.plainIPv4(data, p); ok {
			return r
		}
		parser = d.pEth
	case layers.LinkTypeLinuxSLL:
		parser = d.pSLL
	case layers.LinkTypeLinuxSLL2:
		parser = d.pSLL2
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		parser = d.pLoop
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12:
		parser = d.rawIP(data)
		if parser == nil {
			return dropNotIP
		}
	default:
		return dropLinkType
	}
	return d.layers(parser, data, p, 0)
}

// rawIP picks the parser of a raw IP packet by its version, nil if it is
// neither IPv4 nor IPv6.
func (d *decoder) rawIP(data []byte) *gopacket.DecodingLayerParser {
	if len(data) == 0 {
		return nil
	}
	switch data[0] >> 4 {
	case 4:
		return d.pIP4
	case 6:
		return d.pIP6
	}
	return nil
}

// layers decodes data from parser's first layer down to the IP header and
// goes on from there; depth counts the tunnels already unwrapped.
func (d *decoder) layers(parser *gopacket.DecodingLayerParser, data []byte, p *packet, depth int) dropReason {
	d.types = d.types[:0]
	err := parser.DecodeLayers(data, &d.types)
	if n := len(d.types); n > 1 && depth == 0 && isIPLayer(d.types[n-1]) && isIPLayer(d.types[n-2]) {
		d.ipInIP(data)
	}
	if n := len(d.types); n > 0 {
		switch d.types[n-1] {
		case layers.LayerTypeIPv4:
			return d.ipv4(p, depth)
		case layers.LayerTypeIPv6:
			return d.ipv6(p, depth)
		}
	}
	if err != nil {
		return dropMalformed
	}
	if d.isLinkControl() {
		return linkControl
	}
	return dropNotIP
}

// EtherTypes of link-layer control protocols.
const (
	etherARP    = 0x0806
	etherRARP   = 0x8035
	etherPause  = 0x8808 // Ethernet flow control
	etherSlow   = 0x8809 // LACP, marker, link OAM
	etherEAPOL  = 0x888e
	etherLLDP   = 0x88cc
	etherMRP    = 0x88e3 // media redundancy (IEC 62439-2)
	etherPTP    = 0x88f7
	etherCFM    = 0x8902 // connectivity fault management (802.1ag)
	etherLoop   = 0x9000 // configuration testing protocol (loopback keepalives)
	sllProtoLLC = 0x0004 // Linux cooked captures: an 802.2 LLC frame
)

// isLinkControl says the last layer the parser decoded (d.types) carries
// a link-layer control protocol cordon recognises: ARP and RARP, LLDP,
// LACP and the other slow protocols, flow control, EAPOL, PTP, CFM, MRP,
// loopback keepalives, and in 802.2 LLC spanning tree (STP, RSTP, MSTP)
// and Cisco's SNAP protocols (CDP, VTP, DTP, PVST+).
func (d *decoder) isLinkControl() bool {
	if len(d.types) == 0 {
		return false
	}
	var et layers.EthernetType
	var payload []byte
	switch d.types[len(d.types)-1] {
	case layers.LayerTypeEthernet:
		et, payload = d.eth.EthernetType, d.eth.Payload
	case layers.LayerTypeDot1Q:
		et, payload = d.vlan.Type, d.vlan.Payload
	case layers.LayerTypeLinuxSLL:
		et, payload = d.sll.EthernetType, d.sll.Payload
	case layers.LayerTypeLinuxSLL2:
		et, payload = d.sll2.ProtocolType, d.sll2.Payload
	default:
		return false
	}
	switch et {
	case etherARP, etherRARP, etherPause, etherSlow, etherEAPOL, etherLLDP, etherMRP, etherPTP, etherCFM, etherLoop:
		return true
	case layers.EthernetTypeLLC, sllProtoLLC:
		stp := len(payload) >= 3 && payload[0] == 0x42 && payload[1] == 0x42
		cisco := len(payload) >= 8 && string(payload[:6]) == "\xaa\xaa\x03\x00\x00\x0c"
		return stp || cisco
	}
	return false
}

func (d *decoder) ipv4(p *packet, depth int) dropReason {
	ip := &d.ip4
	p.src, p.dst = addr4(ip.SrcIP), addr4(ip.DstIP)
	p.proto, p.ipLen = uint8(ip.Protocol), uint64(ip.Length)
	payload := ip.Payload
	if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
		k := fragKey{src: p.src, dst: p.dst, id: uint32(ip.Id), proto: p.proto}
		full, r := d.frags.add(k, int(ip.FragOffset)*8, ip.Flags&layers.IPv4MoreFragments != 0, payload, d.ts)
		if r != decoded {
			return r
		}
		payload = full
		p.ipLen = uint64(ip.IHL)*4 + uint64(len(full))
	}
	return d.transport(p, payload, depth)
}

// plainIPv4 decodes the common frame without the parser: Ethernet II
// (no VLAN tag) carrying a whole, unfragmented IPv4 packet without options
// of TCP, UDP or ICMP.
// ok is false for any other frame, left to the parser (which reads these
// the same way).
func (d *decoder) plainIPv4(data []byte, p *packet) (r dropReason, ok bool) {
	if len(data) < 14+20 || data[12] != 0x08 || data[13] != 0x00 || data[14] != 0x45 {
		return 0, false
	}
	ip := data[14:]
	n := int(binary.BigEndian.Uint16(ip[2:4]))
	if n < 20 || n > len(ip) || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 { // MF flag, fragment offset
		return 0, false
	}
	switch ip[9] {
	case protoTCP, protoUDP, protoICMP: // not IP in IP (4, 41), which the parser unwraps
	default:
		return 0, false
	}
	p.src, p.dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	p.proto, p.ipLen = ip[9], uint64(n)
	return d.transport(p, ip[20:n], 0), true
}

// ipv6 walks the extension headers to the transport header, reassembling
// fragments on the way.
func (d *decoder) ipv6(p *packet, depth int) dropReason {
	ip := &d.ip6
	p.src, p.dst = addr16(ip.SrcIP), addr16(ip.DstIP)
	p.ipLen = 40 + uint64(ip.Length)
	next, payload := uint8(ip.NextHeader), ip.Payload
	if ip.HopByHop != nil { // gopacket decodes (and strips) Hop-by-Hop itself
		next = uint8(ip.HopByHop.NextHeader)
	}
	for range maxExtHeaders {
		switch next {
		case ip6HopByHop, ip6Routing, ip6DestOpts, ip6Mobility, ip6HIP, ip6Shim6:
			if len(payload) < 8 {
				return dropMalformed
			}
			n := (int(payload[1]) + 1) * 8
			if n > len(payload) {
				return dropMalformed
			}
			next, payload = payload[0], payload[n:]
		case ip6AH:
			if len(payload) < 8 {
				return dropMalformed
			}
			n := (int(payload[1]) + 2) * 4
			if n > len(payload) {
				return dropMalformed
			}
			next, payload = payload[0], payload[n:]
		case ip6Fragment:
			if len(payload) < 8 {
				return dropMalformed
			}
			nh := payload[0]
			off := int(binary.BigEndian.Uint16(payload[2:4]) &^ 7)
			more := payload[3]&1 != 0
			if off == 0 && !more { // an atomic fragment (RFC 6946): the whole datagram
				next, payload = nh, payload[8:]
				continue
			}
			k := fragKey{src: p.src, dst: p.dst, id: binary.BigEndian.Uint32(payload[4:8]), proto: nh, v6: true}
			full, r := d.frags.add(k, off, more, payload[8:], d.ts)
			if r != decoded {
				return r
			}
			next, payload = nh, full
			p.ipLen = 40 + uint64(len(full))
		case ip6NoNext:
			p.proto = ip6NoNext
			return decoded
		default:
			p.proto = next
			return d.transport(p, payload, depth)
		}
	}
	return dropMalformed
}

// transport decodes the transport header of p (its proto set) from
// payload, unwrapping GRE and VXLAN.
func (d *decoder) transport(p *packet, payload []byte, depth int) dropReason {
	switch p.proto {
	case protoTCP:
		if d.tcp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback) != nil {
			return dropMalformed
		}
		p.sport, p.dport = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
		p.flags, p.seq = tcpFlags(&d.tcp), d.tcp.Seq
		p.payload = d.tcp.Payload
	case protoUDP:
		if d.udp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback) != nil {
			return dropMalformed
		}
		p.sport, p.dport = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
		p.payload = d.udp.Payload
		p.size = max(int(d.udp.Length)-8, 0)
		// The first byte rules out RTP (0x80) and most other datagrams
		// before the port list is walked.
		if len(p.payload) >= 8+14 && p.payload[0]&0x7f == 0x08 && isVXLAN(p.payload) && slices.Contains(d.vxlan, p.dport) {
			return d.tunnel(d.pEth, p.payload[8:], p, depth)
		}
	case protoICMP, protoICMPv6:
		if len(payload) < 4 {
			return dropMalformed
		}
		p.icmpType, p.icmpCode = payload[0], payload[1]
	case protoGRE:
		return d.gre(p, payload, depth)
	}
	return decoded
}

// isVXLAN says b, a UDP payload of at least 22 bytes, is a valid VXLAN
// header followed by an Ethernet II frame (an EtherType, not an 802.3
// length). The header is RFC 7348's (flags 0x08, the I bit alone; the
// reserved fields zero) or VXLAN-GBP's (draft-smith-vxlan-group-policy, as
// Linux and Open vSwitch send it: the G bit too, the D and A bits, and a
// group policy ID where RFC 7348 has zeros). Anything else on a VXLAN port
// is left an ordinary UDP datagram.
func isVXLAN(b []byte) bool {
	switch b[0] {
	case 0x08:
		if b[1]|b[2]|b[3] != 0 {
			return false
		}
	case 0x88:
		if b[1]&^0x48 != 0 {
			return false
		}
	default:
		return false
	}
	return b[7] == 0 && binary.BigEndian.Uint16(b[8+12:]) >= 0x0600
}

// gre unwraps GRE (RFC 2784, RFC 2890) carrying IPv4, IPv6, Ethernet
// (GRE-TEB) or ERSPAN. Other GRE (PPTP's version 1, routing, unknown
// payloads) stays a flow of protocol 47 between the tunnel ends.
func (d *decoder) gre(p *packet, b []byte, depth int) dropReason {
	if len(b) < 4 {
		return dropMalformed
	}
	flags := binary.BigEndian.Uint16(b[0:2])
	if flags&0x7 != 0 || flags&0x4000 != 0 { // version 1 (PPTP), routing present
		return decoded
	}
	n := 4
	if flags&0x8000 != 0 { // checksum
		n += 4
	}
	if flags&0x2000 != 0 { // key
		n += 4
	}
	seq := flags&0x1000 != 0
	if seq {
		n += 4
	}
	if len(b) < n {
		return dropMalformed
	}
	inner := b[n:]
	switch binary.BigEndian.Uint16(b[2:4]) {
	case etherIPv4:
		return d.tunnel(d.pIP4, inner, p, depth)
	case etherIPv6:
		return d.tunnel(d.pIP6, inner, p, depth)
	case etherTEB:
		return d.tunnel(d.pEth, inner, p, depth)
	case etherERSPAN2:
		if seq { // type II: an 8-byte ERSPAN header (type I has none)
			if len(inner) < 8 {
				return dropMalformed
			}
			inner = inner[8:]
		}
		return d.tunnel(d.pEth, inner, p, depth)
	case etherERSPAN3:
		// Type III: 12 bytes, and an 8-byte platform subheader when the
		// O flag (the last bit) is set.
		if len(inner) < 12 {
			return dropMalformed
		}
		hl := 12
		if inner[11]&1 != 0 {
			hl += 8
		}
		if len(inner) < hl {
			return dropMalformed
		}
		return d.tunnel(d.pEth, inner[hl:], p, depth)
	}
	return decoded
}

// tunnel decodes the packet a tunnel carries in place of p.
func (d *decoder) tunnel(parser *gopacket.DecodingLayerParser, inner []byte, p *packet, depth int) dropReason {
	if depth >= maxTunnelDepth {
		return dropTunnel
	}
	if depth == 0 {
		d.outer, d.tunneled = *p, true
		d.outer.payload = nil
	}
	*p = packet{}
	return d.layers(parser, inner, p, depth+1)
}

func isIPLayer(t gopacket.LayerType) bool {
	return t == layers.LayerTypeIPv4 || t == layers.LayerTypeIPv6
}

// ipInIP records as d.outer the outermost IP header of an IP-in-IP frame
// (IPv4 or IPv6 in IPv4 or IPv6), which the parser decoded past: it
// starts after the link-layer headers of d.types.
func (d *decoder) ipInIP(data []byte) {
	off := 0
link:
	for _, t := range d.types {
		switch t {
		case layers.LayerTypeEthernet:
			off += 14
		case layers.LayerTypeDot1Q, layers.LayerTypeLoopback:
			off += 4
		case layers.LayerTypeLinuxSLL:
			off += 16
		case layers.LayerTypeLinuxSLL2:
			off += 20
		default:
			break link
		}
	}
	if off >= len(data) {
		return
	}
	h := data[off:]
	o := packet{}
	switch h[0] >> 4 {
	case 4:
		if len(h) < 20 {
			return
		}
		o.src, o.dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
		o.proto, o.ipLen = h[9], uint64(binary.BigEndian.Uint16(h[2:4]))
	case 6:
		if len(h) < 40 {
			return
		}
		o.src, o.dst = addr16(h[8:24]), addr16(h[24:40])
		o.proto, o.ipLen = h[6], 40+uint64(binary.BigEndian.Uint16(h[4:6]))
	default:
		return
	}
	d.outer, d.tunneled = o, true
}

func addr4(b []byte) netip.Addr {
	if len(b) != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(b))
}

func addr16(b []byte) netip.Addr {
	if len(b) != 16 {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(b)).Unmap()
}

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	if t.FIN {
		f |= tcpFIN
	}
	if t.SYN {
		f |= tcpSYN
	}
	if t.RST {
		f |= tcpRST
	}
	if t.PSH {
		f |= 0x08
	}
	if t.ACK {
		f |= tcpACK
	}
	return f
}

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMP:
		return "icmp"
	case protoICMPv6:
		return "icmpv6"
	case 0:
		return ""
	}
	return "ip-" + itoa(int(p))
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

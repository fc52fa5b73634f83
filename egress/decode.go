package egress

import (
	"errors"
	"net/netip"

	"github.com/cordon-vms/cordon/egress/dnsparse"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	errNotIP        = errors.New("egress: not an IP packet")
	errLinkType     = errors.New("egress: unsupported link type")
	errNoTransport  = errors.New("egress: transport header missing")
	errNotSupported = errors.New("egress: unsupported")
)

// packet is the part of a decoded packet the engine uses.
type packet struct {
	src, dst   netip.Addr
	proto      uint8
	sport      uint16
	dport      uint16
	flags      uint8 // TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10)
	icmpType   uint8
	ipLen      uint64 // IP datagram length from the header (not the captured length)
	payload    []byte // transport payload as captured (may be truncated by the snap length)
	fromRecord bool
	dns        *dnsparse.Question // the DNS query it carries (set by Engine.cameraSent)
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

// decoder decodes with gopacket's DecodingLayerParser into preallocated
// layers: no allocation per packet.
type decoder struct {
	eth   layers.Ethernet
	dot1q layers.Dot1Q
	sll   layers.LinuxSLL
	loop  layers.Loopback
	ip4   layers.IPv4
	ip6   layers.IPv6
	tcp   layers.TCP
	udp   layers.UDP
	icmp4 layers.ICMPv4
	icmp6 layers.ICMPv6
	pl    gopacket.Payload

	pEth, pSLL, pLoop, pIP4, pIP6 *gopacket.DecodingLayerParser
	types                         []gopacket.LayerType
}

func newDecoder() *decoder {
	d := &decoder{types: make([]gopacket.LayerType, 0, 8)}
	all := []gopacket.DecodingLayer{&d.eth, &d.dot1q, &d.sll, &d.loop, &d.ip4, &d.ip6, &d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.pl}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first, all...)
		p.IgnoreUnsupported = true
		return p
	}
	d.pEth = mk(layers.LayerTypeEthernet)
	d.pSLL = mk(layers.LayerTypeLinuxSLL)
	d.pLoop = mk(layers.LayerTypeLoopback)
	d.pIP4 = mk(layers.LayerTypeIPv4)
	d.pIP6 = mk(layers.LayerTypeIPv6)
	return d
}

// decode fills p from a link-layer frame.
func (d *decoder) decode(data []byte, lt layers.LinkType, p *packet) error {
	var parser *gopacket.DecodingLayerParser
	switch lt {
	case layers.LinkTypeEthernet:
		parser = d.pEth
	case layers.LinkTypeLinuxSLL:
		parser = d.pSLL
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		parser = d.pLoop
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12: // 12: raw IP on some BSDs
		if len(data) == 0 {
			return errNotIP
		}
		if data[0]>>4 == 6 {
			parser = d.pIP6
		} else {
			parser = d.pIP4
		}
	default:
		return errLinkType
	}
	d.types = d.types[:0]
	err := parser.DecodeLayers(data, &d.types)
	*p = packet{}
	haveIP, haveL4 := false, false
	for _, t := range d.types {
		switch t {
		case layers.LayerTypeIPv4:
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				// Fragments: count the bytes, skip transport (only the first has ports).
				p.src, p.dst = addr4(d.ip4.SrcIP), addr4(d.ip4.DstIP)
				p.proto, p.ipLen = uint8(d.ip4.Protocol), uint64(d.ip4.Length)
				return errNotSupported
			}
			p.src, p.dst = addr4(d.ip4.SrcIP), addr4(d.ip4.DstIP)
			p.proto, p.ipLen = uint8(d.ip4.Protocol), uint64(d.ip4.Length)
			haveIP = true
		case layers.LayerTypeIPv6:
			p.src, p.dst = addr16(d.ip6.SrcIP), addr16(d.ip6.DstIP)
			p.proto, p.ipLen = uint8(d.ip6.NextHeader), 40+uint64(d.ip6.Length)
			haveIP = true
		case layers.LayerTypeTCP:
			p.sport, p.dport = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			p.flags = tcpFlags(&d.tcp)
			p.payload = d.tcp.Payload
			haveL4 = true
		case layers.LayerTypeUDP:
			p.sport, p.dport = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
			p.payload = d.udp.Payload
			haveL4 = true
		case layers.LayerTypeICMPv4:
			p.icmpType = d.icmp4.TypeCode.Type()
			haveL4 = true
		case layers.LayerTypeICMPv6:
			p.icmpType = d.icmp6.TypeCode.Type()
			haveL4 = true
		}
	}
	if !haveIP {
		if err != nil {
			return err
		}
		return errNotIP
	}
	if !haveL4 && (p.proto == protoTCP || p.proto == protoUDP) {
		if err != nil {
			return err
		}
		return errNoTransport
	}
	return nil
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

package pcapgen

import (
	"encoding/binary"
	"io"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Addresses of the encapsulation capture (egress/testdata/encap.yml).
var (
	Cam6      = netip.MustParseAddr("fd00:50::10") // an IPv6 camera
	Resolver6 = netip.MustParseAddr("fd00:50::1")  // its resolver, allowed
	tunnelA   = netip.MustParseAddr("10.99.0.1")   // ends of the mirror tunnels
	tunnelB   = netip.MustParseAddr("10.99.0.2")
)

// LinkTypeUser0 is a link type cordon does not decode (DLT_USER0).
const LinkTypeUser0 layers.LinkType = 147

// EncapCase is one packet (or run of packets) of the encapsulation capture:
// a DNS query for Name from a camera to its allowed resolver, carried in a
// way cordon must see through. The watch-list names every Name's domain,
// so each case raises one vendor-cloud alert for Name.
type EncapCase struct {
	Name   string // the query name, unique to the case
	Iface  int    // interface of the pcapng: index into EncapLinkTypes
	Frames [][]byte
}

// EncapLinkTypes are the interfaces of the encapsulation capture, in order.
var EncapLinkTypes = []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2, layers.LinkTypeLinuxSLL, layers.LinkTypeRaw, LinkTypeUser0}

// EncapCases returns the cases of the encapsulation capture.
func EncapCases() []EncapCase {
	q := func(id uint16, name string) []byte { return DNSQuery(id, name, 1) }
	dns4 := func(id uint16, name string) []byte {
		return ip4(CamA, Gateway, layers.IPProtocolUDP, id, 0, false, udp(40000+id, 53, q(id, name)))
	}
	var cs []EncapCase
	add := func(name string, iface int, frames ...[]byte) {
		cs = append(cs, EncapCase{Name: name, Iface: iface, Frames: frames})
	}
	add("vlan.secu100.net", 0, ether(0x8100, append([]byte{0, 50, 0x08, 0x00}, dns4(1, "vlan.secu100.net")...)))
	add("sll2.secu100.net", 1, sll2(0x0800, dns4(2, "sll2.secu100.net")))
	add("sll.secu100.net", 2, sll(0x0800, dns4(3, "sll.secu100.net")))
	add("raw.secu100.net", 3, dns4(4, "raw.secu100.net"))

	mirror := func(proto layers.IPProtocol, payload []byte) []byte {
		return ether(0x0800, ip4(tunnelA, tunnelB, proto, 900, 0, false, payload))
	}
	// GRE carrying IPv4 (RFC 2784: flags 0, type 0x0800).
	add("gre.secu100.net", 0, mirror(layers.IPProtocolGRE, append([]byte{0, 0, 0x08, 0x00}, dns4(5, "gre.secu100.net")...)))
	// GRE-TEB with a key (RFC 2890): the mirror carries whole Ethernet frames.
	add("teb.secu100.net", 0, mirror(layers.IPProtocolGRE, append([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0, 7}, ether(0x0800, dns4(6, "teb.secu100.net"))...)))
	// ERSPAN type II: GRE with a sequence number, an 8-byte ERSPAN header.
	erspan2 := []byte{0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0x01, 0, 0, 0, 0, 0, 0}
	add("erspan2.secu100.net", 0, mirror(layers.IPProtocolGRE, append(erspan2, ether(0x0800, dns4(7, "erspan2.secu100.net"))...)))
	// ERSPAN type III: a 12-byte header with the O flag clear.
	erspan3 := []byte{0x10, 0, 0x22, 0xeb, 0, 0, 0, 1, 0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	add("erspan3.secu100.net", 0, mirror(layers.IPProtocolGRE, append(erspan3, ether(0x0800, dns4(8, "erspan3.secu100.net"))...)))
	// VXLAN (RFC 7348) on UDP 4789, VNI 50.
	vx := append([]byte{0x08, 0, 0, 0, 0, 0, 50, 0}, ether(0x0800, dns4(9, "vxlan.secu100.net"))...)
	add("vxlan.secu100.net", 0, mirror(layers.IPProtocolUDP, udp(50000, 4789, vx)))

	// IPv4 fragments of one query: in order, reversed, and with an
	// overlapping copy of the middle fragment that carries other bytes
	// (the first copy wins).
	frag := func(id uint16, name string) [][]byte {
		d := udp(40100+id, 53, q(id, name))
		n := len(d)
		return [][]byte{
			ether(0x0800, ip4(CamA, Gateway, layers.IPProtocolUDP, id, 0, true, d[:16])),
			ether(0x0800, ip4(CamA, Gateway, layers.IPProtocolUDP, id, 16, true, d[16:32])),
			ether(0x0800, ip4(CamA, Gateway, layers.IPProtocolUDP, id, 32, false, d[32:n])),
		}
	}
	add("frag-in-order.secu100.net", 0, frag(10, "frag-in-order.secu100.net")...)
	rev := frag(11, "frag-reversed.secu100.net")
	add("frag-reversed.secu100.net", 0, rev[2], rev[1], rev[0])
	ov := frag(12, "frag-overlap.secu100.net")
	bogus := make([]byte, 16)
	for i := range bogus {
		bogus[i] = 'x'
	}
	add("frag-overlap.secu100.net", 0, ov[1], ether(0x0800, ip4(CamA, Gateway, layers.IPProtocolUDP, 12, 16, true, bogus)), ov[0], ov[0], ov[2])

	// IPv6 with Hop-by-Hop and Destination Options headers before UDP.
	q6 := func(id uint16, name string) []byte { return udp6(40200+id, 53, q(id, name)) }
	hbh := []byte{60, 0, 5, 2, 0, 0, 1, 0}                         // next: Destination Options; Router Alert, PadN
	dst := []byte{byte(layers.IPProtocolUDP), 0, 1, 4, 0, 0, 0, 0} // next: UDP; PadN
	add("ip6-ext.secu100.net", 0, ether(0x86dd, ip6(0, append(append(hbh, dst...), q6(13, "ip6-ext.secu100.net")...))))
	// IPv6 Fragment headers: two fragments, the second first.
	d6 := q6(14, "ip6-frag.secu100.net")
	fh := func(off int, more bool) []byte {
		b := []byte{byte(layers.IPProtocolUDP), 0, 0, 0, 0, 0, 0x12, 0x34}
		v := uint16(off)
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(b[2:], v)
		return b
	}
	add("ip6-frag.secu100.net", 0,
		ether(0x86dd, ip6(44, append(fh(24, false), d6[24:]...))),
		ether(0x86dd, ip6(44, append(fh(0, true), d6[:24]...))))
	return cs
}

// Encap writes the encapsulation capture: a pcapng with one interface per
// EncapLinkTypes entry, the EncapCases two minutes apart (so that each
// raises its own alert), then one ARP request (not IP) and
// one packet of the undecoded link type, which cordon must count.
func Encap(out io.Writer) error {
	w, err := pcapgo.NewNgWriterInterface(out, pcapgo.NgInterface{Name: "eth0", LinkType: EncapLinkTypes[0], SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		return err
	}
	for i, lt := range EncapLinkTypes[1:] {
		if _, err := w.AddInterface(pcapgo.NgInterface{Name: "if" + string(rune('1'+i)), LinkType: lt, SnapLength: 65535}); err != nil {
			return err
		}
	}
	now := Start
	write := func(iface int, data []byte) error {
		now = now.Add(10e6)
		return w.WritePacket(gopacket.CaptureInfo{Timestamp: now, CaptureLength: len(data), Length: len(data), InterfaceIndex: iface}, data)
	}
	for _, c := range EncapCases() {
		now = now.Add(2 * time.Minute) // each case in its own aggregation window
		for _, f := range c.Frames {
			if err := write(c.Iface, f); err != nil {
				return err
			}
		}
	}
	arp := ether(0x0806, []byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 192, 168, 50, 10, 192, 168, 50, 10, 0, 0, 0, 0, 0, 0, 192, 168, 50, 1})
	if err := write(0, arp); err != nil {
		return err
	}
	if err := write(4, []byte("user0 frame")); err != nil {
		return err
	}
	return w.Flush()
}

func ether(etherType uint16, payload []byte) []byte {
	b := []byte{0x02, 0, 192, 168, 50, 1, 0x02, 0, 192, 168, 50, 10, 0, 0}
	binary.BigEndian.PutUint16(b[12:], etherType)
	return append(b, payload...)
}

// sll2 is a Linux cooked capture v2 header (what tcpdump -i any writes).
func sll2(proto uint16, payload []byte) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], proto)
	binary.BigEndian.PutUint32(b[4:], 2) // interface index
	binary.BigEndian.PutUint16(b[8:], 1) // ARPHRD_ETHER
	b[10] = 4                            // sent by us
	b[11] = 6
	copy(b[12:], []byte{0x02, 0, 192, 168, 50, 10})
	return append(b, payload...)
}

// sll is a Linux cooked capture v1 header.
func sll(proto uint16, payload []byte) []byte {
	b := []byte{0, 4, 0, 1, 0, 6, 0x02, 0, 192, 168, 50, 10, 0, 0}
	return append(binary.BigEndian.AppendUint16(b, proto), payload...)
}

// ip4 is an IPv4 header (with its checksum) and payload; off is the
// fragment offset in bytes.
func ip4(src, dst netip.Addr, proto layers.IPProtocol, id uint16, off int, more bool, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], id)
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], fo)
	b[8], b[9] = 64, byte(proto)
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return append(b, payload...)
}

// udp is a UDP header and payload, its checksum left 0 (none, for IPv4).
func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// udp6 is a UDP datagram from Cam6 to Resolver6 with its checksum (which
// IPv6 requires).
func udp6(sport, dport uint16, payload []byte) []byte {
	b := udp(sport, dport, payload)
	var sum uint32
	add := func(p []byte) {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(p[i:]))
		}
		if len(p)%2 == 1 {
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	s, d := Cam6.As16(), Resolver6.As16()
	add(s[:])
	add(d[:])
	sum += uint32(len(b)) + uint32(layers.IPProtocolUDP)
	add(b)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[6:], ^uint16(sum))
	return b
}

// ip6 is an IPv6 header from Cam6 to Resolver6 with next header next.
func ip6(next uint8, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = next, 64
	s, d := Cam6.As16(), Resolver6.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

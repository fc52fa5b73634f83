package netflow_test

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/cordon-vms/cordon/egress"
)

// plantedPacket is one crafted packet of a test pcap.
type plantedPacket struct {
	at      time.Duration // after the pcap's start
	proto   uint8
	src     netip.AddrPort
	dst     netip.AddrPort
	payload int
	flags   string // TCP flags: "S", "SA", "A", "PA", "FA"
}

// plantedStart is the first packet's time in the crafted pcaps.
var plantedStart = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// ipLen is the IP-layer length of a packet (what NetFlow counts as octets):
// softflowd counts the captured frame less its Ethernet header, so frames
// padded to Ethernet's 60-byte minimum count 46 bytes.
func (p plantedPacket) ipLen() uint64 {
	return max(p.rawIPLen(), 46)
}

func (p plantedPacket) rawIPLen() uint64 {
	n := p.payload
	switch p.proto {
	case 6:
		n += 20
	case 17:
		n += 8
	case 1, 58:
		n += 8
	}
	if p.src.Addr().Is4() {
		n += 20
	} else {
		n += 40
	}
	return uint64(n)
}

// serialize builds the Ethernet frame for p.
func (p plantedPacket) serialize(t testing.TB) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var ls []gopacket.SerializableLayer
	var netl gopacket.NetworkLayer
	if p.src.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocol(p.proto),
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice()}
		ls, netl = append(ls, eth, ip), ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(p.proto),
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice()}
		ls, netl = append(ls, eth, ip), ip
	}
	switch p.proto {
	case 6:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()), Window: 65535, Seq: 1000}
		for _, f := range p.flags {
			switch f {
			case 'S':
				tcp.SYN = true
			case 'A':
				tcp.ACK = true
			case 'P':
				tcp.PSH = true
			case 'F':
				tcp.FIN = true
			case 'R':
				tcp.RST = true
			}
		}
		_ = tcp.SetNetworkLayerForChecksum(netl)
		ls = append(ls, tcp)
	case 17:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
		_ = udp.SetNetworkLayerForChecksum(netl)
		ls = append(ls, udp)
	case 1:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1})
	}
	ls = append(ls, gopacket.Payload(bytes.Repeat([]byte{'x'}, p.payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writePcap writes the packets (in time order) to a pcap in dir.
func writePcap(t testing.TB, dir string, pkts []plantedPacket) string {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		data := p.serialize(t)
		ci := gopacket.CaptureInfo{Timestamp: plantedStart.Add(p.at), CaptureLength: len(data), Length: len(data)}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "planted.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// expectedFlows sums the packets into unidirectional flows, as NetFlow
// exporters report them.
func expectedFlows(pkts []plantedPacket) map[egress.FlowKey]egress.FlowRecord {
	m := map[egress.FlowKey]egress.FlowRecord{}
	for _, p := range pkts {
		k := egress.FlowKey{Proto: p.proto, Src: p.src, Dst: p.dst}
		if p.proto == 1 {
			k.Src = netip.AddrPortFrom(p.src.Addr(), 0)
			k.Dst = netip.AddrPortFrom(p.dst.Addr(), 0)
		}
		r := m[k]
		r.Key = k
		ts := plantedStart.Add(p.at)
		if r.Start.IsZero() {
			r.Start = ts
		}
		r.End = ts
		r.Packets++
		r.Bytes += p.ipLen()
		m[k] = r
	}
	return m
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// plantedTraffic is a small camera-network capture: a UDP 8800 P2P
// heartbeat, a TCP upload with its replies, an IPv6 UDP 9999 exchange and
// an ICMP echo.
func plantedTraffic() []plantedPacket {
	var pkts []plantedPacket
	cam := "192.168.50.10"
	for i := range 5 {
		pkts = append(pkts, plantedPacket{at: time.Duration(i) * 10 * time.Second, proto: 17,
			src: ap(cam + ":40000"), dst: ap("203.0.113.5:8800"), payload: 100})
	}
	tcp := []struct {
		out   bool
		flags string
		n     int
	}{{true, "S", 0}, {false, "SA", 0}, {true, "A", 0}, {true, "PA", 1400}, {true, "PA", 1400}, {false, "A", 0}, {true, "PA", 700}, {true, "FA", 0}, {false, "FA", 0}, {true, "A", 0}}
	for i, s := range tcp {
		p := plantedPacket{at: time.Second + time.Duration(i)*100*time.Millisecond, proto: 6, payload: s.n, flags: s.flags,
			src: ap(cam + ":40001"), dst: ap("198.51.100.7:443")}
		if !s.out {
			p.src, p.dst = p.dst, p.src
		}
		pkts = append(pkts, p)
	}
	for i := range 3 {
		pkts = append(pkts, plantedPacket{at: 2*time.Second + time.Duration(i)*time.Second, proto: 17,
			src: ap("[2001:db8:50::10]:41000"), dst: ap("[2001:db8:99::1]:9999"), payload: 48})
	}
	pkts = append(pkts, plantedPacket{at: 3 * time.Second, proto: 1, src: ap(cam + ":0"), dst: ap("192.168.50.1:0"), payload: 56})
	sortPackets(pkts)
	return pkts
}

func sortPackets(p []plantedPacket) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].at < p[j-1].at; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// Crafted inputs of the audit of issue 15 ("no blind spots"): cases the
// fixtures of decode_test.go, reassemble_tcp_test.go and the others do not
// cover, each asserting what a SOC needs to see.

package egress

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func atkEther(et uint16, p []byte) []byte {
	b := []byte{0, 1, 2, 3, 4, 5, 0x02, 0, 192, 168, 50, 10}
	return append(binary.BigEndian.AppendUint16(b, et), p...)
}

func atkIP4(src, dst netip.Addr, proto uint8, id uint16, off int, more bool, opts []byte, payload []byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], id)
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], fo)
	b[8], b[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	var sum uint32
	for i := 0; i < hl; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return append(b, payload...)
}

func atkUDP(sport, dport uint16, p []byte) []byte {
	b := make([]byte, 8, 8+len(p))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(p)))
	return append(b, p...)
}

func atkIP6(src, dst netip.Addr, next uint8, p []byte) []byte {
	b := make([]byte, 40, 40+len(p))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(p)))
	b[6], b[7] = next, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, p...)
}

// runFrames feeds frames of link type lt, 1 ms apart, to an engine with
// the encapsulation capture's policy (testdata/encap.yml) and returns its
// alerts.
func runFrames(t *testing.T, lt layers.LinkType, frames ...[]byte) (*Engine, []Alert) {
	t.Helper()
	e, sink := encapEngine(t)
	ts := pcapgen.Start
	for _, f := range frames {
		ts = ts.Add(time.Millisecond)
		e.HandlePacket(context.Background(), f, gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}, lt)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, sink.alerts
}

func wantOne(t *testing.T, alerts []Alert, name string) {
	t.Helper()
	n := 0
	for _, a := range alerts {
		if a.Kind == KindVendorCloud && a.Domain == name {
			n++
		} else {
			t.Errorf("other alert: %+v", a)
		}
	}
	if n != 1 {
		t.Errorf("%d alerts for %s, want 1: %+v", n, name, alerts)
	}
}

var atkGW = netip.MustParseAddr("192.168.50.1")

func TestAttackIPv4(t *testing.T) {
	q := func(id uint16, name string) []byte { return atkUDP(41000+id, 53, pcapgen.DNSQuery(id, name, 1)) }
	fr := func(id uint16, off int, more bool, p []byte) []byte {
		return atkEther(0x0800, atkIP4(camA, atkGW, 17, id, off, more, nil, p))
	}
	t.Run("options", func(t *testing.T) {
		opts := []byte{0x94, 4, 0, 0} // Router Alert
		_, al := runFrames(t, layers.LinkTypeEthernet, atkEther(0x0800, atkIP4(camA, atkGW, 17, 1, 0, false, opts, q(1, "opts.secu100.net"))))
		wantOne(t, al, "opts.secu100.net")
	})
	t.Run("partial overlap later bogus", func(t *testing.T) {
		d := q(2, "povl.secu100.net")
		bog := append([]byte(nil), d[16:]...)
		for i := range bog {
			bog[i] = 'x'
		}
		_, al := runFrames(t, layers.LinkTypeEthernet,
			fr(2, 0, true, d[:24]), fr(2, 16, false, d[16:]), fr(2, 16, false, bog))
		wantOne(t, al, "povl.secu100.net")
	})
	t.Run("tail first, head overlaps it", func(t *testing.T) {
		d := q(3, "tail.secu100.net")
		_, al := runFrames(t, layers.LinkTypeEthernet,
			fr(3, 16, false, d[16:]), fr(3, 0, true, d[:32]))
		wantOne(t, al, "tail.secu100.net")
	})
	t.Run("tiny first fragment", func(t *testing.T) {
		d := q(4, "tiny.secu100.net")
		_, al := runFrames(t, layers.LinkTypeEthernet, fr(4, 8, false, d[8:]), fr(4, 0, true, d[:8]))
		wantOne(t, al, "tiny.secu100.net")
	})
	t.Run("many fragments shuffled", func(t *testing.T) {
		d := q(5, "many.fragments.with.a.long.name.secu100.net")
		var fs [][]byte
		for off := 0; off < len(d); off += 8 {
			fs = append(fs, fr(5, off, off+8 < len(d), d[off:min(off+8, len(d))]))
		}
		for i := 0; i+1 < len(fs); i += 2 {
			fs[i], fs[i+1] = fs[i+1], fs[i]
		}
		_, al := runFrames(t, layers.LinkTypeEthernet, fs...)
		wantOne(t, al, "many.fragments.with.a.long.name.secu100.net")
	})
}

// TestAttackEncap: encapsulations the encap fixture does not have.
func TestAttackEncap(t *testing.T) {
	q := func(id uint16, name string) []byte { return atkUDP(41000+id, 53, pcapgen.DNSQuery(id, name, 1)) }
	t.Run("QinQ", func(t *testing.T) {
		f := atkEther(0x88a8, append([]byte{0, 10, 0x81, 0, 0, 50, 0x08, 0x00}, atkIP4(camA, atkGW, 17, 6, 0, false, nil, q(6, "qinq.secu100.net"))...))
		_, al := runFrames(t, layers.LinkTypeEthernet, f)
		wantOne(t, al, "qinq.secu100.net")
	})
	t.Run("GRE with checksum key seq", func(t *testing.T) {
		gre := []byte{0xb0, 0, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1}
		inner := atkIP4(camA, atkGW, 17, 7, 0, false, nil, q(7, "grecks.secu100.net"))
		f := atkEther(0x0800, atkIP4(netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2"), 47, 9, 0, false, nil, append(gre, inner...)))
		_, al := runFrames(t, layers.LinkTypeEthernet, f)
		wantOne(t, al, "grecks.secu100.net")
	})
	t.Run("GRE over IPv6", func(t *testing.T) {
		inner := atkIP4(camA, atkGW, 17, 8, 0, false, nil, q(8, "gre6.secu100.net"))
		f := atkEther(0x86dd, atkIP6(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 47, append([]byte{0, 0, 0x08, 0}, inner...)))
		_, al := runFrames(t, layers.LinkTypeEthernet, f)
		wantOne(t, al, "gre6.secu100.net")
	})
	t.Run("VXLAN fragmented outer", func(t *testing.T) {
		vx := append([]byte{0x08, 0, 0, 0, 0, 0, 50, 0}, atkEther(0x0800, atkIP4(camA, atkGW, 17, 9, 0, false, nil, q(9, "vxfrag.secu100.net")))...)
		u := atkUDP(50000, 4789, vx)
		a, b := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
		_, al := runFrames(t, layers.LinkTypeEthernet,
			atkEther(0x0800, atkIP4(a, b, 17, 77, 0, true, nil, u[:48])),
			atkEther(0x0800, atkIP4(a, b, 17, 77, 48, false, nil, u[48:])))
		wantOne(t, al, "vxfrag.secu100.net")
	})
	t.Run("SLL2 VLAN", func(t *testing.T) {
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], 0x8100)
		binary.BigEndian.PutUint32(b[4:], 2)
		binary.BigEndian.PutUint16(b[8:], 1)
		b[11] = 6
		f := append(b, append([]byte{0, 50, 0x08, 0}, atkIP4(camA, atkGW, 17, 10, 0, false, nil, q(10, "sll2vlan.secu100.net"))...)...)
		_, al := runFrames(t, layers.LinkTypeLinuxSLL2, f)
		wantOne(t, al, "sll2vlan.secu100.net")
	})
}

func TestAttackIPv6(t *testing.T) {
	cam6, res6 := pcapgen.Cam6, pcapgen.Resolver6
	q6 := func(id uint16, name string) []byte {
		// checksum: compute via gopacket
		u := &layers.UDP{SrcPort: layers.UDPPort(42000 + id), DstPort: 53}
		ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: 64, SrcIP: cam6.AsSlice(), DstIP: res6.AsSlice()}
		_ = u.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, u, gopacket.Payload(pcapgen.DNSQuery(id, name, 1)))
		return buf.Bytes()
	}
	fh := func(next uint8, off int, more bool, id uint32) []byte {
		b := []byte{next, 0, 0, 0, 0, 0, 0, 0}
		v := uint16(off)
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(b[2:], v)
		binary.BigEndian.PutUint32(b[4:], id)
		return b
	}
	e6 := func(next uint8, p []byte) []byte { return atkEther(0x86dd, atkIP6(cam6, res6, next, p)) }
	cat := func(bs ...[]byte) []byte {
		var o []byte
		for _, b := range bs {
			o = append(o, b...)
		}
		return o
	}
	t.Run("atomic fragment", func(t *testing.T) {
		_, al := runFrames(t, layers.LinkTypeEthernet, e6(44, cat(fh(17, 0, false, 1), q6(1, "atomic6.secu100.net"))))
		wantOne(t, al, "atomic6.secu100.net")
	})
	t.Run("HBH then fragment, dstopts inside, reversed", func(t *testing.T) {
		hbh := []byte{44, 0, 1, 4, 0, 0, 0, 0}
		dst := []byte{17, 0, 1, 4, 0, 0, 0, 0}
		d := cat(dst, q6(2, "hbhfrag6.secu100.net"))
		_, al := runFrames(t, layers.LinkTypeEthernet,
			e6(0, cat(hbh, fh(60, 24, false, 2), d[24:])),
			e6(0, cat(hbh, fh(60, 0, true, 2), d[:24])))
		wantOne(t, al, "hbhfrag6.secu100.net")
	})
	t.Run("fragment overlap first wins", func(t *testing.T) {
		d := q6(3, "ovl6.secu100.net")
		bog := make([]byte, len(d)-16)
		for i := range bog {
			bog[i] = 'y'
		}
		_, al := runFrames(t, layers.LinkTypeEthernet,
			e6(44, cat(fh(17, 0, true, 3), d[:24])),
			e6(44, cat(fh(17, 24, false, 3), d[24:])),
			e6(44, cat(fh(17, 16, false, 3), bog)))
		// RFC 5722 says drop overlapping; first-wins keeps the real name.
		wantOne(t, al, "ovl6.secu100.net")
	})
	t.Run("unknown extension header no /0", func(t *testing.T) {
		_, al := runFrames(t, layers.LinkTypeEthernet, e6(253, cat([]byte{17, 0, 0, 0, 0, 0, 0, 0}, q6(4, "exp6.secu100.net"))))
		// An unknown protocol to a peer no rule permits is a fair alert.
		if len(al) != 1 || al[0].Kind != KindUnexpectedDestination || !strings.Contains(al[0].Detail, "ip-253") {
			t.Errorf("alerts %+v", al)
		}
	})
	t.Run("Routing header", func(t *testing.T) {
		rh := []byte{17, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		_, al := runFrames(t, layers.LinkTypeEthernet, e6(43, cat(rh, q6(5, "rh6.secu100.net"))))
		wantOne(t, al, "rh6.secu100.net")
	})
}

func TestAttackTCP(t *testing.T) {
	ch, err := pcapgen.TLSClientHello("dev.ezvizlife.com")
	if err != nil {
		t.Fatal(err)
	}
	six := split(ch, 6)
	for _, c := range []struct {
		name string
		isn  uint32
		segs []seg
		syn  bool
	}{
		{"wrap reversed 6", 0xffffff80, reversed(six), true},
		{"wrap in order 6", 0xfffffff0, six, true},
		{"12 segments shuffled", 77, func() []seg {
			s := split(ch, 12)
			for i := 0; i+1 < len(s); i += 2 {
				s[i], s[i+1] = s[i+1], s[i]
			}
			return s
		}(), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			cam, cloud := ap(camA, 40000), ap(netip.MustParseAddr("203.0.113.9"), 443)
			feed(t, e, func(w *pcapgen.Writer) {
				if c.syn {
					_ = w.TCPSegment(cam, cloud, pcapgen.SYN, c.isn, 0, nil, 0)
					_ = w.TCPSegment(cloud, cam, pcapgen.SYNACK, 9000, c.isn+1, nil, 0)
				}
				for _, s := range c.segs {
					_ = w.TCPSegment(cam, cloud, pcapgen.ACK|pcapgen.PSH, c.isn+1+uint32(s.off), 9001, s.data, 0)
				}
			})
			n := sink.count(KindVendorCloud, "dev.ezvizlife.com")
			if n != 1 {
				t.Errorf("%d alerts, want 1: %+v", n, sink.alerts)
			}
		})
	}
}

func TestAttackLateralAndDoH6(t *testing.T) {
	t.Run("lateral 300 hosts", func(t *testing.T) {
		e, sink := newTestEngine(t, testPolicy)
		feed(t, e, func(w *pcapgen.Writer) {
			for i := range 300 {
				_ = w.TCPSegment(ap(camA, uint16(30000+i)), ap(netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(1 + i%250)}), 445), pcapgen.SYN, 1, 0, nil, 0)
			}
		})
		n, last := countFrom(sink.alerts, KindLateral, camA)
		if n != 1 || len(last.Destinations) != 256 || !strings.Contains(last.Detail, "300 targets and 44 more") {
			t.Errorf("%d lateral alerts, last %d destinations, %q", n, len(last.Destinations), last.Detail[:80])
		}
	})
	t.Run("DoH to 2606:4700:4700::1111", func(t *testing.T) {
		tcp := []byte{0xa0, 0x28, 1, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0}
		_, al := runFrames(t, layers.LinkTypeEthernet, atkEther(0x86dd, atkIP6(pcapgen.Cam6, netip.MustParseAddr("2606:4700:4700::1111"), 6, tcp)))
		if len(al) != 1 || al[0].Severity != "high" {
			t.Errorf("alerts %+v", al)
		}
	})
}

// TestCorruptRecordNamesFileAndOffset: a record that cannot be read (a
// capture length over the snap length, a pcapng packet of an interface the
// section does not have) is an error naming the file and the byte offset
// of the record, read as a mapped file or as a stream, and said once
// ("egress:" not doubled).
func TestCorruptRecordNamesFileAndOffset(t *testing.T) {
	pc, badAt, ng, ngBadAt := corruptCaptures()
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		at   int
		want string
	}{
		{"bad.pcap", pc, badAt, "capture length exceeds snap length"},
		{"bad.pcapng", ng, ngBadAt, "Interface id 5 not present"},
	} {
		path := dir + "/" + c.name
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, stream := range []bool{false, true} {
			var src PacketSource
			var err error
			if stream {
				src, err = openStream(path, io.NopCloser(bytes.NewReader(c.data)))
			} else {
				src, err = OpenFile(path, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			e, sink := newTestEngine(t, testPolicy)
			err = e.Run(context.Background(), src)
			src.Close()
			prefix := fmt.Sprintf("egress: %s: record at byte %d (after 1 packets): ", path, c.at)
			if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), "egress:") != 1 {
				t.Errorf("%s (stream %v): Run = %v; want %q…%s", c.name, stream, err, prefix, c.want)
			}
			_ = e.Close(context.Background())
			if len(sink.alerts) != 1 {
				t.Errorf("%s: the packet before the bad record raised %d alerts, want 1", c.name, len(sink.alerts))
			}
		}
	}
}

// corruptCaptures returns a pcap and a pcapng holding one good packet (a
// watch-listed DNS query) then a record that cannot be read, with the
// offsets of those records.
func corruptCaptures() (pc []byte, badAt int, ng []byte, ngBadAt int) {
	q := atkEther(0x0800, atkIP4(camA, atkGW, 17, 1, 0, false, nil, atkUDP(41000, 53, pcapgen.DNSQuery(1, "ok.secu100.net", 1))))
	le := binary.LittleEndian
	pc = le.AppendUint32(pc, 0xa1b2c3d4)
	pc = le.AppendUint16(pc, 2)
	pc = le.AppendUint16(pc, 4)
	pc = append(pc, make([]byte, 8)...)
	pc = le.AppendUint32(pc, 65535)
	pc = le.AppendUint32(pc, 1)
	rec := func(b []byte, caplen uint32, data []byte) []byte {
		b = le.AppendUint32(b, 1767600000)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, caplen)
		b = le.AppendUint32(b, caplen)
		return append(b, data...)
	}
	pc = rec(pc, uint32(len(q)), q)
	badAt = len(pc)
	pc = rec(pc, 1<<30, make([]byte, 64))

	block := func(b []byte, typ uint32, body []byte) []byte {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		b = le.AppendUint32(b, typ)
		b = le.AppendUint32(b, uint32(12+len(body)))
		b = append(b, body...)
		return le.AppendUint32(b, uint32(12+len(body)))
	}
	epb := func(b []byte, iface uint32) []byte {
		var body []byte
		body = le.AppendUint32(body, iface)
		body = append(body, make([]byte, 8)...)
		body = le.AppendUint32(body, uint32(len(q)))
		body = le.AppendUint32(body, uint32(len(q)))
		return block(b, 6, append(body, q...))
	}
	ng = block(nil, 0x0a0d0d0a, []byte{0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	ng = block(ng, 1, []byte{1, 0, 0, 0, 0xff, 0xff, 0, 0})
	ng = epb(ng, 0)
	ngBadAt = len(ng)
	ng = epb(ng, 5)
	ng = epb(ng, 0)
	return pc, badAt, ng, ngBadAt
}

// TestICMPCommunityID: alerts on ICMP flows carry the Community ID of
// their first packet's type and code (the spec's port mapping; values from
// an independent implementation of the spec) and a flow_id.
func TestICMPCommunityID(t *testing.T) {
	peer := netip.MustParseAddr("203.0.113.5")
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
		typ      byte
		code     byte
		want     string
	}{
		{"echo request", camA, peer, 8, 0, "1:P+4wQOUdVyW3ATRrhnicHQr8m8w="},
		{"echo reply seen first", peer, camA, 0, 0, "1:P+4wQOUdVyW3ATRrhnicHQr8m8w="},
		{"unreachable (one-way)", camA, peer, 3, 3, "1:a0IBUNX/9rNGmERy5PdfnMQ5Wfw="},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			f := atkEther(0x0800, atkIP4(c.src, c.dst, 1, 1, 0, false, nil, []byte{c.typ, c.code, 0, 0, 0, 1, 0, 1}))
			e.HandlePacket(context.Background(), f, gopacket.CaptureInfo{Timestamp: pcapgen.Start, CaptureLength: len(f), Length: len(f)}, layers.LinkTypeEthernet)
			_ = e.Close(context.Background())
			if len(sink.alerts) != 1 || sink.alerts[0].CommunityID != c.want || sink.alerts[0].FlowID == 0 {
				t.Errorf("alerts %+v, want one with community_id %s and a flow_id", sink.alerts, c.want)
			}
		})
	}
}

func TestAttackFlightEvasion(t *testing.T) {
	ch, err := pcapgen.TLSClientHello("dev.ezvizlife.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		junk func(w *pcapgen.Writer, cam, cloud netip.AddrPort, isn uint32)
	}{
		{"70 segments out of the window first", func(w *pcapgen.Writer, cam, cloud netip.AddrPort, isn uint32) {
			for i := range 70 {
				_ = w.TCPSegment(cam, cloud, pcapgen.ACK, isn+1+1<<20+uint32(i)*100, 9001, []byte("junkjunk"), 0)
			}
		}},
		{"70 old duplicates before the stream start", func(w *pcapgen.Writer, cam, cloud netip.AddrPort, isn uint32) {
			for i := range 70 {
				_ = w.TCPSegment(cam, cloud, pcapgen.ACK, isn-1000+uint32(i), 9001, []byte("junk"), 0)
			}
		}},
		{"70 retransmissions of a later segment", func(w *pcapgen.Writer, cam, cloud netip.AddrPort, isn uint32) {
			for range 70 {
				_ = w.TCPSegment(cam, cloud, pcapgen.ACK, isn+1+uint32(len(ch)/2), 9001, ch[len(ch)/2:], 0)
			}
		}},
		{"70 empty ACKs", func(w *pcapgen.Writer, cam, cloud netip.AddrPort, isn uint32) {
			for range 70 {
				_ = w.TCPSegment(cam, cloud, pcapgen.ACK, isn+1, 9001, nil, 0)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			cam, cloud := ap(camA, 40000), ap(netip.MustParseAddr("203.0.113.9"), 443)
			const isn = 5000
			feed(t, e, func(w *pcapgen.Writer) {
				_ = w.TCPSegment(cam, cloud, pcapgen.SYN, isn, 0, nil, 0)
				_ = w.TCPSegment(cloud, cam, pcapgen.SYNACK, 9000, isn+1, nil, 0)
				c.junk(w, cam, cloud, isn)
				for _, s := range split(ch, 2) {
					_ = w.TCPSegment(cam, cloud, pcapgen.ACK|pcapgen.PSH, isn+1+uint32(s.off), 9001, s.data, 0)
				}
			})
			n := sink.count(KindVendorCloud, "dev.ezvizlife.com")
			if n != 1 {
				t.Errorf("%d alerts, want 1", n)
			}
		})
	}
}

func TestAttackQUICEvasion(t *testing.T) {
	initials := plantedInitials(t)
	for _, c := range []struct {
		name string
		n    int
		junk func(i int) []byte
	}{
		{"20 junk datagrams (not Initials) first", 20, func(i int) []byte { return []byte{0x40, byte(i), 1, 2, 3, 4, 5, 6, 7, 8} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			cam, cloud := ap(camA, 50000), ap(netip.MustParseAddr("198.51.100.20"), 443)
			feed(t, e, func(w *pcapgen.Writer) {
				for i := range c.n {
					_ = w.UDP(cam, cloud, c.junk(i), 0)
				}
				for _, d := range initials {
					_ = w.UDP(cam, cloud, d, 0)
				}
			})
			n := sink.count(KindVendorCloud, "iotaccess.easy4ipcloud.com")
			if n != 1 {
				t.Errorf("%d vendor-cloud alerts for the QUIC SNI, want 1", n)
			}
		})
	}
}

func TestAttackDNSOverTCP(t *testing.T) {
	p := strings.Replace(testPolicy, "{host: 192.168.50.1, proto: udp, port: 53}", "{host: 192.168.50.1, proto: udp, port: 53}\n  - {host: 192.168.50.1, proto: tcp, port: 53}", 1)
	q := pcapgen.DNSQuery(7, "tcpdns.secu100.net", 1)
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
	msg = append(msg, q...)
	for _, segs := range [][][]byte{{msg}, {msg[:2], msg[2:]}, {msg[:20], msg[20:]}, {msg[:1], msg[1:9], msg[9:]}} {
		e, sink := newTestEngine(t, p)
		feed(t, e, func(w *pcapgen.Writer) {
			k := w.Dial(ap(camA, 41000), ap(netip.MustParseAddr("192.168.50.1"), 53))
			for _, s := range segs {
				k.Send(s, 0)
			}
			_ = k.Close()
		})
		if len(sink.alerts) != 1 || sink.alerts[0].Domain != "tcpdns.secu100.net" {
			t.Errorf("%d segments: alerts %+v", len(segs), sink.alerts)
		}
	}
	// TLS to port 53 is still read as TLS.
	ch, err := pcapgen.TLSClientHello("dev.ezvizlife.com")
	if err != nil {
		t.Fatal(err)
	}
	e, sink := newTestEngine(t, p)
	feed(t, e, func(w *pcapgen.Writer) {
		k := w.Dial(ap(camA, 41001), ap(netip.MustParseAddr("192.168.50.1"), 53))
		k.Send(ch[:100], 0)
		k.Send(ch[100:], 0)
		_ = k.Close()
	})
	if len(sink.alerts) != 1 || sink.alerts[0].Domain != "dev.ezvizlife.com" {
		t.Errorf("TLS to port 53: alerts %+v", sink.alerts)
	}
}

func TestAttackFragmentFlood(t *testing.T) {
	d := atkUDP(41000, 53, pcapgen.DNSQuery(9, "fragflood.secu100.net", 1))
	var frames [][]byte
	junk := make([]byte, 64)
	for i := range 3000 {
		frames = append(frames, atkEther(0x0800, atkIP4(camA, atkGW, 17, uint16(i+100), 0, true, nil, junk)))
	}
	frames = append(frames,
		atkEther(0x0800, atkIP4(camA, atkGW, 17, 9, 0, true, nil, d[:16])),
		atkEther(0x0800, atkIP4(camA, atkGW, 17, 9, 16, false, nil, d[16:])))
	_, al := runFrames(t, layers.LinkTypeEthernet, frames...)
	wantOne(t, al, "fragflood.secu100.net")
}

// TestAttackTunnelHidesOuter: a camera that wraps what it sends in a
// tunnel to an outside host is seen contacting that host, whatever the
// tunnel carries.
func TestAttackTunnelHidesOuter(t *testing.T) {
	out := netip.MustParseAddr("203.0.113.66")
	inner := atkEther(0x0800, atkIP4(netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.1.1.2"), 17, 1, 0, false, nil, atkUDP(1, 2, []byte("exfil"))))
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"VXLAN to an outside host", atkEther(0x0800, atkIP4(camA, out, 17, 1, 0, false, nil, atkUDP(40000, 4789, append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, inner...))))},
		{"GRE to an outside host", atkEther(0x0800, atkIP4(camA, out, 47, 1, 0, false, nil, append([]byte{0, 0, 0x65, 0x58}, inner...)))},
		{"GRE with junk inside", atkEther(0x0800, atkIP4(camA, out, 47, 1, 0, false, nil, []byte{0, 0, 0x08, 0x00, 0x45, 1, 2}))},
		{"VXLAN in a VLAN", atkEther(0x8100, append([]byte{0, 50, 0x08, 0x00}, atkIP4(camA, out, 17, 1, 0, false, nil, atkUDP(40000, 4789, append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, inner...)))...))},
		{"IP in IP in a VLAN", atkEther(0x8100, append([]byte{0, 50, 0x08, 0x00}, atkIP4(camA, out, 4, 1, 0, false, nil, inner[14:])...))},
		{"IP in IP to an outside host", atkEther(0x0800, atkIP4(camA, out, 4, 1, 0, false, nil, inner[14:]))},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			e.HandlePacket(context.Background(), c.frame, gopacket.CaptureInfo{Timestamp: pcapgen.Start, CaptureLength: len(c.frame), Length: len(c.frame)}, layers.LinkTypeEthernet)
			_ = e.Close(context.Background())
			if len(sink.alerts) != 1 || sink.alerts[0].Dst != out.String() {
				t.Errorf("alerts %+v, want one for the camera's tunnel to %s", sink.alerts, out)
			}
		})
	}
}

// TestAttackDecoysHideNothingHigh: a camera that first opens flows to 100
// decoy destinations (so that its later ones roll up into a scan alert)
// still raises its own high-severity alerts: a public resolver, a
// watch-listed name, a lateral move.
func TestAttackDecoysHideNothingHigh(t *testing.T) {
	doh, err := pcapgen.TLSClientHello("dns.google")
	if err != nil {
		t.Fatal(err)
	}
	e, sink := newTestEngine(t, strings.Replace(testPolicy, "flows: {max: 100}", "flows: {max: 1000}", 1))
	feed(t, e, func(w *pcapgen.Writer) {
		for i := range 100 {
			_ = w.TCPSegment(ap(camA, uint16(20000+i)), ap(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 80), pcapgen.SYN, 1, 0, nil, 0)
		}
		_ = w.UDP(ap(camA, 5353), ap(netip.MustParseAddr("8.8.8.8"), 53), pcapgen.DNSQuery(0x1235, "time.example.com", 1), 0)
		_ = w.UDP(ap(camA, 5354), ap(netip.MustParseAddr("192.168.50.1"), 53), pcapgen.DNSQuery(0x1236, "litedev.hik-connect.com", 1), 0)
		_ = w.TCPSegment(ap(camA, 30000), ap(netip.MustParseAddr("10.0.0.5"), 445), pcapgen.SYN, 1, 0, nil, 0)
		k := w.Dial(ap(camA, 30001), ap(netip.MustParseAddr("203.0.113.53"), 443))
		k.Send(doh, 0)
		_ = k.Close()
	})
	got := map[string]bool{}
	for _, a := range sink.alerts {
		switch {
		case a.Kind == KindUnexpectedDestination && a.Dst == "8.8.8.8" && a.Severity == "high":
			got["resolver"] = true
		case a.Kind == KindUnexpectedDestination && a.Domain == "dns.google" && a.Severity == "high":
			got["doh"] = true
		case a.Kind == KindVendorCloud && a.Domain == "litedev.hik-connect.com":
			got["vendor"] = true
		case a.Kind == KindLateral:
			got["lateral"] = true
		case a.Kind == KindScan:
			got["scan"] = true
		}
	}
	if len(got) != 5 {
		t.Errorf("got %v, want resolver, doh, vendor, lateral and scan alerts", got)
	}
}

// TestAttackPcapngSections: a pcapng of two sections — the first
// little-endian with three interfaces (Ethernet, raw IP, SLL2), the second
// big-endian with its own interfaces, nanosecond time stamps on one — is
// read whole: one alert per query, none lost to a section or an
// interface.
func TestAttackPcapngSections(t *testing.T) {
	q := func(id uint16, name string) []byte {
		return atkIP4(camA, atkGW, 17, id, 0, false, nil, atkUDP(41000+id, 53, pcapgen.DNSQuery(id, name, 1)))
	}
	sll2 := func(p []byte) []byte {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], 0x0800)
		binary.BigEndian.PutUint32(h[4:], 2)
		binary.BigEndian.PutUint16(h[8:], 1)
		h[11] = 6
		return append(h, p...)
	}
	var b []byte
	var o binary.AppendByteOrder
	block := func(typ uint32, body []byte) {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		b = o.AppendUint32(b, typ)
		b = o.AppendUint32(b, uint32(12+len(body)))
		b = append(b, body...)
		b = o.AppendUint32(b, uint32(12+len(body)))
	}
	shb := func() {
		block(0x0a0d0d0a, append(o.AppendUint16(o.AppendUint16(o.AppendUint32(nil, 0x1a2b3c4d), 1), 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	}
	idb := func(lt uint16, nanos bool) {
		body := o.AppendUint32(o.AppendUint16(o.AppendUint16(nil, lt), 0), 65535)
		if nanos {
			body = append(o.AppendUint16(o.AppendUint16(body, 9), 1), 9, 0, 0, 0, 0, 0, 0, 0)
		}
		block(1, body)
	}
	epb := func(iface uint32, ts uint64, p []byte) {
		body := o.AppendUint32(o.AppendUint32(o.AppendUint32(o.AppendUint32(o.AppendUint32(nil, iface), uint32(ts>>32)), uint32(ts)), uint32(len(p))), uint32(len(p)))
		block(6, append(body, p...))
	}
	const t0 = 1767600000
	o = binary.LittleEndian
	shb()
	idb(1, false)
	idb(101, false)
	idb(276, false)
	epb(2, t0*1e6, sll2(q(1, "s1-sll2.secu100.net")))
	epb(1, (t0+120)*1e6, q(2, "s1-raw.secu100.net"))
	epb(0, (t0+240)*1e6, atkEther(0x0800, q(3, "s1-eth.secu100.net")))
	o = binary.BigEndian
	shb()
	idb(101, true)
	idb(1, false)
	epb(0, (t0+360)*1e9, q(4, "s2-raw.secu100.net"))
	epb(1, (t0+480)*1e6, atkEther(0x0800, q(5, "s2-eth.secu100.net")))

	src, err := openStream("sections.pcapng", io.NopCloser(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	e, sink := encapEngine(t)
	if err := e.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	_ = e.Close(context.Background())
	got := map[string]time.Time{}
	for _, a := range sink.alerts {
		got[a.Domain] = a.FirstSeen
	}
	for i, n := range []string{"s1-sll2", "s1-raw", "s1-eth", "s2-raw", "s2-eth"} {
		want := time.Unix(t0+int64(i)*120, 0).UTC()
		if ts, ok := got[n+".secu100.net"]; !ok || !ts.Equal(want) {
			t.Errorf("%s: alert at %v (seen %v), want at %v", n, ts, ok, want)
		}
	}
	if len(sink.alerts) != 5 {
		t.Errorf("%d alerts, want 5", len(sink.alerts))
	}
}

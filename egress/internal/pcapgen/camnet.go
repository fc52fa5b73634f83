package pcapgen

import (
	"fmt"
	"io"
	"net/netip"
	"time"
)

// CameraNet writes the speed benchmark's camera-network capture of n
// packets, shaped as issue #15 describes: ~200 cameras (192.168.50.10 to
// .209); 70 % RTP over UDP, 1,200-byte payloads from each camera to the
// recorder (Proxy, allowed); 10 % small P2P keep-alives to a few outside
// hosts; the rest DNS through the gateway (query and answer), TLS (a real
// ClientHello on a new connection to one of many destinations, then the
// server's data), NTP, and TCP connections to many destinations. snap > 0
// truncates the captured bytes (0 keeps whole packets). Packets are 100 µs
// apart; the generator is deterministic.
func CameraNet(out io.Writer, n, snap int) error {
	w, err := NewWriter(out, Start)
	if err != nil {
		return err
	}
	w.Step = 100 * time.Microsecond
	w.Snap = snap
	const cams = 200
	cam := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 168, 50, byte(10 + i%cams)}) }
	p2p := []netip.AddrPort{
		netip.MustParseAddrPort("203.0.113.10:10001"), netip.MustParseAddrPort("203.0.113.11:10001"),
		netip.MustParseAddrPort("198.51.100.30:6000"), netip.MustParseAddrPort("198.51.100.31:6000"),
	}
	hellos := make([][]byte, 8)
	for i := range hellos {
		if hellos[i], err = TLSClientHello(fmt.Sprintf("api%d.example-cloud.net", i)); err != nil {
			return err
		}
	}
	names := []string{"pool.ntp.org", "time.example.com", "firmware.example-cloud.net", "api.example-cloud.net"}
	keepalive := make([]byte, 24)
	rtp := make([]byte, 1200)
	rtp[0], rtp[1] = 0x80, 96
	// A cheap deterministic sequence (xorshift) picks destinations.
	x := uint64(0x9e3779b97f4a7c15)
	next := func() uint64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
	// One cycle of 88 steps writes 100 packets: 70 RTP, 10 keep-alives,
	// 3 DNS exchanges (6), an NTP exchange (2), a TLS connection (9) and 3
	// SYNs to new destinations.
	for i := 0; w.N < n; i++ {
		c := cam(i)
		switch r := i % 88; {
		case r < 70: // RTP to the recorder
			seq := uint16(i / cams)
			rtp[2], rtp[3] = byte(seq>>8), byte(seq)
			err = w.UDP(netip.AddrPortFrom(c, 20000), netip.AddrPortFrom(Proxy, uint16(30000+2*(i%cams))), rtp, 0)
		case r < 80: // P2P keep-alive to one of a few outside hosts
			err = w.UDP(netip.AddrPortFrom(c, 32761), p2p[i%len(p2p)], keepalive, 0)
		case r < 83: // DNS query and answer through the gateway
			q := DNSQuery(uint16(i), names[i%len(names)], 1)
			src := netip.AddrPortFrom(c, uint16(40000+i%20000))
			if err = w.UDP(src, netip.AddrPortFrom(Gateway, 53), q, 0); err == nil {
				err = w.UDP(netip.AddrPortFrom(Gateway, 53), src, DNSResponse(q, netip.MustParseAddr("192.0.2.53")), 0)
			}
		case r == 83: // NTP
			if err = w.UDP(netip.AddrPortFrom(c, 123), netip.AddrPortFrom(Gateway, 123), nil, 48); err == nil {
				err = w.UDP(netip.AddrPortFrom(Gateway, 123), netip.AddrPortFrom(c, 123), nil, 48)
			}
		case r == 84: // TLS: handshake, ClientHello, the server's answer, close
			v := next()
			dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(v >> 8), byte(v)}), 443)
			k := w.Dial(netip.AddrPortFrom(c, uint16(10000+i%50000)), dst)
			k.Send(hellos[v%uint64(len(hellos))], 0)
			k.Reply(nil, 2800)
			err = k.Close()
		default: // TCP to many destinations: a SYN to a new one
			v := next()
			dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(v >> 8), byte(v)}), uint16(80+v%4*1000))
			err = w.TCPSegment(netip.AddrPortFrom(c, uint16(10000+i%50000)), dst, SYN, 1, 0, nil, 0)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

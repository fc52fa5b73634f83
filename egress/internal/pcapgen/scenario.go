package pcapgen

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Addresses of the scenario (the policy in egress/testdata/policy.yml).
var (
	Gateway  = netip.MustParseAddr("192.168.50.1")  // DNS and NTP, allowed
	Proxy    = netip.MustParseAddr("192.168.50.2")  // cordon proxy, allowed
	Syslog   = netip.MustParseAddr("192.168.50.3")  // syslog, allowed on udp/514
	CamA     = netip.MustParseAddr("192.168.50.10") // front-door
	CamB     = netip.MustParseAddr("192.168.50.11") // loading-dock
	CamC     = netip.MustParseAddr("192.168.50.12") // lobby
	Start    = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	ap       = netip.AddrPortFrom
	mustAddr = netip.MustParseAddr
)

// Planted writes the evidence capture: allowed traffic that must raise
// nothing, and one planted event per detection. The comments name the alert
// each block must raise.
func Planted(out io.Writer) error {
	w, err := NewWriter(out, Start)
	if err != nil {
		return err
	}
	w.Sorted = true
	p := &planter{w: w}
	p.allowed()
	if err := p.vendorCloud(); err != nil {
		return err
	}
	p.unexpectedAndTunnel()
	p.beacon()
	p.volumeAndLateral()
	if len(p.errs) > 0 {
		return p.errs[0]
	}
	return w.Flush()
}

// planter writes the blocks of Planted, in time order; the first write
// error is kept.
type planter struct {
	w    *Writer
	errs []error
}

func (p *planter) at(d time.Duration) { p.w.Now = Start.Add(d) }

func (p *planter) check(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// allowed is the traffic the policy allows: no alert.
func (p *planter) allowed() {
	// The proxy pulls RTSP from front-door: 2.8 MB sent by the camera (over
	// the 1 MB volume threshold, but to an allowed peer on a connection the
	// peer opened).
	p.at(0)
	rtsp := p.w.Dial(ap(Proxy, 40000), ap(CamA, 554))
	rtsp.Send([]byte("DESCRIBE rtsp://192.168.50.10/Streaming/Channels/101 RTSP/1.0\r\nCSeq: 2\r\n\r\n"), 0)
	rtsp.Reply([]byte("RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n\r\n"), 0)
	p.w.Snap = 128
	for i := range 2000 {
		p.at(time.Second + time.Duration(i)*100*time.Millisecond)
		rtsp.Reply(nil, 1400)
	}
	p.w.Snap = 0
	p.check(rtsp.Close())
	// NTP every 64 s from each camera to the gateway: periodic but allowed.
	for i := range 6 {
		for j, cam := range []netip.Addr{CamA, CamB, CamC} {
			p.at(time.Duration(i)*64*time.Second + time.Duration(j)*time.Second + 500*time.Millisecond)
			p.check(p.w.UDP(ap(cam, 123), ap(Gateway, 123), nil, 48))
			p.check(p.w.UDP(ap(Gateway, 123), ap(cam, 123), nil, 48))
		}
	}
	// DNS through the allowed resolver for an ordinary name.
	p.at(2 * time.Second)
	q := DNSQuery(1, "pool.ntp.org", 1)
	p.check(p.w.UDP(ap(CamA, 51000), ap(Gateway, 53), q, 0))
	p.check(p.w.UDP(ap(Gateway, 53), ap(CamA, 51000), DNSResponse(q, mustAddr("192.0.2.123")), 0))
	// Syslog to the allowed collector.
	for i := range 5 {
		p.at(3*time.Second + time.Duration(i)*20*time.Second)
		p.check(p.w.UDP(ap(CamB, 514), ap(Syslog, 514), []byte("<30>Jan  5 08:00:00 cam: motion detected"), 0))
	}
}

// vendorCloud is each way a camera shows it talks to its vendor's cloud.
func (p *planter) vendorCloud() error {
	// --- vendor-cloud (DNS): front-door resolves its Hik-Connect server through the allowed resolver. ---
	p.at(10 * time.Second)
	q := DNSQuery(2, "litedev.hik-connect.com", 1)
	p.check(p.w.UDP(ap(CamA, 51001), ap(Gateway, 53), q, 0))
	p.check(p.w.UDP(ap(Gateway, 53), ap(CamA, 51001), DNSResponse(q, mustAddr("203.0.113.10")), 0))

	// --- vendor-cloud (TLS SNI), unexpected-destination, new-destination: front-door → 203.0.113.10:443. ---
	p.at(11 * time.Second)
	hello, err := TLSClientHello("dev.ezvizlife.com")
	if err != nil {
		return err
	}
	tlsConn := p.w.Dial(ap(CamA, 41000), ap(mustAddr("203.0.113.10"), 443))
	tlsConn.Send(hello, 0) // over 1448 bytes: the ClientHello spans two segments
	tlsConn.Reply(nil, 1200)
	p.check(tlsConn.Close())

	// --- vendor-cloud (QUIC Initial SNI): lobby → 198.51.100.20:443 with a real QUIC client's Initials. ---
	p.at(20 * time.Second)
	initials, err := QUICInitials("iotaccess.easy4ipcloud.com")
	if err != nil {
		return err
	}
	for _, d := range initials {
		p.check(p.w.UDP(ap(CamC, 52000), ap(mustAddr("198.51.100.20"), 443), d, 0))
	}

	// --- vendor-cloud (watch-list signatures): easy4ip UDP 8800 and a PPPP 0xF1 datagram. ---
	p.at(30 * time.Second)
	p.check(p.w.UDP(ap(CamC, 52001), ap(mustAddr("203.0.113.80"), 8800), []byte{0x00, 0x01, 0x02, 0x03}, 0))
	p.check(p.w.UDP(ap(CamC, 52002), ap(mustAddr("198.51.100.77"), 32100), []byte{0xf1, 0x00, 0x00, 0x00}, 0))

	// --- vendor-cloud (plain HTTP Host): front-door checks for firmware upgrades. ---
	p.at(35 * time.Second)
	web := p.w.Dial(ap(CamA, 47000), ap(mustAddr("203.0.113.30"), 80))
	web.Send([]byte("GET /upgrade/check?sn=ABC HTTP/1.1\r\nHost: upgrade.secu100.net\r\nUser-Agent: cam\r\n\r\n"), 0)
	web.Reply([]byte("HTTP/1.1 204 No Content\r\n\r\n"), 0)
	p.check(web.Close())
	return nil
}

// unexpectedAndTunnel is a public resolver asked directly and a DNS tunnel.
func (p *planter) unexpectedAndTunnel() {
	// --- unexpected-destination (public resolver): loading-dock asks 8.8.8.8 directly. ---
	p.at(40 * time.Second)
	q := DNSQuery(3, "time.windows.com", 1)
	p.check(p.w.UDP(ap(CamB, 53000), ap(mustAddr("8.8.8.8"), 53), q, 0))
	p.check(p.w.UDP(ap(mustAddr("8.8.8.8"), 53), ap(CamB, 53000), DNSResponse(q, mustAddr("192.0.2.1")), 0))

	// --- dns-tunnel: loading-dock sends 40 TXT queries with hex labels under data-drop.net in 80 s. ---
	for i := range 40 {
		p.at(60*time.Second + time.Duration(i)*2*time.Second)
		sum := sha256.Sum256([]byte{byte(i)})
		name := fmt.Sprintf("%x.%d.t.data-drop.net", sum[:16], i)
		p.check(p.w.UDP(ap(CamB, uint16(54000+i)), ap(Gateway, 53), DNSQuery(uint16(100+i), name, 16), 0))
	}
}

// beacon is a regular beacon and failed connects that are not one.
func (p *planter) beacon() {
	// --- beacon: lobby opens a small connection to 198.51.100.200:8443 every 60 s (± 0.4 s), 8 times. ---
	for i := range 8 {
		jitter := time.Duration([]int{0, 3, -2, 4, -3, 1, -4, 2}[i]) * 100 * time.Millisecond
		p.at(100*time.Second + time.Duration(i)*60*time.Second + jitter)
		c := p.w.Dial(ap(CamC, uint16(43000+i)), ap(mustAddr("198.51.100.200"), 8443))
		c.Send(nil, 64)
		c.Reply(nil, 32)
		p.check(c.Close())
	}
	// Not a beacon: failed connects to 203.0.113.66:443, SYN retransmissions
	// with exponential backoff, then new attempts at 1, 2, 4, 8, 16 minutes.
	for i, d := range []time.Duration{0, 60, 120, 240, 480, 960} {
		base := 110*time.Second + d*time.Second
		for j, rto := range []time.Duration{0, 1, 3, 7, 15} {
			p.at(base + rto*time.Second)
			p.check(p.w.TCPSegment(ap(CamA, uint16(44000+i)), ap(mustAddr("203.0.113.66"), 443), SYN, uint32(7000+j), 0, nil, 0))
		}
	}
}

// volumeAndLateral is an upload over the volume threshold and lateral probes.
func (p *planter) volumeAndLateral() {
	// --- volume: loading-dock uploads 1.5 MB to 203.0.113.200:443 in 30 s. ---
	p.at(200 * time.Second)
	up := p.w.Dial(ap(CamB, 45000), ap(mustAddr("203.0.113.200"), 443))
	p.w.Snap = 128
	for i := range 1100 {
		p.at(201*time.Second + time.Duration(i)*27*time.Millisecond)
		up.Send(nil, 1400)
	}
	p.w.Snap = 0
	p.check(up.Close())

	// --- lateral: front-door tries telnet on loading-dock and SMB on a core server. ---
	p.at(300 * time.Second)
	p.check(p.w.TCPSegment(ap(CamA, 46000), ap(CamB, 23), SYN, 1, 0, nil, 0))
	p.check(p.w.TCPSegment(ap(CamB, 23), ap(CamA, 46000), RST|ACK, 0, 2, nil, 0))
	p.check(p.w.TCPSegment(ap(CamA, 46001), ap(mustAddr("10.1.2.3"), 445), SYN, 1, 0, nil, 0))
}

// Bulk writes n packets of camera-network traffic for the benchmark: mostly
// RTSP pulled by the proxy from 16 cameras, with DNS, NTP, and now and then
// a planted event (vendor DNS, unexpected destinations). Packets are
// truncated to 128 captured bytes.
func Bulk(out io.Writer, n int) error {
	w, err := NewWriter(out, Start)
	if err != nil {
		return err
	}
	w.Step = 50 * time.Microsecond
	w.Snap = 128
	const cams = 16
	conns := make([]*Conn, cams)
	for i := range conns {
		cam := netip.AddrFrom4([4]byte{192, 168, 50, byte(20 + i)})
		conns[i] = w.Dial(ap(Proxy, uint16(40000+i)), ap(cam, 554))
	}
	for i := 0; w.N < n; i++ {
		cam := netip.AddrFrom4([4]byte{192, 168, 50, byte(20 + i%cams)})
		switch {
		case i%997 == 0:
			q := DNSQuery(uint16(i), "litedev.hik-connect.com", 1)
			if err := w.UDP(ap(cam, uint16(50000+i%1000)), ap(Gateway, 53), q, 0); err != nil {
				return err
			}
		case i%499 == 0:
			q := DNSQuery(uint16(i), "pool.ntp.org", 1)
			if err := w.UDP(ap(cam, uint16(50000+i%1000)), ap(Gateway, 53), q, 0); err != nil {
				return err
			}
			if err := w.UDP(ap(Gateway, 53), ap(cam, uint16(50000+i%1000)), DNSResponse(q, mustAddr("192.0.2.123")), 0); err != nil {
				return err
			}
		case i%211 == 0:
			if err := w.UDP(ap(cam, 123), ap(Gateway, 123), nil, 48); err != nil {
				return err
			}
		case i%10007 == 0:
			if err := w.TCPSegment(ap(cam, uint16(30000+i%20000)), ap(netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 250)}), 443), SYN, 1, 0, nil, 0); err != nil {
				return err
			}
		case i%50 == 0:
			conns[i%cams].Send(nil, 60) // RTCP receiver report / keep-alive from the proxy
		default:
			conns[i%cams].Reply(nil, 1400)
		}
		if err := conns[i%cams].Err(); err != nil {
			return err
		}
	}
	return nil
}

// Small writes a capture of a few packets for the CLI scripts
// (cmd/cordon/testdata/script/egress_*.txtar carry it in base64): a vendor
// domain resolved through the allowed resolver, a public resolver used
// directly, and the proxy pulling RTSP (allowed).
func Small(out io.Writer) error {
	w, err := NewWriter(out, Start)
	if err != nil {
		return err
	}
	q := DNSQuery(1, "litedev.hik-connect.com", 1)
	if err := w.UDP(ap(CamA, 51001), ap(Gateway, 53), q, 0); err != nil {
		return err
	}
	if err := w.UDP(ap(Gateway, 53), ap(CamA, 51001), DNSResponse(q, mustAddr("203.0.113.10")), 0); err != nil {
		return err
	}
	if err := w.UDP(ap(CamB, 53000), ap(mustAddr("8.8.8.8"), 53), DNSQuery(2, "time.windows.com", 1), 0); err != nil {
		return err
	}
	c := w.Dial(ap(Proxy, 40000), ap(CamA, 554))
	c.Send([]byte("OPTIONS rtsp://192.168.50.10/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"), 0)
	c.Reply([]byte("RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"), 0)
	return c.Close()
}

package egress

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
)

// ordinaryPolicy is the documented policy of an ordinary camera network:
// cameras stream RTSP to the recorder, and use the gateway for DNS, NTP,
// DHCP and SSDP (its replies to their M-SEARCHes).
const ordinaryPolicy = `cameras:
  networks: [192.168.50.0/24]
  exclude: [192.168.50.1, 192.168.50.2]
allow:
  - {host: 192.168.50.2, note: recorder}
  - {host: 192.168.50.1, proto: udp, note: "gateway: DNS, NTP, DHCP, SSDP replies"}
`

// TestOrdinaryDayNoAlerts: a day of ordinary camera traffic (the recorder
// pulling RTSP, NTP, DNS with random transaction IDs — a 256th of them
// start 0xF1 like a PPPP datagram —, DHCP renewals, mDNS, SSDP M-SEARCH and
// the gateway's unicast replies, WS-Discovery, ARP, encrypted UDP media to
// the recorder whose first byte is random) from 20 cameras raises no alert
// under ordinaryPolicy: the false-positive target is 0.
func TestOrdinaryDayNoAlerts(t *testing.T) {
	e, sink := newTestEngine(t, ordinaryPolicy)
	rng := rand.New(rand.NewPCG(1, 2))
	gw, rec := netip.MustParseAddr("192.168.50.1"), netip.MustParseAddr("192.168.50.2")
	ssdp, mdns := netip.MustParseAddr("239.255.255.250"), netip.MustParseAddr("224.0.0.251")
	queries, udpFlows, f1Flows := 0, 0, 0
	feed(t, e, func(w *pcapgen.Writer) {
		w.Sorted = true
		for c := range 20 {
			cam := netip.AddrFrom4([4]byte{192, 168, 50, byte(10 + c)})
			at := func(d time.Duration) { w.Now = pcapgen.Start.Add(d + time.Duration(c)*time.Second) }
			// RTSP: the recorder reconnects every hour and keeps the session alive.
			for h := range 24 {
				at(time.Duration(h) * time.Hour)
				k := w.Dial(ap(rec, uint16(40000+h)), ap(cam, 554))
				k.Send([]byte("OPTIONS rtsp://cam/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"), 0)
				k.Reply([]byte("RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"), 0)
				k.Reply(nil, 1200)
				_ = k.Close()
			}
			for i := range 24 * 60 * 60 / 300 { // every 5 minutes
				base := time.Duration(i) * 5 * time.Minute
				at(base)
				id := uint16(rng.Uint32())
				_ = w.UDP(ap(cam, uint16(30000+i%20000)), ap(gw, 53), pcapgen.DNSQuery(id, "pool.ntp.org", 1), 0)
				queries++
				at(base + time.Second)
				ntp := make([]byte, 48)
				ntp[0] = 0x23
				_ = w.UDP(ap(cam, 123), ap(gw, 123), ntp, 0)
				_ = w.UDP(ap(gw, 123), ap(cam, 123), ntp, 0)
				at(base + 2*time.Second)
				msearch := []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n")
				_ = w.UDP(ap(cam, 50000), ap(ssdp, 1900), msearch, 0)
				_ = w.UDP(ap(gw, 1900), ap(cam, 50000), []byte("HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n"), 0)
				at(base + 3*time.Second)
				_ = w.UDP(ap(cam, 5353), ap(mdns, 5353), pcapgen.DNSQuery(0, "_services._dns-sd._udp.local", 12), 0)
				_ = w.UDP(ap(cam, 3702), ap(ssdp, 3702), []byte("<?xml version=\"1.0\"?><e:Envelope><e:Body><d:Probe/></e:Body></e:Envelope>"), 0)
			}
			// The camera's UDP media channels to the recorder (encrypted: the
			// first byte is random, 0xF1 in one of 256): four new flows an hour.
			for h := range 24 * 4 {
				at(time.Duration(h)*15*time.Minute + 40*time.Second)
				pl := make([]byte, 8+rng.IntN(1300))
				for i := range pl {
					pl[i] = byte(rng.Uint32())
				}
				if pl[0] == 0xf1 {
					f1Flows++
				}
				udpFlows++
				_ = w.UDP(ap(cam, uint16(50100+h)), ap(rec, 6000), pl, 0)
				_ = w.UDP(ap(cam, uint16(50100+h)), ap(rec, 6000), nil, 1200)
			}
			for h := range 24 * 12 { // ARP for the gateway every 5 minutes
				at(time.Duration(h)*5*time.Minute + 50*time.Second)
				_ = w.ARP(cam, gw)
			}
			for h := range 24 { // DHCP renewal every hour (unicast to the server)
				at(time.Duration(h)*time.Hour + 30*time.Second)
				dhcp := make([]byte, 240)
				dhcp[0] = 1
				binary.BigEndian.PutUint32(dhcp[236:], 0x63825363)
				_ = w.UDP(ap(cam, 68), ap(gw, 67), dhcp, 0)
				dhcp[0] = 2
				_ = w.UDP(ap(gw, 67), ap(cam, 68), dhcp, 0)
			}
		}
	})
	if len(sink.alerts) != 0 {
		t.Errorf("%d alerts on ordinary traffic (%d DNS queries), want 0; first: %+v", len(sink.alerts), queries, sink.alerts[0])
	}
	if n := e.m.DecodeErrors.Load(); n != 0 {
		t.Errorf("%d packets malformed", n)
	}
	if f1Flows == 0 {
		t.Error("no media flow starts 0xF1: the case the PPPP signature once mistook is not exercised")
	}
	t.Logf("%d packets, %d flows, %d DNS queries, %d UDP media flows (%d starting 0xF1), 0 alerts", e.m.Packets.Load(), e.m.Flows.Load(), queries, udpFlows, f1Flows)
}

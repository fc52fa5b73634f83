package egress

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
)

// TestResolverBypass: DNS-over-TLS and DNS-over-HTTPS to a public
// resolver's address, and a TLS SNI of a public DoH service on another
// address, are high-severity unexpected-destination alerts.
func TestResolverBypass(t *testing.T) {
	doh, err := pcapgen.TLSClientHello("dns.google")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := pcapgen.TLSClientHello("www.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		dst    string
		port   uint16
		hello  []byte
		sev    string
		detail string
	}{
		{"DoT to 1.1.1.1", "1.1.1.1", 853, nil, "high", "public DNS resolver 1.1.1.1 (Cloudflare) over DNS-over-TLS (tcp/853)"},
		{"DoH to 9.9.9.9", "9.9.9.9", 443, nil, "high", "public DNS resolver 9.9.9.9 (Quad9) over DNS-over-HTTPS (tcp/443)"},
		{"DoH SNI elsewhere", "203.0.113.53", 443, doh, "high", "reaches dns.google, the Google DNS-over-HTTPS/TLS service, at 203.0.113.53 (tcp/443; TLS ClientHello SNI)"},
		{"other SNI", "203.0.113.54", 443, plain, "medium", "contacted 203.0.113.54 on tcp/443"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			var b bytes.Buffer
			w, _ := pcapgen.NewWriter(&b, pcapgen.Start)
			k := w.Dial(ap(camA, 41000), ap(netip.MustParseAddr(c.dst), c.port))
			if c.hello != nil {
				k.Send(c.hello, 0)
			}
			_ = k.Close()
			src, err := openStream("t", io.NopCloser(&b))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Run(context.Background(), src); err != nil {
				t.Fatal(err)
			}
			if c.sev == "high" && len(sink.alerts) == 0 {
				t.Errorf("the high alert was not sent at once")
			}
			if err := e.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got []Alert
			for _, a := range sink.alerts {
				if a.Kind == KindUnexpectedDestination {
					got = append(got, a)
				}
			}
			if len(got) != 1 || got[0].Severity != c.sev || !strings.Contains(got[0].Detail, c.detail) {
				t.Errorf("alerts %+v, want one %s unexpected-destination saying %q", got, c.sev, c.detail)
			}
		})
	}
}

// TestPPPPSignatureContext: a DNS query whose transaction ID starts 0xF1
// is not a PPPP datagram; a PPPP datagram to an outside host is.
func TestPPPPSignatureContext(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	gw := netip.MustParseAddr("192.168.50.1")
	feed(t, e, func(w *pcapgen.Writer) {
		for id := range 256 {
			_ = w.UDP(ap(camA, uint16(30000+id)), ap(gw, 53), pcapgen.DNSQuery(0xf100|uint16(id), "time.example.com", 1), 0)
		}
		_ = w.UDP(ap(camA, 32100), ap(gw, 123), []byte{0xf1, 0, 0, 0}, 0) // NTP port: not matched
		_ = w.UDP(ap(camA, 32101), ap(netip.MustParseAddr("203.0.113.8"), 32100), []byte{0xf1, 0x00, 0x00, 0x00}, 0)
	})
	var pppp []Alert
	for _, a := range sink.alerts {
		if a.Kind == KindVendorCloud {
			pppp = append(pppp, a)
		}
	}
	if len(pppp) != 1 || pppp[0].Dst != "203.0.113.8" || !strings.Contains(pppp[0].Detail, "PPPP") {
		t.Errorf("vendor-cloud alerts %+v, want one: the PPPP datagram to 203.0.113.8", pppp)
	}
}

// TestSSDPReply: the gateway's unicast reply to a camera's SSDP M-SEARCH is
// reported as what it is (low), not as an inbound connection.
func TestSSDPReply(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	gw := netip.MustParseAddr("192.168.50.1")
	feed(t, e, func(w *pcapgen.Writer) {
		_ = w.UDP(ap(camA, 49152), ap(netip.MustParseAddr("239.255.255.250"), 1900), []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"), 0)
		_ = w.UDP(ap(gw, 1900), ap(camA, 49152), []byte("HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n"), 0)
	})
	if len(sink.alerts) != 1 || sink.alerts[0].Severity != "low" || sink.alerts[0].Dst != "192.168.50.1" ||
		!strings.Contains(sink.alerts[0].Detail, "192.168.50.1 answered camera 192.168.50.10's SSDP M-SEARCH (multicast discovery) with a unicast reply from udp/1900") {
		t.Errorf("alerts %+v, want one low alert naming the SSDP reply", sink.alerts)
	}
}

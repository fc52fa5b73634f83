package egress

import (
	"io"
	"net/netip"
	"testing"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/cordon-vms/cordon/egress/quicinitial"
)

// seg is one TCP segment of a test: data at stream offset off.
type seg struct {
	off  int
	data []byte
}

// split cuts b into n pieces in order.
func split(b []byte, n int) []seg {
	var out []seg
	step := (len(b) + n - 1) / n
	for off := 0; off < len(b); off += step {
		out = append(out, seg{off, b[off:min(off+step, len(b))]})
	}
	return out
}

func reversed(s []seg) []seg {
	out := make([]seg, len(s))
	for i := range s {
		out[len(s)-1-i] = s[i]
	}
	return out
}

// TestFirstFlightReassembly: the SNI of a ClientHello and the Host of an
// HTTP request are read whatever the segmentation and order of the first
// segments: more than 4 of them, reversed, the first retransmitted,
// overlapping copies (the first copy wins), repacketized, or a capture
// that starts after the SYN.
func TestFirstFlightReassembly(t *testing.T) {
	ch, err := pcapgen.TLSClientHello("dev.ezvizlife.com")
	if err != nil {
		t.Fatal(err)
	}
	http := []byte("GET /fw/latest HTTP/1.1\r\nUser-Agent: cam\r\nHost: upgrade.secu100.net\r\nAccept: */*\r\n\r\n")
	six := split(ch, 6)
	bogus := make([]byte, len(six[2].data))
	for i := range bogus {
		bogus[i] = 0xee
	}
	overlap := []seg{six[0], six[2], {six[2].off - 10, append(bogus[:10:10], six[2].data...)}}
	overlap = append(overlap, seg{six[2].off, bogus}) // arrives after the real bytes: ignored
	overlap = append(overlap, six[1], six[3], six[4], six[5])
	for _, c := range []struct {
		name   string
		data   []byte
		segs   []seg
		noSYN  bool
		domain string
	}{
		{"tls one segment", ch, split(ch, 1), false, "dev.ezvizlife.com"},
		{"tls 6 segments", ch, six, false, "dev.ezvizlife.com"},
		{"tls 40-byte segments", ch, split(ch, (len(ch)+39)/40), false, "dev.ezvizlife.com"},
		{"tls reversed", ch, reversed(six), false, "dev.ezvizlife.com"},
		{"tls first retransmitted", ch, append([]seg{six[0], six[0]}, six[1:]...), false, "dev.ezvizlife.com"},
		{"tls first late", ch, append(append([]seg{}, six[1:]...), six[0]), false, "dev.ezvizlife.com"},
		{"tls overlapping", ch, overlap, false, "dev.ezvizlife.com"},
		{"tls repacketized", ch, []seg{{0, ch[:7]}, {0, ch[:200]}, {150, ch[150:]}}, false, "dev.ezvizlife.com"},
		{"tls no SYN seen", ch, six, true, "dev.ezvizlife.com"},
		{"http 3 segments reversed", http, reversed(split(http, 3)), false, "upgrade.secu100.net"},
		{"http byte by byte head", http, append(split(http[:10], 10), seg{10, http[10:]}), false, "upgrade.secu100.net"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			cam, cloud := ap(camA, 40000), ap(netip.MustParseAddr("203.0.113.9"), 443)
			feed(t, e, func(w *pcapgen.Writer) {
				const isn = 1_000_000
				if !c.noSYN {
					_ = w.TCPSegment(cam, cloud, pcapgen.SYN, isn, 0, nil, 0)
					_ = w.TCPSegment(cloud, cam, pcapgen.SYNACK, 9000, isn+1, nil, 0)
				}
				for _, s := range c.segs {
					_ = w.TCPSegment(cam, cloud, pcapgen.ACK|pcapgen.PSH, isn+1+uint32(s.off), 9001, s.data, 0)
				}
			})
			n := sink.count(KindVendorCloud, c.domain)
			if n != 1 {
				t.Errorf("%d vendor-cloud alerts for %s, want 1: %+v", n, c.domain, sink.alerts)
			}
		})
	}
}

// TestFirstFlightBounded: a flow whose first bytes never complete holds at
// most maxFlight bytes and is given up after maxFlightSegments segments in
// its window, or once the camera sent maxFlightIgnored bytes.
func TestFirstFlightBounded(t *testing.T) {
	e, _ := newTestEngine(t, testPolicy)
	cam, cloud := ap(camA, 40001), ap(netip.MustParseAddr("203.0.113.9"), 443)
	var f *flow
	feed(t, e, func(w *pcapgen.Writer) {
		_ = w.TCPSegment(cam, cloud, pcapgen.SYN, 0, 0, nil, 0)
		// A ClientHello record that claims 16 KiB, then a gap.
		_ = w.TCPSegment(cam, cloud, pcapgen.ACK, 1, 1, []byte{22, 3, 1, 0x40, 0, 1, 0, 0x3f, 0xfc}, 0)
		for i := range maxFlightIgnored / 1000 {
			_ = w.TCPSegment(cam, cloud, pcapgen.ACK, uint32(2000+1000*i), 1, nil, 1000)
		}
	})
	e.flows.each(func(fl *flow) {
		if fl.proto == protoTCP {
			f = fl
		}
	})
	if f == nil || !f.inspDone || f.flight != nil {
		t.Fatalf("flow %+v: inspection not given up and released", f)
	}
	var fl tcpFlight
	for i := range 100 {
		fl.add(uint32(i*1000), make([]byte, 1000))
		if cap(fl.buf) > maxFlight {
			t.Fatalf("buffer %d bytes", cap(fl.buf))
		}
	}
}

// plantedInitials returns the QUIC client Initials of the planted capture.
func plantedInitials(t *testing.T) [][]byte {
	t.Helper()
	src, err := OpenFile("testdata/planted.pcap", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d := newDecoder(&Metrics{}, DefaultVXLANPorts)
	var out [][]byte
	for {
		data, ci, err := src.ReadPacketData()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var p packet
		if d.decode(data, src.LinkType(), ci.Timestamp.UnixNano(), &p) == decoded && p.proto == protoUDP && quicinitial.IsInitial(p.payload) {
			out = append(out, append([]byte(nil), p.payload...))
		}
	}
	if len(out) == 0 {
		t.Fatal("no QUIC Initial in testdata/planted.pcap")
	}
	return out
}

// TestQUICKeepsTrying: Initials that cannot be decrypted, or that start
// another handshake, on the same flow before the real one do not hide its
// SNI.
func TestQUICKeepsTrying(t *testing.T) {
	initials := plantedInitials(t)
	corrupt := append([]byte(nil), initials[0]...)
	for i := len(corrupt) - 40; i < len(corrupt); i++ {
		corrupt[i] ^= 0x5a // the AEAD tag no longer matches
	}
	garbage := func(i int) []byte {
		// A long-header Initial (version 1) with its own DCID and junk.
		b := []byte{0xc3, 0, 0, 0, 1, 8, byte(i), 1, 2, 3, 4, 5, 6, 7, 0, 0, 0x44, 0xd0}
		return append(b, make([]byte, 1200-len(b))...)
	}
	for _, c := range []struct {
		name   string
		before [][]byte
	}{
		{"undecryptable first", [][]byte{corrupt}},
		{"8 garbage Initials", [][]byte{garbage(1), garbage(2), garbage(3), garbage(4), garbage(5), garbage(6), garbage(7), garbage(8)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, testPolicy)
			cam, cloud := ap(camA, 50000), ap(netip.MustParseAddr("198.51.100.20"), 443)
			feed(t, e, func(w *pcapgen.Writer) {
				for _, d := range append(append([][]byte{}, c.before...), initials...) {
					_ = w.UDP(cam, cloud, d, 0)
				}
			})
			n := sink.count(KindVendorCloud, "iotaccess.easy4ipcloud.com")
			if n != 1 {
				t.Errorf("%d vendor-cloud alerts for the QUIC SNI, want 1: %+v", n, sink.alerts)
			}
		})
	}
}

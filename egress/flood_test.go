package egress

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
)

// TestFloodHidesNothing: 30 cameras each open flows to 400 distinct outside
// destinations over four minutes, with the state bounds lowered so that
// they are reached; unrelated cameras meanwhile beacon, query a vendor
// domain, use a public resolver, contact one unexpected host and sweep 50
// core hosts' SSH. Every planted event alerts exactly once; each flooding
// camera's destinations beyond the first 20 of a window roll up into one
// scan alert per window.
func TestFloodHidesNothing(t *testing.T) {
	e, sink := newTestEngine(t, strings.Replace(testPolicy, "thresholds:\n", "thresholds:\n  beacon: {min_interval: 20s}\n", 1))
	// testPolicy's flows.max is 100; lower the other bounds too.
	e.maxPending = 200
	b := e.detectors[beaconDetector.index].(*beacon)
	b.dests.maxCam, b.dests.max = 64, 512

	const flooders, perCam = 30, 400
	gw := netip.MustParseAddr("192.168.50.1") // the planted cameras are flood_full_test.go's
	at := func(w *pcapgen.Writer, d time.Duration) { w.Now = pcapgen.Start.Add(d) }
	feed(t, e, func(w *pcapgen.Writer) {
		for c := range flooders {
			cam := netip.AddrFrom4([4]byte{192, 168, 50, byte(100 + c)})
			for i := range perCam {
				at(w, time.Duration(i)*600*time.Millisecond+time.Duration(c)*time.Millisecond)
				dst := netip.AddrFrom4([4]byte{100, 64 + byte(c), byte(i >> 8), byte(i)})
				_ = w.TCPSegment(ap(cam, uint16(20000+i)), ap(dst, 80), pcapgen.SYN, 1, 0, nil, 0)
			}
		}
		for i := range 6 { // beacon: every 30 s
			at(w, 5*time.Second+time.Duration(i)*30*time.Second)
			_ = w.TCPSegment(ap(beaconCam, uint16(30000+i)), ap(netip.MustParseAddr("198.51.100.200"), 8443), pcapgen.SYN, 1, 0, nil, 0)
		}
		at(w, 70*time.Second)
		_ = w.UDP(ap(dnsCam, 5353), ap(gw, 53), pcapgen.DNSQuery(0x1234, "litedev.hik-connect.com", 1), 0)
		at(w, 80*time.Second)
		_ = w.UDP(ap(resCam, 5354), ap(netip.MustParseAddr("8.8.8.8"), 53), pcapgen.DNSQuery(0x1235, "time.example.com", 1), 0)
		at(w, 90*time.Second)
		_ = w.TCPSegment(ap(oddCam, 40000), ap(netip.MustParseAddr("203.0.113.99"), 443), pcapgen.SYN, 1, 0, nil, 0)
		for i := range 50 {
			at(w, 100*time.Second+time.Duration(i)*100*time.Millisecond)
			_ = w.TCPSegment(ap(sweepCam, uint16(41000+i)), ap(netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i)}), 22), pcapgen.SYN, 1, 0, nil, 0)
		}
	})

	if n, a := countFrom(sink.alerts, KindBeacon, beaconCam); n != 1 || a.Dst != "198.51.100.200" {
		t.Errorf("beacon: %d alerts (%+v), want 1", n, a)
	}
	if n, a := countFrom(sink.alerts, KindVendorCloud, dnsCam); n != 1 || a.Domain != "litedev.hik-connect.com" {
		t.Errorf("vendor-cloud: %d alerts (%+v), want 1", n, a)
	}
	if n, a := countFrom(sink.alerts, KindUnexpectedDestination, resCam); n != 1 || a.Severity != "high" || a.Dst != "8.8.8.8" {
		t.Errorf("public resolver: %d alerts (%+v), want 1 high", n, a)
	}
	if n, a := countFrom(sink.alerts, KindUnexpectedDestination, oddCam); n != 1 || a.Dst != "203.0.113.99" {
		t.Errorf("unexpected destination: %d alerts (%+v), want 1", n, a)
	}
	if n, a := countFrom(sink.alerts, KindLateral, sweepCam); n != 1 || len(a.Destinations) != 50 || !strings.Contains(a.Detail, "on 50 targets") {
		t.Errorf("lateral sweep: %d alerts, want 1 listing 50 targets: %+v", n, a)
	}
	for c := range flooders {
		cam := netip.AddrFrom4([4]byte{192, 168, 50, byte(100 + c)})
		checkFlooder(t, sink.alerts, cam, c == 0, perCam)
	}
	t.Logf("%d alerts for %d flows; state evictions %d", len(sink.alerts), flooders*perCam+64, e.m.StateEvictions.Load())
	if len(sink.alerts) > flooders*(5+scanDistinct)+10 {
		t.Errorf("%d alerts: the flood was not rolled up", len(sink.alerts))
	}
}

// countFrom counts the alerts of a kind from a camera, but for the repeats
// folded after a high alert sent at once; last is the last of them, or the
// repeat when there is one (it has the whole window).
func countFrom(alerts []Alert, kind string, cam netip.Addr) (n int, last Alert) {
	for _, a := range alerts {
		if a.Kind == kind && a.Src == cam.String() {
			if !a.Repeat {
				n++
			}
			last = a
		}
	}
	return n, last
}

// checkFlooder: a flooding camera's flows beyond the first scanDistinct of
// a window roll up into one scan alert per window, none lost; first also
// checks the scan alert's listing.
func checkFlooder(t *testing.T, alerts []Alert, cam netip.Addr, first bool, perCam uint64) {
	t.Helper()
	scans, s := countFrom(alerts, KindScan, cam)
	unexp, _ := countFrom(alerts, KindUnexpectedDestination, cam)
	// 400 flows over 240 s: 4 or 5 windows; 20 one by one in the
	// first, then all rolled up.
	if scans < 4 || scans > 5 || unexp != scanDistinct {
		t.Errorf("camera %s: %d scan and %d unexpected-destination alerts, want one scan per window and %d others", cam, scans, unexp, scanDistinct)
	}
	var rolled uint64
	for _, a := range alerts {
		if a.Kind == KindScan && a.Src == cam.String() {
			rolled += a.Count
		}
	}
	if rolled+uint64(unexp) != perCam {
		t.Errorf("camera %s: %d flows rolled up + %d alerted one by one, want %d", cam, rolled, unexp, perCam)
	}
	if first && (len(s.Destinations) != scanTop || !strings.Contains(s.Detail, "scan or flood")) {
		t.Errorf("scan alert %+v", s)
	}
}

package egress

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestFloodingCameraKeepsToItsOwnState: with the state bounds of the
// dns-tunnel, volume and new-destination detectors lowered, flooding
// cameras (one querying 400 ever new domains, one contacting 400 ever new
// destinations, 40 more each sending to an outside host) cannot make
// another camera lose its state: a DNS tunnel, a bulk upload, a learned
// destination and a new destination of other cameras, interleaved with the
// flood, each alert exactly once, and the learned destination does not.
func TestFloodingCameraKeepsToItsOwnState(t *testing.T) {
	p, err := parsePolicy("test.yml", []byte(testPolicy+"baseline: {learn: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := LoadBaseline(filepath.Join(t.TempDir(), "base.json"), 30*time.Second, 64)
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	e, err := NewEngine(Config{Policy: p, Sink: sink, Baseline: base, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	dns := e.detectors[dnsTunnelDetector.index].(*dnsTunnel)
	dns.windows.maxCam, dns.windows.max = 8, 32
	vol := e.detectors[volumeDetector.index].(*volume)
	vol.windows.max = 8
	base.dests.maxCam = 8

	c := floodCams{
		dnsFlood:  netip.MustParseAddr("192.168.50.20"),
		destFlood: netip.MustParseAddr("192.168.50.21"),
		tunnelCam: netip.MustParseAddr("192.168.50.30"),
		bulkCam:   netip.MustParseAddr("192.168.50.31"),
		newCam:    netip.MustParseAddr("192.168.50.32"),
		gw:        netip.MustParseAddr("192.168.50.1"),
		known:     netip.MustParseAddr("198.51.100.10"),
		fresh:     netip.MustParseAddr("198.51.100.11"),
		upload:    netip.MustParseAddr("203.0.113.50"),
	}
	feed(t, e, c.write)
	tunnelCam, bulkCam, newCam, known, fresh := c.tunnelCam, c.bulkCam, c.newCam, c.known, c.fresh

	count := func(kind string, cam netip.Addr, dst string) int {
		n := 0
		for _, a := range sink.alerts {
			if a.Kind == kind && a.Src == cam.String() && (dst == "" || a.Dst == dst) && !a.Repeat {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		kind string
		cam  netip.Addr
		dst  string
		want int
	}{
		{KindDNSTunnel, tunnelCam, "", 1},
		{KindVolume, bulkCam, "", 1},
		{KindNewDestination, newCam, fresh.String(), 1},
		{KindNewDestination, newCam, known.String(), 0},
	} {
		if got := count(c.kind, c.cam, c.dst); got != c.want {
			t.Errorf("%s of %s %s: %d alerts, want %d", c.kind, c.cam, c.dst, got, c.want)
		}
	}
	if ev := e.m.StateEvictions.Load(); ev == 0 {
		t.Error("the bounds were not reached (no state evictions)")
	}
	for cam, cs := range base.dests.cams {
		if len(cs) > 8 {
			t.Errorf("camera %s holds %d baseline destinations, over its bound 8", cam, len(cs))
		}
	}
	if dns.windows.n > 32 || vol.windows.n > 8 {
		t.Errorf("state over its bounds: %d dns windows, %d volume windows", dns.windows.n, vol.windows.n)
	}
	if t.Failed() {
		var b strings.Builder
		for _, a := range sink.alerts {
			fmt.Fprintf(&b, "%s %s %s %d\n", a.Kind, a.Src, a.Dst, a.Count)
		}
		t.Log(b.String())
	}
}

// floodCams are the cameras and hosts of TestFloodingCameraKeepsToItsOwnState.
type floodCams struct {
	dnsFlood, destFlood, tunnelCam, bulkCam, newCam netip.Addr
	gw, known, fresh, upload                        netip.Addr
}

// write is the test's capture: a learning period, then the floods with the
// other cameras' events interleaved, then the new destination.
func (c floodCams) write(w *pcapgen.Writer) {
	dnsFlood, destFlood, tunnelCam, bulkCam, newCam := c.dnsFlood, c.destFlood, c.tunnelCam, c.bulkCam, c.newCam
	gw, known, fresh, upload := c.gw, c.known, c.fresh, c.upload
	at := func(w *pcapgen.Writer, d time.Duration) { w.Now = pcapgen.Start.Add(d) }
	// Learning period: the other camera's usual destination, after the
	// flooder has had 200 destinations of its own.
	for i := range 200 {
		at(w, time.Duration(i)*50*time.Millisecond)
		_ = w.TCPSegment(ap(destFlood, uint16(20000+i)), ap(netip.AddrFrom4([4]byte{100, 64, 1, byte(i)}), 443), pcapgen.SYN, 1, 0, nil, 0)
	}
	at(w, 15*time.Second)
	_ = w.TCPSegment(ap(newCam, 40000), ap(known, 443), pcapgen.SYN, 1, 0, nil, 0)
	// The bulk upload's window starts before the flood of cameras.
	at(w, 31*time.Second)
	_ = w.UDP(ap(bulkCam, 50000), ap(upload, 9000), nil, 1200)
	for i := range 400 {
		ts := 32*time.Second + time.Duration(i)*200*time.Millisecond
		at(w, ts)
		_ = w.UDP(ap(dnsFlood, uint16(10000+i)), ap(gw, 53), pcapgen.DNSQuery(uint16(i), fmt.Sprintf("www.flood%d.example", i), 1), 0)
		at(w, ts+time.Millisecond)
		_ = w.TCPSegment(ap(destFlood, uint16(30000+i)), ap(netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), 443), pcapgen.SYN, 1, 0, nil, 0)
		if i < 40 { // 40 cameras start a volume window each
			at(w, ts+2*time.Millisecond)
			_ = w.UDP(ap(netip.AddrFrom4([4]byte{192, 168, 50, byte(100 + i)}), 50001), ap(upload, 9001), nil, 100)
		}
		if i%10 == 0 { // the tunnel: 40 long names under one domain
			at(w, ts+3*time.Millisecond)
			name := fmt.Sprintf("%032x.t.tunnel-example.net", uint64(i)*0x9e3779b97f4a7c15)
			_ = w.UDP(ap(tunnelCam, uint16(5000+i)), ap(gw, 53), pcapgen.DNSQuery(uint16(i), name, 16), 0)
		}
		if i%4 == 0 { // the bulk upload: 100 × 1200 bytes > 100 kB
			at(w, ts+4*time.Millisecond)
			_ = w.UDP(ap(bulkCam, 50000), ap(upload, 9000), nil, 1200)
		}
	}
	at(w, 120*time.Second)
	_ = w.TCPSegment(ap(newCam, 40001), ap(known, 443), pcapgen.SYN, 1, 0, nil, 0)
	_ = w.TCPSegment(ap(newCam, 40002), ap(fresh, 443), pcapgen.SYN, 1, 0, nil, 0)
}

// TestVolumeWindowCachedInFlow: a flow's cached volume window is left once
// another flow of its camera starts the next window, or once the window is
// dropped to make room; the flow then counts in the camera's current one.
func TestVolumeWindowCachedInFlow(t *testing.T) {
	e := newPolicyEngine(t)
	vol := e.detectors[volumeDetector.index].(*volume)
	cam := netip.MustParseAddr("192.168.50.10")
	fa := &flow{cam: cam, peer: netip.MustParseAddr("203.0.113.1"), outbound: true, proto: protoUDP, port: 9000}
	fb := &flow{cam: cam, peer: netip.MustParseAddr("203.0.113.2"), outbound: true, proto: protoUDP, port: 9000}
	p := &packet{ipLen: 100}
	win := int64(e.p.Thresholds.Volume.Window)
	current := func() *volumeWindow { w, _ := vol.windows.get(cam, struct{}{}); return w }

	vol.cameraSent(fa, p, 1, true)
	w1 := current()
	vol.cameraSent(fb, p, 1+win, true) // fb starts the next window
	w2 := current()
	vol.cameraSent(fa, p, 2+win, false)
	if w2 == w1 || !w1.gone || current() != w2 || w2.bytes != 200 || w1.bytes != 100 {
		t.Fatalf("next window: old %+v, new %+v, current %p (want fa's second packet in the new window)", w1, w2, current())
	}
	vol.windows.dropLowest(cam, 3+win)
	if current() != nil || !w2.gone {
		t.Fatalf("dropped window still held or not marked gone: %+v", w2)
	}
	vol.cameraSent(fa, p, 3+win, false)
	if w3 := current(); w3 == nil || w3 == w2 || w3.bytes != 100 || vol.windows.n != 1 {
		t.Fatalf("after the drop: window %+v, %d windows (want a new one with fa's 100 bytes)", w3, vol.windows.n)
	}
}

// TestRegisteredDomainMemo: the memoized registered domain is the public
// suffix + 1 (or the name), on a first and a repeated query, and the memo
// stays within maxRegMemo names.
func TestRegisteredDomainMemo(t *testing.T) {
	e := newPolicyEngine(t)
	d := e.detectors[dnsTunnelDetector.index].(*dnsTunnel)
	want := map[string]string{
		"pool.ntp.org": "ntp.org", "a.b.example.co.uk": "example.co.uk",
		"litedev.hik-connect.com": "hik-connect.com", "localhost": "localhost", "co.uk": "co.uk",
	}
	for range 2 {
		for name, reg := range want {
			if got := d.registered(name); got != reg {
				t.Errorf("registered(%q) = %q, want %q", name, got, reg)
			}
		}
	}
	for i := range maxRegMemo + 10 {
		d.registered(fmt.Sprintf("n%d.example.net", i))
	}
	if len(d.regs) > maxRegMemo {
		t.Errorf("memo holds %d names, bound %d", len(d.regs), maxRegMemo)
	}
}

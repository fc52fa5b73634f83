package egress

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// floodFullPolicy has room for 250 flooding cameras (192.168.51.0/24)
// beside the planted ones (192.168.50.0/24); every bound is the default.
const floodFullPolicy = `cameras:
  networks: [192.168.50.0/24, 192.168.51.0/24]
  exclude: [192.168.50.1, 192.168.50.2, 192.168.50.3]
allow:
  - {host: 192.168.50.2}
  - {host: 192.168.50.1, proto: udp, port: 53}
lateral: {core: [10.0.0.0/8]}
`

// TestFloodFullScale is the flood of issue 15 at full scale: 250 cameras
// open 1,000,000 distinct flows (4,000 each, SYNs to outside hosts) in 60
// seconds of capture, with the default bounds, while unrelated cameras
// beacon, query a vendor domain, tunnel through DNS, use a public
// resolver, contact one unexpected host and sweep 50 core hosts' SSH.
// Every planted event alerts exactly once; each flooding camera's flows
// are 20 unexpected-destination alerts and the rest rolled up into a scan
// alert per window, none lost. It takes about 10 s and 200 MB, so it
// runs only with CORDON_EGRESS_FLOOD_FULL=1 (TestFloodHidesNothing is the
// same at 12,000 flows with the bounds lowered, always run).
func TestFloodFullScale(t *testing.T) {
	if os.Getenv("CORDON_EGRESS_FLOOD_FULL") != "1" {
		t.Skip("set CORDON_EGRESS_FLOOD_FULL=1 to run the 1,000,000-flow flood (about 10 s)")
	}
	// The capture is written as it is read, through a pipe: memory stays
	// the engine's.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeFullFlood(pw, floodPlanted())) }()
	e, sink := newTestEngine(t, floodFullPolicy)
	src, err := openStream("flood", pr)
	if err != nil {
		t.Fatal(err)
	}
	start, cpu0 := time.Now(), testutil.CPUTime(t)
	if err := e.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	elapsed, cpu := time.Since(start), testutil.CPUTime(t)-cpu0

	if n := e.m.Flows.Load(); n < fullFlooders*fullPerCam {
		t.Errorf("%d flows, want at least %d", n, fullFlooders*fullPerCam)
	}
	checkPlanted(t, sink.alerts)
	for c := range fullFlooders {
		checkFullFlooder(t, sink.alerts, netip.AddrFrom4([4]byte{192, 168, 51, byte(1 + c)}))
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d flows, %d alerts in %s (%s CPU); state evictions %d, flow evictions %d; peak RSS %s, Go heap now %d MiB",
		e.m.Flows.Load(), len(sink.alerts), elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond),
		e.m.StateEvictions.Load(), e.m.FlowEvictions.Load(), peakRSS(), ms.HeapAlloc>>20)
	if limit := fullFlooders*(2+scanDistinct) + 20; len(sink.alerts) > limit {
		t.Errorf("%d alerts, want at most %d: the flood was not rolled up", len(sink.alerts), limit)
	}
}

const fullFlooders, fullPerCam = 250, 4000

// The planted cameras of TestFloodFullScale and TestFloodHidesNothing.
var (
	beaconCam = netip.MustParseAddr("192.168.50.11")
	dnsCam    = netip.MustParseAddr("192.168.50.12")
	resCam    = netip.MustParseAddr("192.168.50.13")
	oddCam    = netip.MustParseAddr("192.168.50.14")
	sweepCam  = netip.MustParseAddr("192.168.50.15")
	tunnelCam = netip.MustParseAddr("192.168.50.16")
)

type floodEvent struct {
	at   time.Duration
	emit func(w *pcapgen.Writer)
}

// floodPlanted returns the planted events, in time order.
func floodPlanted() []floodEvent {
	gw := netip.MustParseAddr("192.168.50.1")
	var planted []floodEvent
	add := func(at time.Duration, emit func(w *pcapgen.Writer)) {
		planted = append(planted, floodEvent{at, emit})
	}
	for i := range 6 { // beacon: every 11 s
		add(2*time.Second+time.Duration(i)*11*time.Second, func(w *pcapgen.Writer) {
			_ = w.TCPSegment(ap(beaconCam, uint16(30000+i)), ap(netip.MustParseAddr("198.51.100.200"), 8443), pcapgen.SYN, 1, 0, nil, 0)
		})
	}
	for i := range 30 { // DNS tunnel: 30 long hex names, every 1.5 s
		name := fmt.Sprintf("%016x%016x.data-drop.net", uint64(i+1)*0x9e3779b97f4a7c15, uint64(i+3)*0xbf58476d1ce4e5b9)
		add(3*time.Second+time.Duration(i)*1500*time.Millisecond, func(w *pcapgen.Writer) {
			_ = w.UDP(ap(tunnelCam, uint16(33000+i)), ap(gw, 53), pcapgen.DNSQuery(uint16(i), name, 16), 0)
		})
	}
	add(20*time.Second, func(w *pcapgen.Writer) {
		_ = w.UDP(ap(dnsCam, 5353), ap(gw, 53), pcapgen.DNSQuery(0x1234, "litedev.hik-connect.com", 1), 0)
	})
	add(30*time.Second, func(w *pcapgen.Writer) {
		_ = w.UDP(ap(resCam, 5354), ap(netip.MustParseAddr("8.8.8.8"), 53), pcapgen.DNSQuery(0x1235, "time.example.com", 1), 0)
	})
	add(40*time.Second, func(w *pcapgen.Writer) {
		_ = w.TCPSegment(ap(oddCam, 40000), ap(netip.MustParseAddr("203.0.113.99"), 443), pcapgen.SYN, 1, 0, nil, 0)
	})
	for i := range 50 {
		add(45*time.Second+time.Duration(i)*100*time.Millisecond, func(w *pcapgen.Writer) {
			_ = w.TCPSegment(ap(sweepCam, uint16(41000+i)), ap(netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i)}), 22), pcapgen.SYN, 1, 0, nil, 0)
		})
	}
	slices.SortStableFunc(planted, func(a, b floodEvent) int { return cmp.Compare(a.at, b.at) })
	return planted
}

// writeFullFlood writes the flood, SYNs of the flooding cameras in turn
// over 60 s, with the planted events at their times.
func writeFullFlood(out io.Writer, planted []floodEvent) error {
	bw := bufio.NewWriterSize(out, 1<<20)
	w, err := pcapgen.NewWriter(bw, pcapgen.Start)
	if err != nil {
		return err
	}
	const step = 60 * time.Second / (fullFlooders * fullPerCam)
	next := 0
	for i := range fullPerCam {
		for c := range fullFlooders {
			now := time.Duration(i*fullFlooders+c) * step
			for ; next < len(planted) && planted[next].at <= now; next++ {
				w.Now = pcapgen.Start.Add(planted[next].at)
				planted[next].emit(w)
			}
			w.Now = pcapgen.Start.Add(now)
			cam := netip.AddrFrom4([4]byte{192, 168, 51, byte(1 + c)})
			d := 0x64400000 + uint32(c)<<12 + uint32(i) // 100.64.0.0/10: distinct per camera and flow
			dst := netip.AddrFrom4([4]byte{byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)})
			if err := w.TCPSegment(ap(cam, uint16(20000+i)), ap(dst, 80), pcapgen.SYN, 1, 0, nil, 0); err != nil {
				return err
			}
		}
	}
	for ; next < len(planted); next++ {
		w.Now = pcapgen.Start.Add(planted[next].at)
		planted[next].emit(w)
	}
	return bw.Flush()
}

// checkPlanted: each planted event of floodPlanted alerted once.
func checkPlanted(t *testing.T, alerts []Alert) {
	t.Helper()
	if n, a := countFrom(alerts, KindBeacon, beaconCam); n != 1 || a.Dst != "198.51.100.200" {
		t.Errorf("beacon: %d alerts (%+v), want 1", n, a)
	}
	if n, a := countFrom(alerts, KindVendorCloud, dnsCam); n != 1 || a.Domain != "litedev.hik-connect.com" {
		t.Errorf("vendor-cloud: %d alerts (%+v), want 1", n, a)
	}
	if n, a := countFrom(alerts, KindDNSTunnel, tunnelCam); n != 1 || a.Domain != "data-drop.net" {
		t.Errorf("dns-tunnel: %d alerts (%+v), want 1", n, a)
	}
	if n, a := countFrom(alerts, KindUnexpectedDestination, resCam); n != 1 || a.Severity != "high" || a.Dst != "8.8.8.8" {
		t.Errorf("public resolver: %d alerts (%+v), want 1 high", n, a)
	}
	if n, a := countFrom(alerts, KindUnexpectedDestination, oddCam); n != 1 || a.Dst != "203.0.113.99" {
		t.Errorf("unexpected destination: %d alerts (%+v), want 1", n, a)
	}
	if n, a := countFrom(alerts, KindLateral, sweepCam); n != 1 || len(a.Destinations) != 50 || !strings.Contains(a.Detail, "on 50 targets") {
		t.Errorf("lateral sweep: %d alerts, want 1 listing 50 targets: %+v", n, a)
	}
}

// checkFullFlooder: a flooding camera's 4,000 flows are 20
// unexpected-destination alerts and the rest rolled up in one scan alert
// per window (60 s: one or two windows), none lost.
func checkFullFlooder(t *testing.T, alerts []Alert, cam netip.Addr) {
	t.Helper()
	scans, _ := countFrom(alerts, KindScan, cam)
	unexp, _ := countFrom(alerts, KindUnexpectedDestination, cam)
	var rolled uint64
	for _, a := range alerts {
		if a.Kind == KindScan && a.Src == cam.String() {
			rolled += a.Count
		}
	}
	if scans < 1 || scans > 2 || unexp != scanDistinct || rolled+uint64(unexp) != fullPerCam {
		t.Errorf("camera %s: %d scan alerts rolling up %d flows, %d unexpected-destination; want 1 or 2 scans, %d others, %d flows in all", cam, scans, rolled, unexp, scanDistinct, fullPerCam)
	}
}

// peakRSS is the process's peak resident size (Linux: VmHWM), or "?".
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

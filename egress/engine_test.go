package egress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/metricstest"
	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

const testPolicy = `cameras:
  networks: [192.168.50.0/24]
  exclude: [192.168.50.1, 192.168.50.2, 192.168.50.3]
allow:
  - {host: 192.168.50.2}
  - {host: 192.168.50.1, proto: udp, port: 53}
lateral: {core: [10.0.0.0/8]}
thresholds:
  volume: {bytes: 100kB}
flows: {max: 100}
`

func newTestEngine(t testing.TB, policy string) (*Engine, *memSink) {
	t.Helper()
	p, err := parsePolicy("test.yml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	e, err := NewEngine(Config{Policy: p, Sink: sink, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return e, sink
}

// newPolicyEngine is an engine on testdata/policy.yml with a memSink and no
// logger, for fuzzing and benchmarks.
func newPolicyEngine(tb testing.TB) *Engine {
	tb.Helper()
	p, err := LoadPolicy("testdata/policy.yml")
	if err != nil {
		tb.Fatal(err)
	}
	e, err := NewEngine(Config{Policy: p, Sink: &memSink{}})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// feed writes packets with gen and runs them through e.
func feed(t testing.TB, e *Engine, gen func(w *pcapgen.Writer)) {
	t.Helper()
	var b bytes.Buffer
	w, err := pcapgen.NewWriter(&b, pcapgen.Start)
	if err != nil {
		t.Fatal(err)
	}
	w.Sorted = true
	gen(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	src, err := openStream("test", io.NopCloser(&b))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

var (
	ap    = netip.AddrPortFrom
	camA  = netip.MustParseAddr("192.168.50.10")
	proxy = netip.MustParseAddr("192.168.50.2")
)

// TestFlowTableBounded floods the engine with new flows: the table stays at
// its cap and evictions are counted.
func TestFlowTableBounded(t *testing.T) {
	e, _ := newTestEngine(t, testPolicy)
	feed(t, e, func(w *pcapgen.Writer) {
		for i := range 1000 {
			_ = w.TCPSegment(ap(camA, uint16(20000+i)), ap(proxy, 80), pcapgen.SYN, 1, 0, nil, 0)
		}
	})
	m := e.Metrics()
	if got := e.flows.len(); got != 100 {
		t.Errorf("flow table holds %d flows, want the cap 100", got)
	}
	if m.Flows.Load() != 1000 || m.FlowEvictions.Load() != 900 {
		t.Errorf("flows %d, evictions %d; want 1000 and 900", m.Flows.Load(), m.FlowEvictions.Load())
	}
}

// TestDirection: connections opened by an allowed peer towards a camera are
// allowed, and what the camera sends back is not volume; connections opened
// by a stranger are reported as inbound.
func TestDirection(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	stranger := netip.MustParseAddr("192.168.60.5")
	feed(t, e, func(w *pcapgen.Writer) {
		c := w.Dial(ap(proxy, 40000), ap(camA, 554))
		for range 200 {
			c.Reply(nil, 1400) // 280 kB camera → proxy, above the 100 kB volume threshold
		}
		_ = c.Close()
		s := w.Dial(ap(stranger, 40001), ap(camA, 80))
		s.Send([]byte("GET / HTTP/1.1\r\n\r\n"), 0)
		for range 200 {
			s.Reply(nil, 1400)
		}
		_ = s.Close()
	})
	if len(sink.alerts) != 1 {
		t.Fatalf("got %d alerts, want 1 (inbound from the stranger): %+v", len(sink.alerts), sink.alerts)
	}
	a := sink.alerts[0]
	if a.Kind != KindUnexpectedDestination || a.Dst != "192.168.60.5" || a.Port != 80 || a.Severity != "low" {
		t.Fatalf("alert %+v", a)
	}
}

// TestMidStreamDirection: a capture that starts in the middle of the proxy's
// RTSP session (no SYN) still orients the flow from the proxy.
func TestMidStreamDirection(t *testing.T) {
	e, sink := newTestEngine(t, `cameras: {networks: [192.168.50.0/24]}
allow:
  - {host: 192.168.60.9, proto: tcp, port: 554}
`)
	nvr := netip.MustParseAddr("192.168.60.9")
	feed(t, e, func(w *pcapgen.Writer) {
		for range 10 {
			_ = w.TCPSegment(ap(camA, 554), ap(nvr, 40000), pcapgen.ACK, 1, 1, nil, 1000)
		}
	})
	if len(sink.alerts) != 0 {
		t.Fatalf("alerts on a mid-stream allowed RTSP pull: %+v", sink.alerts)
	}
}

// TestFlowRecords drives the engine with NetFlow-style records.
func TestFlowRecords(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	t0 := pcapgen.Start
	rec := func(src, dst netip.AddrPort, proto uint8, at time.Duration, bytes uint64) FlowRecord {
		return FlowRecord{Key: FlowKey{Proto: proto, Src: src, Dst: dst}, Start: t0.Add(at), End: t0.Add(at + time.Second), Packets: 1 + bytes/1400, Bytes: bytes}
	}
	vendor := netip.MustParseAddr("203.0.113.80")
	// Allowed both ways: proxy pulls RTSP.
	e.HandleFlow(context.Background(), rec(ap(proxy, 40000), ap(camA, 554), 6, 0, 5000))
	e.HandleFlow(context.Background(), rec(ap(camA, 554), ap(proxy, 40000), 6, 0, 5_000_000))
	// Lateral: SMB to a core server.
	e.HandleFlow(context.Background(), rec(ap(camA, 50001), ap(netip.MustParseAddr("10.0.0.5"), 445), 6, 5*time.Second, 120))
	// Dahua P2P port: vendor-cloud and unexpected-destination; 200 kB: volume
	// (sent at once, on crossing the threshold).
	e.HandleFlow(context.Background(), rec(ap(camA, 50000), ap(vendor, 8800), 17, 10*time.Second, 200_000))
	e.HandleFlow(context.Background(), rec(ap(vendor, 8800), ap(camA, 50000), 17, 10*time.Second, 999_000))
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]Alert{}
	for _, a := range sink.alerts {
		kinds[a.Kind] = a
	}
	if len(sink.alerts) != 4 {
		t.Errorf("got %d alerts, want 4: %+v", len(sink.alerts), sink.alerts)
	}
	if a := kinds[KindVolume]; a.Bytes != 200_120 || a.Dst != "203.0.113.80" {
		t.Errorf("volume %+v (only what the camera sent to non-allowed peers counts: 200 kB + 120 B)", a)
	}
	if a := kinds[KindVendorCloud]; a.Port != 8800 || a.Proto != "UDP" || a.SrcPort != 50000 || a.DestPort != 8800 || a.CommunityID == "" || a.SeverityID != 4 {
		t.Errorf("vendor-cloud %+v", a)
	}
	if a := kinds[KindLateral]; a.Dst != "10.0.0.5" || a.Port != 445 {
		t.Errorf("lateral %+v", a)
	}
	if _, ok := kinds[KindUnexpectedDestination]; !ok {
		t.Errorf("no unexpected-destination")
	}
}

// TestAggregation: repeats within the window fold into one alert; after the
// window a new alert starts.
func TestAggregation(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	dst := netip.MustParseAddr("203.0.113.9")
	feed(t, e, func(w *pcapgen.Writer) {
		for i := range 5 { // 5 connections within 50 s: one alert, count 5
			w.Now = pcapgen.Start.Add(time.Duration(i) * 10 * time.Second)
			_ = w.TCPSegment(ap(camA, uint16(30000+i)), ap(dst, 8080), pcapgen.SYN, 1, 0, nil, 0)
		}
		w.Now = pcapgen.Start.Add(3 * time.Minute) // a later window
		_ = w.TCPSegment(ap(camA, 31000), ap(dst, 8081), pcapgen.SYN, 1, 0, nil, 0)
	})
	if len(sink.alerts) != 2 || sink.alerts[0].Count != 5 || sink.alerts[1].Count != 1 {
		t.Fatalf("alerts %+v", sink.alerts)
	}
	if sink.alerts[0].LastSeen.Sub(sink.alerts[0].FirstSeen) != 40*time.Second {
		t.Errorf("first/last seen %v %v", sink.alerts[0].FirstSeen, sink.alerts[0].LastSeen)
	}
}

// TestLinkTypes: raw IP and Linux cooked captures decode like Ethernet.
func TestLinkTypes(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	var b bytes.Buffer
	w, _ := pcapgen.NewWriter(&b, pcapgen.Start)
	_ = w.UDP(ap(camA, 5000), ap(netip.MustParseAddr("8.8.8.8"), 53), pcapgen.DNSQuery(1, "x.secu100.net", 1), 0)
	src, err := openStream("t", io.NopCloser(&b))
	if err != nil {
		t.Fatal(err)
	}
	frame, ci, err := src.ReadPacketData()
	if err != nil {
		t.Fatal(err)
	}
	e.HandlePacket(context.Background(), frame[14:], ci, layers.LinkTypeRaw)
	sll := append([]byte{0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}, frame[14:]...)
	ci.Timestamp = ci.Timestamp.Add(time.Hour) // another window
	e.HandlePacket(context.Background(), sll, ci, layers.LinkTypeLinuxSLL)
	e.HandlePacket(context.Background(), []byte{1, 2, 3}, gopacket.CaptureInfo{Timestamp: ci.Timestamp}, layers.LinkTypeEthernet)
	_ = e.Close(context.Background())
	vendor := sink.count(KindVendorCloud, "x.secu100.net")
	if vendor != 2 {
		t.Fatalf("vendor-cloud alerts %d, want 2 (raw and SLL): %+v", vendor, sink.alerts)
	}
	if e.Metrics().DecodeErrors.Load()+e.Metrics().NonIP.Load() != 1 {
		t.Errorf("the 3-byte frame was not counted as a drop")
	}
}

// FuzzHandlePacket feeds arbitrary frames through the whole packet path,
// seeded with every packet of the planted capture.
func FuzzHandlePacket(f *testing.F) {
	src, err := OpenFile("testdata/planted.pcap", nil)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; ; i++ {
		data, _, err := src.ReadPacketData()
		if err != nil {
			break
		}
		// UDP (DNS, QUIC, signatures) and small TCP (SYNs, HTTP), and every
		// 20th other packet (the RTSP and upload bulk is repetitive).
		if len(data) > 60 && ((data[23] == 17 || len(data) < 200) || i%20 == 0) {
			f.Add(append([]byte(nil), data...), uint8(i))
		}
	}
	src.Close()
	lts := []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeLinuxSLL, layers.LinkTypeNull, layers.LinkTypeLinuxSLL2}
	// Every frame of the encapsulation capture (tunnels, fragments, IPv6
	// extension headers), with its link type.
	for _, c := range pcapgen.EncapCases() {
		for _, fr := range c.Frames {
			if i := slices.Index(lts, pcapgen.EncapLinkTypes[c.Iface]); i >= 0 {
				f.Add(fr, uint8(i))
			}
		}
	}
	// Tunnels a camera opens itself (decode.go: the tunnel is a flow too).
	out := netip.MustParseAddr("203.0.113.66")
	inner := atkIP4(out, camA, 17, 1, 0, false, nil, atkUDP(1, 2, []byte("x")))
	f.Add(atkEther(0x0800, atkIP4(camA, out, 17, 1, 0, false, nil, atkUDP(40000, 4789, append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, atkEther(0x0800, inner)...)))), uint8(0))
	f.Add(atkEther(0x0800, atkIP4(camA, out, 47, 1, 0, false, nil, append([]byte{0, 0, 0x08, 0x00}, inner...))), uint8(0))
	f.Add(atkEther(0x8100, append([]byte{0, 50, 0x08, 0x00}, atkIP4(camA, out, 4, 1, 0, false, nil, inner)...)), uint8(0))
	// VXLAN on Linux's port, valid and not; link-layer control frames.
	f.Add(atkEther(0x0800, atkIP4(camA, out, 17, 1, 0, false, nil, atkUDP(40000, 8472, append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, atkEther(0x0800, inner)...)))), uint8(0))
	f.Add(atkEther(0x0800, atkIP4(camA, out, 17, 1, 0, false, nil, atkUDP(40000, 8472, append([]byte{0x08, 0, 0, 0, 0, 0, 1, 1}, atkEther(0x0800, inner)...)))), uint8(0))
	for _, fr := range linkControlFrames() {
		f.Add(fr, uint8(0))
	}
	e := newPolicyEngine(f)
	ts := pcapgen.Start
	f.Fuzz(func(t *testing.T, data []byte, lt uint8) {
		ts = ts.Add(time.Second)
		e.HandlePacket(context.Background(), data, gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, lts[int(lt)%len(lts)])
		if e.flows.len() > e.p.Flows.Max {
			t.Fatalf("flow table over its cap")
		}
	})
}

// BenchmarkEngine measures the packet path with all detections on over the
// benchmark traffic mix (pcapgen.Bulk), in memory: packets/s per core.
func BenchmarkEngine(b *testing.B) {
	var buf bytes.Buffer
	if err := pcapgen.Bulk(&buf, 200_000); err != nil {
		b.Fatal(err)
	}
	src, err := openStream("bulk", io.NopCloser(&buf))
	if err != nil {
		b.Fatal(err)
	}
	type pk struct {
		data []byte
		ci   gopacket.CaptureInfo
	}
	var pkts []pk
	for {
		data, ci, err := src.ReadPacketData()
		if err != nil {
			break
		}
		pkts = append(pkts, pk{append([]byte(nil), data...), ci})
	}
	e := newPolicyEngine(b)
	b.ReportAllocs()
	cpu0 := testutil.CPUTime(b)
	b.ResetTimer()
	shift := time.Duration(0)
	for i := 0; i < b.N; i++ {
		k := pkts[i%len(pkts)]
		if i%len(pkts) == 0 && i > 0 {
			shift += time.Hour
		}
		k.ci.Timestamp = k.ci.Timestamp.Add(shift)
		e.HandlePacket(context.Background(), k.data, k.ci, layers.LinkTypeEthernet)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	// CPU time, not wall time: packets per second of one core even when the
	// machine is shared.
	b.ReportMetric(float64(b.N)/(testutil.CPUTime(b)-cpu0).Seconds(), "packets/cpu-s")
}

// TestLiveWindows: on a live input the engine runs on capture time, and
// Advance (called every second by the command) closes aggregation windows
// while the network is quiet. Timed with testing/synctest's fake clock.
func TestLiveWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, sink := newTestEngine(t, testPolicy)
		var b bytes.Buffer
		w, _ := pcapgen.NewWriter(&b, time.Now())
		_ = w.TCPSegment(ap(camA, 30000), ap(netip.MustParseAddr("203.0.113.9"), 8080), pcapgen.SYN, 1, 0, nil, 0)
		src, _ := openStream("live", io.NopCloser(&b))
		data, ci, _ := src.ReadPacketData()
		e.HandlePacket(context.Background(), data, ci, layers.LinkTypeEthernet)
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for i := 0; i < 59; i++ {
			e.Advance(context.Background(), <-ticker.C)
		}
		if n := len(sink.alerts); n != 0 {
			t.Fatalf("%d alerts before the 1m window closed", n)
		}
		for i := 0; i < 2; i++ {
			e.Advance(context.Background(), <-ticker.C)
		}
		if n := len(sink.alerts); n != 1 {
			t.Fatalf("%d alerts after the window closed, want 1", n)
		}
	})
}

// TestMetrics scrapes the Prometheus collector.
func TestMetrics(t *testing.T) {
	e, _ := newTestEngine(t, testPolicy)
	feed(t, e, func(w *pcapgen.Writer) {
		_ = w.UDP(ap(camA, 5000), ap(netip.MustParseAddr("203.0.113.80"), 8800), []byte{1}, 0)
		_ = w.UDP(ap(proxy, 5000), ap(camA, 554), []byte{1}, 0)
	})
	got := metricstest.Values(t, e.Collector())
	for name, want := range map[string]float64{
		"cordon_egress_packets_total":                             2,
		"cordon_egress_flows_total":                               2,
		"cordon_egress_alerts_total{kind=vendor-cloud}":           1,
		"cordon_egress_alerts_total{kind=unexpected-destination}": 1,
		"cordon_egress_alerts_total{kind=beacon}":                 0,
		"cordon_egress_drops_total":                               0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

// BenchmarkHandleFlow measures the flow-record path (NetFlow/IPFIX): records/s.
func BenchmarkHandleFlow(b *testing.B) {
	e := newPolicyEngine(b)
	recs := make([]FlowRecord, 4096)
	for i := range recs {
		cam := netip.AddrFrom4([4]byte{192, 168, 50, byte(20 + i%16)})
		dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 7)})
		if i%4 != 0 {
			dst = proxy
		}
		recs[i] = FlowRecord{Key: FlowKey{Proto: 6, Src: ap(cam, uint16(30000+i)), Dst: ap(dst, 443)}, Packets: 10, Bytes: 4000}
	}
	cpu0 := testutil.CPUTime(b)
	b.ResetTimer()
	t := pcapgen.Start
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		t = t.Add(time.Millisecond)
		r.Start, r.End = t, t
		e.HandleFlow(context.Background(), r)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/(testutil.CPUTime(b)-cpu0).Seconds(), "records/cpu-s")
}

// TestOpenFileErrors: captures that are not captures, or claim absurd sizes.
func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	hugeSnap := []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 1, 0, 0, 0}
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"text":     {[]byte("hello world"), "is not a pcap or pcapng capture"},
		"empty":    {nil, "too short to be a capture file"},
		"snaplen":  {hugeSnap, "snap length 1073741824 is implausible"},
		"bad gzip": {[]byte{0x1f, 0x8b, 0, 0}, "gzip"},
	} {
		path := dir + "/" + name
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenFile(path, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
	// A record cut short: the error says the file is truncated.
	path := dir + "/truncated"
	data := append(hugeSnap[:16:16], 0, 0, 1, 0, 1, 0, 0, 0) // snap length 65536, Ethernet
	data = append(data, make([]byte, 12)...)                 // 12 of the 16 record-header bytes
	data = append(data, 0, 0, 0, 0)
	data[len(data)-8], data[len(data)-4] = 60, 60 // caplen, len = 60
	data = append(data, make([]byte, 10)...)      // of 60 bytes
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, _, err = src.ReadPacketData()
	var te *TruncatedError
	if !errors.As(err, &te) || err.Error() != "egress: "+path+": capture truncated at byte 50, inside the packet after the 0 read (the packets before it were analysed)" {
		t.Fatalf("truncated record: %v", err)
	}
	// A directory is not a capture.
	if _, err := OpenFile(dir, nil); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
}

// TestBaselineLearning: during the learning period new destinations are
// learned silently; after it, a new one is reported once.
func TestBaselineLearning(t *testing.T) {
	p, err := parsePolicy("test.yml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	base, err := LoadBaseline(t.TempDir()+"/b.json", time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	e, err := NewEngine(Config{Policy: p, Sink: sink, Baseline: base})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, e, func(w *pcapgen.Writer) {
		for i, at := range []time.Duration{0, 30 * time.Minute, 2 * time.Hour, 3 * time.Hour} {
			w.Now = pcapgen.Start.Add(at)
			dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%3)}) // .1 .2 .3 .1
			_ = w.TCPSegment(ap(camA, uint16(30000+i)), ap(dst, 443), pcapgen.SYN, 1, 0, nil, 0)
		}
	})
	var nd []string
	for _, a := range sink.alerts {
		if a.Kind == KindNewDestination {
			nd = append(nd, a.Dst)
		}
	}
	if len(nd) != 1 || nd[0] != "203.0.113.3" {
		t.Fatalf("new-destination for %v, want only 203.0.113.3 (learned: .1 and .2; .1 again is known)", nd)
	}
	if base.Len() != 3 {
		t.Fatalf("baseline has %d entries, want 3", base.Len())
	}
}

// TestIPv6: an IPv6 camera network works like an IPv4 one.
func TestIPv6(t *testing.T) {
	e, sink := newTestEngine(t, "cameras: {networks: [\"2001:db8:50::/64\"]}\n")
	cam, resolver := netip.MustParseAddr("2001:db8:50::10"), netip.MustParseAddr("2001:4860:4860::8888")
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: cam.AsSlice(), DstIP: resolver.AsSlice()}
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: make([]byte, 6), DstMAC: make([]byte, 6), EthernetType: layers.EthernetTypeIPv6},
		ip, udp, gopacket.Payload(pcapgen.DNSQuery(7, "pub-cfg.secu100.net", 28))); err != nil {
		t.Fatal(err)
	}
	e.HandlePacket(context.Background(), buf.Bytes(), gopacket.CaptureInfo{Timestamp: pcapgen.Start, Length: len(buf.Bytes()), CaptureLength: len(buf.Bytes())}, layers.LinkTypeEthernet)
	_ = e.Close(context.Background())
	kinds := map[string]Alert{}
	for _, a := range sink.alerts {
		kinds[a.Kind] = a
	}
	if a := kinds[KindVendorCloud]; a.Domain != "pub-cfg.secu100.net" || a.Src != "2001:db8:50::10" {
		t.Errorf("vendor-cloud %+v", a)
	}
	if a := kinds[KindUnexpectedDestination]; a.Dst != "2001:4860:4860::8888" || a.Severity != "high" {
		t.Errorf("unexpected-destination %+v", a)
	}
}

// TestRecordsLongFlowNotBeacon: an exporter's active timeout cuts one long
// flow into records at regular intervals; that is not a beacon.
func TestRecordsLongFlowNotBeacon(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	dst := netip.MustParseAddr("203.0.113.44")
	for i := range 10 {
		start := pcapgen.Start.Add(time.Duration(i) * time.Minute)
		e.HandleFlow(context.Background(), FlowRecord{Key: FlowKey{Proto: 6, Src: ap(camA, 40000), Dst: ap(dst, 443)}, Start: start, End: start.Add(59 * time.Second), Packets: 100, Bytes: 1000})
	}
	// Regular separate connections every minute are one.
	for i := range 10 {
		start := pcapgen.Start.Add(time.Duration(i) * time.Minute)
		e.HandleFlow(context.Background(), FlowRecord{Key: FlowKey{Proto: 6, Src: ap(camA, uint16(41000+i)), Dst: ap(dst, 8443)}, Start: start, End: start.Add(time.Second), Packets: 3, Bytes: 200})
	}
	_ = e.Close(context.Background())
	for _, a := range sink.alerts {
		if a.Kind == KindBeacon && a.Port == 443 {
			t.Errorf("beacon on one long flow: %+v", a)
		}
	}
	if count(sink.alerts, KindBeacon) == 0 {
		t.Errorf("no beacon for connections every minute")
	}
}

// TestZstdWindowLimit: a zstd stream (from the zstd tool, reading standard
// input so the frame keeps its 128 MiB window) over the decoder's window
// limit is refused with a message that says so.
func TestZstdWindowLimit(t *testing.T) {
	zstdTool := testutil.NeedTool(t, "zstd")[0]
	cmd := exec.Command(zstdTool, "--long=27", "-c")
	cmd.Stdin = bytes.NewReader(make([]byte, 5000))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openStream("big.zst", io.NopCloser(bytes.NewReader(out))); err == nil || !strings.Contains(err.Error(), "needs a window larger than the 64 MiB limit") {
		t.Errorf("zstd window: %v", err)
	}
}

// BenchmarkEngineCamnet runs the whole engine (reader, decoder, flow table,
// every detector) over an in-memory capture of the camera-network shape
// (pcapgen.CameraNet, the scripts/bench-egress camnet shape, shorter): one
// op is one pass with a fresh engine; it reports CPU ns and allocations
// per packet.
func BenchmarkEngineCamnet(b *testing.B) {
	const n = 300_000
	var buf bytes.Buffer
	if err := pcapgen.CameraNet(&buf, n, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := testutil.CPUTime(b)
	b.ResetTimer()
	for b.Loop() {
		src, err := openStream("camnet", io.NopCloser(bytes.NewReader(buf.Bytes())))
		if err != nil {
			b.Fatal(err)
		}
		e := newPolicyEngine(b)
		if err := e.Run(context.Background(), src); err != nil {
			b.Fatal(err)
		}
		if err := e.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	pkts := float64(b.N) * n
	b.ReportMetric(float64((testutil.CPUTime(b)-cpu0).Nanoseconds())/pkts, "cpu-ns/packet")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/pkts, "allocs/packet")
}

// TestPrefixSet: prefixSet.contains answers as netip.Prefix.Contains of
// any of its prefixes, IPv4 (as masked 32-bit values) and IPv6 alike.
func TestPrefixSet(t *testing.T) {
	prefixes := []string{"192.168.50.0/24", "10.0.0.0/8", "172.16.5.7/32", "0.0.0.0/0", "fd00::/8", "2001:db8::1/128", "100.64.0.0/10"}
	addrs := []string{"192.168.50.1", "192.168.51.1", "10.255.0.1", "11.0.0.1", "172.16.5.7", "172.16.5.8", "8.8.8.8",
		"100.127.255.255", "100.128.0.0", "fd12::1", "fe80::1", "2001:db8::1", "2001:db8::2", "::ffff:192.168.50.1", "::"}
	for n := 1; n <= len(prefixes); n++ {
		for skip := range n {
			var set prefixSet
			var list []netip.Prefix
			for i, s := range prefixes[:n] {
				if i == skip && n > 1 {
					continue
				}
				p := netip.MustParsePrefix(s)
				set.add(p)
				list = append(list, p)
			}
			for _, s := range addrs {
				a := netip.MustParseAddr(s)
				want := slices.ContainsFunc(list, func(p netip.Prefix) bool { return p.Contains(a) })
				if got := set.contains(a); got != want {
					t.Errorf("%v contains %s: %v, want %v", list, a, got, want)
				}
			}
		}
	}
}

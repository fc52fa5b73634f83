package netflow_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/netflow"
	"github.com/cordon-vms/cordon/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/softflowd-* datagrams from a softflowd run")

// runSoftflowd turns pcap into flow datagrams of the given version
// (5, 9 or 10), sent to addr. softflowd needs no privileges with -r; -a uses
// the pcap's timestamps.
func runSoftflowd(t *testing.T, pcap, addr string, version int, extra ...string) {
	t.Helper()
	bin := testutil.NeedTool(t, "softflowd")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// softflowd keeps the -r name in an IFNAMSIZ buffer (16 bytes): pass a
	// short relative name from the pcap's directory.
	args := append([]string{"-d", "-r", filepath.Base(pcap), "-n", addr, "-v", fmt.Sprint(version), "-a",
		"-p", "sf.pid", "-c", "sf.ctl"}, extra...) // long -p/-c paths make it hang, too
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = filepath.Dir(pcap)
	if len(filepath.Base(pcap)) > 15 {
		t.Fatalf("softflowd truncates -r names over 15 bytes: %s", pcap)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softflowd: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("softflowd -v %d: %s", version, out)
	}
}

// captureDatagrams runs softflowd against a plain UDP socket and returns the
// datagrams it sent.
func captureDatagrams(t *testing.T, pcap string, version int, extra ...string) [][]byte {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := recordDatagrams(conn)
	runSoftflowd(t, pcap, conn.LocalAddr().String(), version, extra...)
	return stop()
}

// recordDatagrams keeps a copy of every datagram conn receives. stop lets
// the reader drain (loopback delivery is immediate), closes conn and returns
// what arrived.
func recordDatagrams(conn net.PacketConn) (stop func() [][]byte) {
	var (
		mu  sync.Mutex
		got [][]byte
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, append([]byte(nil), buf[:n]...))
			mu.Unlock()
		}
	}()
	return func() [][]byte {
		time.Sleep(200 * time.Millisecond)
		conn.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

// TestSoftflowdInterop turns a crafted pcap into NetFlow v5, v9 and IPFIX
// with softflowd and checks that the decoded records are the pcap's flows:
// 5-tuples, packet and byte counts, and start/end times.
func TestSoftflowdInterop(t *testing.T) {
	pkts := plantedTraffic()
	want := expectedFlows(pkts)
	for _, version := range []int{5, 9, 10} {
		pcap := writePcap(t, t.TempDir(), pkts) // one directory per softflowd run (its pid and ctl files)
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			dgrams := captureDatagrams(t, pcap, version)
			if len(dgrams) == 0 {
				t.Fatal("softflowd sent no datagrams")
			}
			if *update {
				saveDatagrams(t, version, dgrams)
			}
			var d netflow.Decoder
			got := map[egress.FlowKey]egress.FlowRecord{}
			exp := netip.MustParseAddrPort("127.0.0.1:9995")
			for i, dg := range dgrams {
				if err := d.Decode(exp, dg, func(r egress.FlowRecord) { got[r.Key] = merge(got[r.Key], r) }); err != nil {
					t.Errorf("datagram %d: %v", i, err)
				}
			}
			checkFlows(t, version, want, got)
			st := d.Stats()
			if st.DecodeErrors != 0 || st.UnknownTemplates != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

// TestCollectorSoftflowd runs the Collector on a loopback socket and
// softflowd against it (NetFlow v9 and IPFIX).
func TestCollectorSoftflowd(t *testing.T) {
	pkts := plantedTraffic()
	want := expectedFlows(pkts)
	for _, version := range []int{9, 10} {
		pcap := writePcap(t, t.TempDir(), pkts)
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			var mu sync.Mutex
			got := map[egress.FlowKey]egress.FlowRecord{}
			c := &netflow.Collector{Addr: "127.0.0.1:0", Logger: testutil.Logger(t), Handle: func(_ context.Context, r egress.FlowRecord) {
				mu.Lock()
				got[r.Key] = merge(got[r.Key], r)
				mu.Unlock()
			}}
			if err := c.Listen(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.Run(ctx) }()
			runSoftflowd(t, pcap, c.LocalAddr().String(), version)
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				n := len(got)
				mu.Unlock()
				if n >= len(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			checkFlows(t, version, want, got)
			if st := c.Stats(); st.Records == 0 || st.DecodeErrors != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

// merge adds r to a (an exporter may split a long flow into several records).
func merge(a, r egress.FlowRecord) egress.FlowRecord {
	if a.Packets == 0 {
		return r
	}
	a.Packets += r.Packets
	a.Bytes += r.Bytes
	a.TCPFlags |= r.TCPFlags
	if r.Start.Before(a.Start) {
		a.Start = r.Start
	}
	if r.End.After(a.End) {
		a.End = r.End
	}
	return a
}

func checkFlows(t *testing.T, version int, want, got map[egress.FlowKey]egress.FlowRecord) {
	t.Helper()
	for k, w := range want {
		if version == 5 && !k.Src.Addr().Is4() {
			continue // NetFlow v5 carries IPv4 only
		}
		g, ok := got[k]
		if !ok {
			// softflowd reports ICMP type/code in the destination port.
			for gk, gr := range got {
				if gk.Proto == k.Proto && gk.Src.Addr() == k.Src.Addr() && gk.Dst.Addr() == k.Dst.Addr() {
					g, ok = gr, true
				}
			}
		}
		if !ok {
			t.Errorf("v%d: flow %v missing; got %v", version, k, keys(got))
			continue
		}
		if g.Packets != w.Packets || g.Bytes != w.Bytes {
			t.Errorf("v%d: flow %v: packets/bytes = %d/%d, want %d/%d", version, k, g.Packets, g.Bytes, w.Packets, w.Bytes)
		}
		if d := g.Start.Sub(w.Start); d < -time.Second || d > time.Second {
			t.Errorf("v%d: flow %v: start %v, want %v", version, k, g.Start.UTC(), w.Start)
		}
		if d := g.End.Sub(w.End); d < -time.Second || d > time.Second {
			t.Errorf("v%d: flow %v: end %v, want %v", version, k, g.End.UTC(), w.End)
		}
		if !g.Exporter.IsLoopback() {
			t.Errorf("v%d: flow %v: exporter %v", version, k, g.Exporter)
		}
	}
	if version != 5 && len(got) != len(want) {
		t.Errorf("v%d: got %d flows, want %d: %v", version, len(got), len(want), keys(got))
	}
}

func keys(m map[egress.FlowKey]egress.FlowRecord) []string {
	var s []string
	for k, r := range m {
		s = append(s, fmt.Sprintf("%d %v>%v %dp/%dB", k.Proto, k.Src, k.Dst, r.Packets, r.Bytes))
	}
	return s
}

func saveDatagrams(t *testing.T, version int, dgrams [][]byte) {
	dir := filepath.Join("testdata", fmt.Sprintf("softflowd-v%d", version))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, dg := range dgrams {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.bin", i)), dg, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFixtures decodes the committed softflowd datagrams (no softflowd
// needed): they hold exactly the flows of plantedTraffic.
func TestFixtures(t *testing.T) {
	want := expectedFlows(plantedTraffic())
	for _, version := range []int{5, 9, 10} {
		paths, _ := filepath.Glob(filepath.Join("testdata", fmt.Sprintf("softflowd-v%d", version), "*.bin"))
		if len(paths) == 0 {
			t.Fatalf("no fixtures for v%d", version)
		}
		var d netflow.Decoder
		got := map[egress.FlowKey]egress.FlowRecord{}
		for _, p := range paths {
			dg, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Decode(netip.MustParseAddrPort("127.0.0.1:9995"), dg, func(r egress.FlowRecord) { got[r.Key] = merge(got[r.Key], r) }); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		checkFlows(t, version, want, got)
	}
}

// TestSoftflowdSampling: with 1-in-4 packet sampling (softflowd -s 4, which
// announces the interval in options data) the collector scales the counters
// back, so totals match the unsampled export; RawCounts keeps them as sent.
func TestSoftflowdSampling(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "planted.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []int{9, 10} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			totals := func(args []string, raw bool) (pkts, bytes uint64) {
				dir := t.TempDir()
				pcap := filepath.Join(dir, "planted.pcap")
				if err := os.WriteFile(pcap, data, 0o644); err != nil {
					t.Fatal(err)
				}
				dgrams := captureDatagrams(t, pcap, version, args...)
				d := netflow.Decoder{RawCounts: raw}
				for _, dg := range dgrams {
					if err := d.Decode(netip.MustParseAddrPort("127.0.0.1:9995"), dg, func(r egress.FlowRecord) {
						pkts += r.Packets
						bytes += r.Bytes
					}); err != nil {
						t.Fatal(err)
					}
				}
				return pkts, bytes
			}
			fullP, fullB := totals(nil, false)
			scaledP, scaledB := totals([]string{"-s", "4"}, false)
			rawP, rawB := totals([]string{"-s", "4"}, true)
			near := func(a, b uint64) bool { return float64(a) > 0.85*float64(b) && float64(a) < 1.15*float64(b) }
			if !near(scaledP, fullP) || !near(scaledB, fullB) {
				t.Errorf("sampled and scaled: %d packets %d bytes; unsampled: %d packets %d bytes", scaledP, scaledB, fullP, fullB)
			}
			if rawP*4 != scaledP || rawB*4 != scaledB {
				t.Errorf("raw %d/%d, scaled %d/%d: want a factor of 4", rawP, rawB, scaledP, scaledB)
			}
			t.Logf("unsampled %d pkts %d B; 1-in-4 scaled %d pkts %d B", fullP, fullB, scaledP, scaledB)
		})
	}
}

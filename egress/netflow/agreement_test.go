package netflow_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/netflow"
	"github.com/cordon-vms/cordon/internal/testutil"
)

type memSink struct {
	mu     sync.Mutex
	alerts []egress.Alert
}

func (s *memSink) Send(_ context.Context, a egress.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
	return nil
}

func (s *memSink) Close() error { return nil }

// flowVisible are the alert kinds a flow record can show: no payload, so no
// DNS names, SNI or payload signatures.
var flowVisible = []string{egress.KindUnexpectedDestination, egress.KindVolume, egress.KindLateral, egress.KindNewDestination, egress.KindBeacon}

func newEngine(t *testing.T, sink egress.AlertSink) *egress.Engine {
	t.Helper()
	p, err := egress.LoadPolicy(filepath.Join("..", "testdata", "policy.yml"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := egress.LoadBaseline(filepath.Join(t.TempDir(), "baseline.json"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, err := egress.NewEngine(egress.Config{Policy: p, Sink: sink, Baseline: base, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// alertKey is what the packet and flow paths must agree on.
type alertKey struct{ kind, camera, dst, proto string }

func visibleAlerts(as []egress.Alert) []alertKey {
	var out []alertKey
	for _, a := range as {
		if !slices.Contains(flowVisible, a.Kind) {
			continue
		}
		dsts := []string{a.Dst}
		if a.Kind == egress.KindLateral {
			// One alert per window lists the targets ("10.1.2.3 tcp/445 (core
			// host)"); the paths may split a window differently.
			dsts = dsts[:0]
			for _, d := range a.Destinations {
				dsts = append(dsts, strings.Fields(d)[0])
			}
		}
		for _, d := range dsts {
			k := alertKey{a.Kind, a.Camera, d, a.Proto}
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	return out
}

// TestPacketFlowAgreement runs egress-core's planted capture through the
// packet path (Engine.HandlePacket) and through softflowd → Collector →
// Engine.HandleFlow (NetFlow v9 and IPFIX): both must raise the same
// flow-visible alerts (kind, camera, destination, protocol).
func TestPacketFlowAgreement(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "planted.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	pktSink := &memSink{}
	e := newEngine(t, pktSink)
	src, err := egress.OpenFile(filepath.Join("..", "testdata", "planted.pcap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := visibleAlerts(pktSink.alerts)
	if len(want) < 5 {
		t.Fatalf("packet path raised only %v", want)
	}

	for _, version := range []int{9, 10} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			dir := t.TempDir()
			pcap := filepath.Join(dir, "planted.pcap")
			if err := os.WriteFile(pcap, data, 0o644); err != nil {
				t.Fatal(err)
			}
			flowSink := &memSink{}
			fe := newEngine(t, flowSink)
			c := &netflow.Collector{Addr: "127.0.0.1:0", Logger: testutil.Logger(t), Handle: fe.HandleFlow}
			if err := c.Listen(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.Run(ctx) }()
			runSoftflowd(t, pcap, c.LocalAddr().String(), version)
			waitQuiet(c)
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if err := fe.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := c.Stats()
			if st.Records == 0 || st.DecodeErrors != 0 || st.UnknownTemplates != 0 {
				t.Errorf("collector stats %+v", st)
			}
			got := visibleAlerts(flowSink.alerts)
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("packet path alert %v missing from the flow path", w)
				}
			}
			for _, g := range got {
				if !slices.Contains(want, g) {
					t.Errorf("flow path alert %v not raised by the packet path", g)
				}
			}
			for _, a := range flowSink.alerts {
				if a.Kind == egress.KindVolume && a.Bytes < 1_000_000 {
					t.Errorf("volume alert from flows with %d bytes (threshold 1 MB)", a.Bytes)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("packet path: %v\nflow path:   %v", want, got)
			}
		})
	}
}

// waitQuiet waits until the collector has received nothing new for 200 ms
// (softflowd has exited; its last datagrams are in the socket buffer).
func waitQuiet(c *netflow.Collector) {
	last, stable := c.Stats().Datagrams, 0
	for stable < 20 {
		time.Sleep(10 * time.Millisecond)
		if n := c.Stats().Datagrams; n != last {
			last, stable = n, 0
		} else {
			stable++
		}
	}
}

package netflow_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/internal/enginetest"
	"github.com/cordon-vms/cordon/egress/netflow"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestPacketFlowAgreement runs egress-core's planted capture through the
// packet path (Engine.HandlePacket) and through softflowd → Collector →
// Engine.HandleFlow (NetFlow v9 and IPFIX): both must raise the same
// flow-visible alerts (kind, camera, destination, protocol).
func TestPacketFlowAgreement(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "planted.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join("..", "testdata", "policy.yml")
	pktSink := &enginetest.Sink{}
	enginetest.RunCapture(t, enginetest.NewEngine(t, policy, pktSink), filepath.Join("..", "testdata", "planted.pcap"))
	want := enginetest.Visible(pktSink.Alerts())
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
			flowSink := &enginetest.Sink{}
			fe := enginetest.NewEngine(t, policy, flowSink)
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
			got := enginetest.Visible(flowSink.Alerts())
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
			for _, a := range flowSink.Alerts() {
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

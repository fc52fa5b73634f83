package egress_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/capture"
	"github.com/cordon-vms/cordon/internal/testutil"
)

type sinkFunc func(egress.Alert)

func (f sinkFunc) Send(_ context.Context, a egress.Alert) error { f(a); return nil }
func (f sinkFunc) Close() error                                 { return nil }

// TestLiveCaptureLoopback runs the engine on a live AF_PACKET capture of
// the loopback interface: a PPPP datagram (first byte 0xF1) sent between two
// loopback "cameras" raises vendor-cloud.
func TestLiveCaptureLoopback(t *testing.T) {
	testutil.NeedRoot(t, "AF_PACKET capture needs CAP_NET_RAW")
	rx, err := net.ListenPacket("udp", "127.0.0.77:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	port := rx.LocalAddr().(*net.UDPAddr).Port
	path := filepath.Join(t.TempDir(), "live.yml")
	if err := os.WriteFile(path, []byte("cameras: {networks: [127.0.0.64/26]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := egress.LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		alerts []egress.Alert
	)
	e, err := egress.NewEngine(egress.Config{Policy: p, Logger: testutil.Logger(t), Sink: sinkFunc(func(a egress.Alert) {
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	})})
	if err != nil {
		t.Fatal(err)
	}
	src, err := capture.Open("lo", capture.Options{Filter: "udp and host 127.0.0.77"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, src) }()

	tx, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.66")}, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.Metrics().Packets.Load() == 0 && time.Now().Before(deadline) {
		if _, err := tx.Write([]byte{0xf1, 0x42, 0x00, 0x00}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	src.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, a := range alerts {
		if a.Kind == egress.KindVendorCloud && a.Src == "127.0.0.66" && a.Dst == "127.0.0.77" && int(a.Port) == port && strings.Contains(a.Detail, "PPPP") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no vendor-cloud alert for the PPPP datagram; packets %d, alerts %+v", e.Metrics().Packets.Load(), alerts)
	}
}

package netflow

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/internal/metricstest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestCollectorBounds: an oversized datagram is dropped and counted, a
// valid one after it is decoded, and Run returns when its context ends.
func TestCollectorBounds(t *testing.T) {
	got := make(chan egress.FlowRecord, 10)
	c := &Collector{Addr: "127.0.0.1:0", Logger: testutil.Logger(t), MaxDatagramSize: 512, Handle: func(_ context.Context, r egress.FlowRecord) { got <- r }}
	if c.LocalAddr() != nil {
		t.Fatal("LocalAddr before Listen")
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	conn, err := net.Dial("udp", c.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	big := v9(0, 0, 1, set(0, templateBody(300, v4Template)), set(300, make([]byte, 600)))
	conn.Write(big)
	conn.Write(v9(1000, 1700000000, 1, set(0, templateBody(300, v4Template)), set(300, v4Record("10.0.0.1", "10.0.0.2", 1, 2, 17, 100, 1, 900, 950))))
	select {
	case r := <-got:
		if r.Key.Dst.String() != "10.0.0.2:2" || !r.Exporter.IsLoopback() {
			t.Errorf("record %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no record")
	}
	if st := c.Stats(); st.DecodeErrors != 1 || st.Records != 1 {
		t.Errorf("stats %+v", st)
	}
	vals := metricstest.Values(t, c.Metrics())
	if vals["cordon_egress_netflow_records_total"] != 1 || vals["cordon_egress_netflow_decode_errors_total"] != 1 || vals["cordon_egress_netflow_exporters"] != 1 || len(vals) != 9 {
		t.Errorf("metrics %v", vals)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Run again: it listens anew.
	c.Addr = "127.0.0.1:0"
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := c.Run(ctx2); err != nil {
		t.Fatalf("second Run: %v", err)
	}
}

func TestCollectorErrors(t *testing.T) {
	if err := (&Collector{}).Run(context.Background()); err == nil || err.Error() != "netflow: collector: Handle is required" {
		t.Errorf("no Handle: %v", err)
	}
	c := &Collector{Addr: "256.0.0.1:2055", Handle: func(context.Context, egress.FlowRecord) {}}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "netflow: collector: listen on 256.0.0.1:2055 (Addr)") {
		t.Errorf("bad Addr: %v", err)
	}
}

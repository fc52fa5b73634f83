package nfcapd_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/nfcapd"
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

// visible are the alerts flow records can raise (no payload: no names,
// SNI or payload signatures), as (kind, camera, destination, protocol).
func visible(as []egress.Alert) []string {
	kinds := []string{egress.KindUnexpectedDestination, egress.KindVolume, egress.KindLateral, egress.KindNewDestination, egress.KindBeacon}
	var out []string
	for _, a := range as {
		if !slices.Contains(kinds, a.Kind) {
			continue
		}
		dsts := []string{a.Dst}
		if a.Kind == egress.KindLateral { // one alert lists the window's targets
			dsts = dsts[:0]
			for _, d := range a.Destinations {
				dsts = append(dsts, strings.Fields(d)[0])
			}
		}
		for _, d := range dsts {
			if k := fmt.Sprint(a.Kind, " ", a.Camera, " ", d, " ", a.Proto); !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestEngineAgreement: the planted capture (egress/testdata/planted.pcap)
// through the packet path, and the nfcapd files softflowd and nfcapd made of
// it (NetFlow v5, v9, IPFIX) through Engine.HandleFlow, raise the same
// flow-visible alerts.
func TestEngineAgreement(t *testing.T) {
	pkt := &memSink{}
	e := newEngine(t, pkt)
	src, err := egress.OpenFile(filepath.Join("..", "testdata", "planted.pcap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := e.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := visible(pkt.alerts)
	if len(want) < 5 {
		t.Fatalf("packet path raised only %v", want)
	}
	for _, name := range []string{"none", "lzo", "lz4", "bz2"} {
		t.Run(name, func(t *testing.T) {
			flows := &memSink{}
			fe := newEngine(t, flows)
			r := &nfcapd.Reader{}
			if err := r.Read(context.Background(), filepath.Join("testdata", "files", "nfcapd."+name), fe.HandleFlow); err != nil {
				t.Fatal(err)
			}
			if err := fe.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := visible(flows.alerts)
			if !slices.Equal(got, want) {
				t.Errorf("nfcapd path:\n%s\npacket path:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

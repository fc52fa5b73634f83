// Package enginetest holds what the flow-record packages' tests (nfcapd,
// netflow) share to check an egress.Engine: an in-memory alert sink, an
// engine on a policy file, a capture run through the packet path, and the
// alerts a flow record can show.
package enginetest

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
	"github.com/cordon-vms/cordon/internal/testutil"
)

// Sink collects alerts in memory.
type Sink struct {
	mu     sync.Mutex
	alerts []egress.Alert
}

var _ egress.AlertSink = (*Sink)(nil)

// Send keeps a.
func (s *Sink) Send(_ context.Context, a egress.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
	return nil
}

// Close does nothing.
func (s *Sink) Close() error { return nil }

// Alerts are the alerts sent so far, in order.
func (s *Sink) Alerts() []egress.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.alerts)
}

// NewEngine is an engine on the policy file, alerting to sink, with an
// empty baseline in a temporary folder.
func NewEngine(t testing.TB, policy string, sink egress.AlertSink) *egress.Engine {
	t.Helper()
	p, err := egress.LoadPolicy(policy)
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

// RunCapture runs the capture file through e's packet path, then closes e.
func RunCapture(t testing.TB, e *egress.Engine, capture string) {
	t.Helper()
	src, err := egress.OpenFile(capture, nil)
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
}

// Visible are the alerts flow records can raise (no payload: no DNS names,
// SNI or payload signatures), as "kind camera destination protocol", each
// once, sorted. A lateral alert lists its window's targets, one each: the
// packet and flow paths may split a window differently.
func Visible(as []egress.Alert) []string {
	kinds := []string{egress.KindUnexpectedDestination, egress.KindVolume, egress.KindLateral, egress.KindNewDestination, egress.KindBeacon}
	var out []string
	for _, a := range as {
		if !slices.Contains(kinds, a.Kind) {
			continue
		}
		dsts := []string{a.Dst}
		if a.Kind == egress.KindLateral { // "10.1.2.3 tcp/445 (core host)"
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

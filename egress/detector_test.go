package egress

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
)

// alertTable renders the alert table of docs/egress.md from Detectors.
func alertTable() string {
	var b strings.Builder
	b.WriteString("| kind | severity | raised when | fields that triggered it |\n|---|---|---|---|\n")
	for _, d := range Detectors {
		sev := d.Severity
		if d.SeverityNote != "" {
			sev += "; " + d.SeverityNote
		}
		b.WriteString("| `" + d.Kind + "` | " + sev + " | " + d.Raised + " | " + d.Fields + " |\n")
	}
	return b.String()
}

// TestDetectorsDocumented fails when a detector lacks a piece of its
// declaration, when two share a kind, or when docs/egress.md's alert table
// is not the one Detectors declare (go test ./egress -run Documented -update
// rewrites it, with the planted fixtures' -update flag).
func TestDetectorsDocumented(t *testing.T) {
	seen := map[string]bool{}
	for i, d := range Detectors {
		if d.Kind == "" || d.Severity == "" || d.Raised == "" || d.Fields == "" || d.new == nil {
			t.Errorf("detector %d (%q) is not fully declared: %+v", i, d.Kind, d)
		}
		if seen[d.Kind] {
			t.Errorf("kind %q declared twice", d.Kind)
		}
		seen[d.Kind] = true
		if d.index != i || Kinds[i] != d.Kind {
			t.Errorf("detector %q: index %d, Kinds[%d] %q", d.Kind, d.index, i, Kinds[i])
		}
		switch d.Severity {
		case "info", "low", "medium", "high", "critical":
		default:
			t.Errorf("detector %q: severity %q", d.Kind, d.Severity)
		}
		st := d.new(&Engine{})
		_, o := st.(flowOpener)
		_, w := st.(sendWatcher)
		if !o && !w {
			t.Errorf("detector %q looks at nothing: its state is neither a flowOpener nor a sendWatcher", d.Kind)
		}
	}
	const path = "../docs/egress.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(doc), "| kind | severity |")
	if start < 0 {
		t.Fatalf("%s has no alert table", path)
	}
	end := start + strings.Index(string(doc[start:]), "\n\n") + 1
	if end <= start {
		end = len(doc)
	}
	want := alertTable()
	if got := string(doc[start:end]); got != want {
		if *update {
			if err := os.WriteFile(path, []byte(string(doc[:start])+want+string(doc[end:])), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s's alert table is not the one Detectors declare (run go test ./egress -run Documented -update):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// blockingSink holds its first Send until release is closed, and records
// the context values it was given.
type blockingSink struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	got     []any
}

type ctxKey struct{}

func (s *blockingSink) Send(ctx context.Context, a Alert) error {
	s.mu.Lock()
	first := len(s.got) == 0
	s.got = append(s.got, ctx.Value(ctxKey{}))
	s.mu.Unlock()
	if first {
		close(s.entered)
		<-s.release
	}
	return nil
}

func (s *blockingSink) Close() error { return nil }

// TestSinkOutsideLock: a sink that blocks (a webhook that hangs) does not
// hold the engine lock, so packets and records keep being handled; alerts
// reach the sink with the context of the call that completed them.
func TestSinkOutsideLock(t *testing.T) {
	p, err := parsePolicy("test.yml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	sink := &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
	e, err := NewEngine(Config{Policy: p, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	t0 := pcapgen.Start
	rec := func(src, dst netip.AddrPort, at time.Duration) FlowRecord {
		return FlowRecord{Key: FlowKey{Proto: protoTCP, Src: src, Dst: dst}, Start: t0.Add(at), End: t0.Add(at), Packets: 1, Bytes: 100}
	}
	ctx := context.WithValue(context.Background(), ctxKey{}, "closing")
	e.HandleFlow(ctx, rec(ap(camA, 50001), ap(netip.MustParseAddr("203.0.113.5"), 8080), 0)) // unexpected-destination (medium: sent at the end of its window)
	closed := make(chan error, 1)
	go func() { closed <- e.Close(ctx) }()
	<-sink.entered // Close is inside Send now
	handled := make(chan struct{})
	go func() {
		e.HandleFlow(context.Background(), rec(ap(proxy, 40000), ap(camA, 554), time.Second)) // allowed: no alert
		close(handled)
	}()
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("a flow record waited for a blocked sink")
	}
	close(sink.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if len(sink.got) == 0 || sink.got[0] != "closing" {
		t.Errorf("the sink got contexts %v, want the one given to Close", sink.got)
	}
}

// TestHighAlertAtOnce: a high alert reaches the sink from the call that
// raised it; its repeats within the window follow as one Repeat alert at
// the window's end; a medium alert waits for the end of its window.
func TestHighAlertAtOnce(t *testing.T) {
	e, sink := newTestEngine(t, testPolicy)
	gw := netip.MustParseAddr("192.168.50.1")
	ts := pcapgen.Start
	send := func(payload []byte, dst netip.AddrPort, at time.Duration) {
		var b bytes.Buffer
		w, _ := pcapgen.NewWriter(&b, ts.Add(at))
		_ = w.UDP(ap(camA, 5000+uint16(at/time.Second)), dst, payload, 0)
		src, err := openStream("t", io.NopCloser(&b))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Run(context.Background(), src); err != nil {
			t.Fatal(err)
		}
	}
	send(pcapgen.DNSQuery(1, "litedev.hik-connect.com", 1), ap(gw, 53), 0)
	if len(sink.alerts) != 1 || sink.alerts[0].Kind != KindVendorCloud || sink.alerts[0].Repeat {
		t.Fatalf("after the first query: %+v, want the vendor-cloud alert at once", sink.alerts)
	}
	send(pcapgen.DNSQuery(2, "litedev.hik-connect.com", 1), ap(gw, 53), 10*time.Second)
	send(pcapgen.DNSQuery(3, "x.example.com", 1), ap(netip.MustParseAddr("203.0.113.7"), 5353), 20*time.Second) // medium
	if len(sink.alerts) != 1 {
		t.Fatalf("before the window ends: %+v, want only the first alert", sink.alerts)
	}
	e.Advance(context.Background(), ts.Add(2*time.Minute))
	if len(sink.alerts) != 3 {
		t.Fatalf("after the window: %d alerts %+v, want 3", len(sink.alerts), sink.alerts)
	}
	r := sink.alerts[1]
	if !r.Repeat || r.Kind != KindVendorCloud || r.Count != 1 || !strings.HasPrefix(r.Detail, "1 more times since the alert sent at once") {
		t.Errorf("repeat %+v", r)
	}
	if m := sink.alerts[2]; m.Kind != KindUnexpectedDestination || m.Severity != "medium" || m.Repeat {
		t.Errorf("medium %+v", m)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.alerts) != 3 {
		t.Errorf("Close sent %d more", len(sink.alerts)-3)
	}
}

// TestSuppress: with thresholds.suppress, the repeats of an alert after it
// was emitted are summed up once at the end of the period, not alerted
// every window; after the period the next occurrence alerts again.
func TestSuppress(t *testing.T) {
	e, sink := newTestEngine(t, strings.Replace(testPolicy, "thresholds:\n", "thresholds:\n  suppress: 1h\n", 1))
	odd := netip.MustParseAddr("203.0.113.7")
	feed(t, e, func(w *pcapgen.Writer) {
		for _, m := range []time.Duration{0, 2, 5, 30, 59, 75} {
			w.Now = pcapgen.Start.Add(m * time.Minute)
			_ = w.UDP(ap(camA, 5000+uint16(m)), ap(odd, 7777), []byte("x"), 0)
		}
	})
	var got []string
	for _, a := range sink.alerts {
		got = append(got, fmt.Sprintf("%s %d %v %s", a.FirstSeen.Sub(pcapgen.Start), a.Count, a.Repeat, a.Detail[:min(len(a.Detail), 40)]))
	}
	want := []string{
		"0s 1 false camera 192.168.50.10 contacted 203.0.113",
		"2m0s 4 true 4 more times while suppressed (threshold",
		"1h15m0s 1 false camera 192.168.50.10 contacted 203.0.113",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

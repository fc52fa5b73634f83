package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/internal/metricstest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

func testAlert(i int) egress.Alert {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	return egress.Alert{
		Kind: "unexpected-destination", Severity: "high", Camera: "cam-1",
		Src: "192.168.50.10", Dst: fmt.Sprintf("203.0.113.%d:8800", i), Proto: "udp", Port: 8800,
		FirstSeen: t0, LastSeen: t0.Add(time.Duration(i) * time.Second), Count: uint64(i + 1), Bytes: 100,
		Detail: fmt.Sprintf("alert %d", i),
	}
}

// receiver is a webhook endpoint on a fixed loopback address that can be
// stopped and started again, recording the alerts it accepted.
type receiver struct {
	t        *testing.T
	addr     string
	mu       sync.Mutex
	got      []egress.Alert
	fail     int // answer 503 to this many more requests
	requests int // accepted
	srv      *http.Server
}

func newReceiver(t *testing.T) *receiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, addr: l.Addr().String()}
	r.serve(l)
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serve(l net.Listener) {
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || req.Header.Get("Authorization") != "Bearer t0ken" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fail > 0 {
			r.fail--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var as []egress.Alert
		var err error
		if len(body) > 0 && body[0] == '[' {
			err = json.Unmarshal(body, &as)
		} else {
			as = make([]egress.Alert, 1)
			err = json.Unmarshal(body, &as[0])
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		r.requests++
		r.got = append(r.got, as...)
		w.WriteHeader(http.StatusNoContent)
	})}
	go r.srv.Serve(l)
}

func (r *receiver) stop() {
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

// start listens again on the same address.
func (r *receiver) start() {
	var l net.Listener
	var err error
	for range 50 { // the port was just released; retry briefly
		if l, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.serve(l)
}

func (r *receiver) alerts() []egress.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]egress.Alert(nil), r.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func checkOrder(t *testing.T, got []egress.Alert, want []int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("receiver got %d alerts, want %d", len(got), len(want))
	}
	for i, a := range got {
		w := testAlert(want[i])
		if a.Detail != w.Detail || a.Dst != w.Dst || !a.LastSeen.Equal(w.LastSeen) || a.Count != w.Count {
			t.Fatalf("alert %d = %+v, want %+v", i, a, w)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func webhookConfig(t *testing.T, url, dir string) WebhookConfig {
	return WebhookConfig{URL: url, SpoolDir: dir, Headers: map[string]string{"Authorization": "Bearer t0ken"},
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Timeout: 2 * time.Second, CloseTimeout: 2 * time.Second}
}

// TestWebhookReceiverDown: alerts sent while the receiver is down (closed
// port, then answering 503) are all delivered, in order, once it is back.
func TestWebhookReceiverDown(t *testing.T) {
	r := newReceiver(t)
	r.stop()
	w, err := newWebhook(webhookConfig(t, r.url(), t.TempDir()), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 20 {
		send(t, w, testAlert(i))
	}
	waitFor(t, "retries while down", func() bool { return w.Stats().Retries >= 3 })
	if st := w.Stats(); st.Spooled != 20 || st.Delivered != 0 {
		t.Fatalf("while down: %+v", st)
	}
	r.mu.Lock()
	r.fail = 3 // back, but busy for a while
	r.mu.Unlock()
	r.start()
	for i := 20; i < 25; i++ {
		send(t, w, testAlert(i))
	}
	waitFor(t, "delivery", func() bool { return w.Stats().Delivered == 25 })
	vals := metricstest.Values(t, w.Metrics())
	if vals["cordon_egress_webhook_delivered_total"] != 25 || vals["cordon_egress_webhook_retries_total"] < 3 || vals["cordon_egress_webhook_spooled"] != 0 || len(vals) != 5 {
		t.Errorf("metrics %v", vals)
	}
	checkOrder(t, r.alerts(), seq(0, 25))
	if st := w.Stats(); st.Spooled != 0 || st.Dropped != 0 || st.Rejected != 0 {
		t.Errorf("after delivery: %+v", st)
	}
	if segs, _ := filepath.Glob(filepath.Join(w.cfg.SpoolDir, "*.log")); len(segs) != 1 {
		t.Errorf("delivered segments not deleted: %v", segs)
	}
}

// TestWebhookBatch: with BatchSize a backlog drains in JSON arrays, in
// order.
func TestWebhookBatch(t *testing.T) {
	r := newReceiver(t)
	r.stop()
	cfg := webhookConfig(t, r.url(), t.TempDir())
	cfg.BatchSize = 10
	w, err := newWebhook(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 25 {
		send(t, w, testAlert(i))
	}
	r.start()
	waitFor(t, "delivery", func() bool { return w.Stats().Delivered == 25 })
	checkOrder(t, r.alerts(), seq(0, 25))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requests != 3 {
		t.Errorf("%d requests for 25 alerts in batches of 10", r.requests)
	}
}

// TestWebhookRestart: alerts spooled when cordon stops are delivered by the
// next process, before the new ones.
func TestWebhookRestart(t *testing.T) {
	r := newReceiver(t)
	r.stop()
	dir := t.TempDir()
	cfg := webhookConfig(t, r.url(), dir)
	cfg.CloseTimeout = 50 * time.Millisecond
	w1, err := newWebhook(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		send(t, w1, testAlert(i))
	}
	if err := w1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w1.Send(context.Background(), testAlert(99)); err == nil {
		t.Error("Send after Close succeeded")
	}
	// A crash in the middle of an append leaves a partial line: it was
	// never acknowledged and is cut off.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`8 {"kind":"vendor-cl`)
	f.Close()
	r.start()
	w2, err := newWebhook(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 7; i < 10; i++ {
		send(t, w2, testAlert(i))
	}
	waitFor(t, "delivery after restart", func() bool { return w2.Stats().Delivered == 10 })
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, r.alerts(), seq(0, 10))
	// A third process finds nothing to send again.
	w3, err := newWebhook(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := w3.Stats().Spooled; n != 0 {
		t.Errorf("%d alerts spooled again after delivery", n)
	}
	w3.Close()
}

// TestWebhookCloseDrains: Close delivers what is spooled when the receiver
// is up (the one-shot --pcap mode relies on it).
func TestWebhookCloseDrains(t *testing.T) {
	r := newReceiver(t)
	w, err := newWebhook(webhookConfig(t, r.url(), t.TempDir()), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		send(t, w, testAlert(i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, r.alerts(), seq(0, 30))
}

// roundTripFunc is an in-memory transport for synctest bubbles.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func answer(code int, hdr ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &http.Response{StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), Header: h, Body: io.NopCloser(strings.NewReader(""))}
}

// TestWebhookBackoff checks the retry schedule with a fake clock: delays
// double from MinBackoff up to MaxBackoff, and Retry-After is honoured.
func TestWebhookBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var attempts []time.Duration
		codes := []int{503, 500, 502, 503, 503, 503, 429, 200}
		tr := roundTripFunc(func(*http.Request) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Since(start))
			c := codes[min(len(attempts)-1, len(codes)-1)]
			if c == 429 {
				return answer(c, "Retry-After", "45"), nil
			}
			return answer(c), nil
		})
		cfg := WebhookConfig{URL: "http://soc.invalid/hook", SpoolDir: t.TempDir(), MinBackoff: time.Second, MaxBackoff: time.Minute, transport: tr}
		w, err := newWebhook(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		send(t, w, testAlert(1))
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		mu.Lock()
		got := attempts
		mu.Unlock()
		// Delays 1, 2, 4, 8, 16, 32 s; then 64 s is capped to MaxBackoff
		// (60 s), which is longer than the Retry-After of 45 s.
		want := []time.Duration{0, 1, 3, 7, 15, 31, 63, 123}
		if len(got) != len(want) {
			t.Fatalf("attempts at %v, want %d attempts", got, len(want))
		}
		for i := range want {
			if got[i] != want[i]*time.Second {
				t.Errorf("attempt %d at %v, want %v", i, got[i], want[i]*time.Second)
			}
		}
		if st := w.Stats(); st.Delivered != 1 || st.Retries != 7 {
			t.Errorf("stats %+v", st)
		}
		w.Close()
	})
}

// TestWebhookRetryAfter: a Retry-After longer than the current backoff (and
// within MaxBackoff) sets the next attempt.
func TestWebhookRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var attempts []time.Duration
		tr := roundTripFunc(func(*http.Request) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Since(start))
			if len(attempts) == 1 {
				return answer(429, "Retry-After", "30"), nil
			}
			return answer(200), nil
		})
		w, err := newWebhook(WebhookConfig{URL: "http://soc.invalid/", SpoolDir: t.TempDir(), transport: tr}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Send(context.Background(), testAlert(1))
		time.Sleep(time.Minute)
		synctest.Wait()
		w.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(attempts) != 2 || attempts[1] != 30*time.Second {
			t.Fatalf("attempts at %v, want [0s 30s]", attempts)
		}
	})
}

// TestWebhookSpoolFull: beyond MaxSpoolAlerts the oldest alerts are dropped
// and counted; the newest are delivered in order.
func TestWebhookSpoolFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var up atomic.Bool
		var mu sync.Mutex
		var got []egress.Alert
		tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if !up.Load() {
				return nil, fmt.Errorf("connection refused")
			}
			var a egress.Alert
			json.NewDecoder(r.Body).Decode(&a)
			mu.Lock()
			got = append(got, a)
			mu.Unlock()
			return answer(200), nil
		})
		w, err := newWebhook(WebhookConfig{URL: "http://soc.invalid/", SpoolDir: t.TempDir(), MaxSpoolAlerts: 5, transport: tr}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			w.Send(context.Background(), testAlert(i))
			synctest.Wait()
		}
		st := w.Stats()
		if st.Spooled != 5 || st.Dropped != 7 {
			t.Fatalf("stats %+v, want 5 spooled, 7 dropped", st)
		}
		up.Store(true)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		w.Close()
		// Alert 0 was in flight when the spool filled, so it is kept; the
		// next oldest were dropped.
		mu.Lock()
		defer mu.Unlock()
		checkOrder(t, got, []int{0, 8, 9, 10, 11})
	})
}

// TestWebhookRejected: a 4xx or 3xx answer moves the alert to rejected/
// and the queue goes on.
func TestWebhookRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []egress.Alert
		tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			var a egress.Alert
			json.NewDecoder(r.Body).Decode(&a)
			switch a.Detail {
			case "alert 1":
				return answer(400), nil
			case "alert 2":
				// Not followed: it would turn the POST into a GET.
				return answer(302, "Location", "http://soc.invalid/elsewhere"), nil
			}
			mu.Lock()
			defer mu.Unlock()
			got = append(got, a)
			return answer(202), nil
		})
		dir := t.TempDir()
		w, err := newWebhook(WebhookConfig{URL: "http://soc.invalid/", SpoolDir: dir, transport: tr}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			w.Send(context.Background(), testAlert(i))
		}
		synctest.Wait()
		w.Close()
		mu.Lock()
		checkOrder(t, got, []int{0, 3})
		mu.Unlock()
		b, _ := os.ReadFile(filepath.Join(dir, "rejected.jsonl"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if st := w.Stats(); st.Rejected != 2 || len(lines) != 2 || !strings.Contains(lines[0], `"alert 1"`) || !strings.Contains(lines[1], `"alert 2"`) {
			t.Fatalf("stats %+v, rejected.jsonl %q", st, b)
		}
	})
}

func TestWebhookConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  WebhookConfig
		want string
	}{
		{WebhookConfig{SpoolDir: "x"}, `sink: webhook: URL "" is not an http(s) URL`},
		{WebhookConfig{URL: "ftp://a/", SpoolDir: "x"}, `URL "ftp://a/" is not an http(s) URL`},
		{WebhookConfig{URL: "http://a/"}, "SpoolDir is required"},
	} {
		if _, err := newWebhook(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("newWebhook(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

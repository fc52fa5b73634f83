package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cordon-vms/cordon/egress"
)

// WebhookConfig configures a webhook sink: each alert is POSTed as one JSON
// object (Content-Type application/json).
//
//	alerts:
//	  webhook:
//	    url: https://soc.example.net/hooks/cordon
//	    headers: {Authorization: "Bearer s3cret"}
//	    spool_dir: /var/lib/cordon/webhook-spool
//
// Delivery is at-least-once and in order: Send appends the alert to the
// spool (a segmented log in SpoolDir, fsynced with Fsync) and returns; one
// goroutine POSTs the oldest spooled alert until the receiver answers 2xx,
// then advances the spool's cursor (delivered segments are deleted). The
// cursor is written after each delivery, so after a crash at most the
// alert in flight is sent twice. Network errors, 408,
// 429 and 5xx are retried with exponential backoff (MinBackoff doubling up to
// MaxBackoff; a Retry-After up to MaxBackoff is honoured). Other answers
// (4xx, 3xx) mean the receiver refuses the alert: it is appended to
// SpoolDir/rejected.jsonl, counted and logged, so the queue does not stall.
// Spooled alerts survive a restart and are delivered first.
//
// Drop policy: the spool is bounded by MaxSpoolAlerts and MaxSpoolBytes;
// when a new alert does not fit, the oldest spooled alerts (other than the
// one in flight) are dropped to make room (the newest alerts are the actionable ones) and counted in
// Stats().Dropped, with a warning in the log.
type WebhookConfig struct {
	// URL is the http or https endpoint. It is required.
	URL string `yaml:"url"`
	// Headers are added to each request (e.g. Authorization).
	Headers map[string]string `yaml:"headers"`
	// SpoolDir holds alerts not yet delivered. It is required; it is
	// created (mode 0700) if missing. Use one directory per webhook.
	SpoolDir string `yaml:"spool_dir"`
	// BatchSize, when above 1, POSTs up to that many spooled alerts at once
	// as a JSON array (in order), which drains a backlog faster. It
	// defaults to 1: one JSON object per request.
	BatchSize int `yaml:"batch_size"`
	// Timeout bounds one request. It defaults to 10 s.
	Timeout time.Duration `yaml:"timeout"`
	// MinBackoff is the first retry delay. It defaults to 1 s.
	MinBackoff time.Duration `yaml:"min_backoff"`
	// MaxBackoff caps the retry delay. It defaults to 5 minutes.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxSpoolAlerts bounds the spooled alerts. It defaults to 100000.
	MaxSpoolAlerts int `yaml:"max_spool_alerts"`
	// MaxSpoolBytes bounds the spool's size. It defaults to 64 MiB.
	MaxSpoolBytes int64 `yaml:"max_spool_bytes"`
	// Fsync flushes each spooled alert to the disk before Send returns, so
	// that it survives a power loss or kernel crash, at the cost of a disk
	// flush per alert (milliseconds; the engine waits for it). Without it a
	// spooled alert survives cordon crashing or being killed (it is in the
	// page cache), not the machine losing power. It defaults to false.
	Fsync bool `yaml:"fsync"`
	// CloseTimeout is how long Close keeps delivering spooled alerts before
	// it leaves the rest on disk for the next start. It defaults to 5 s.
	CloseTimeout time.Duration `yaml:"close_timeout"`

	transport http.RoundTripper // test hook; http.DefaultTransport by default
}

// WebhookStats are a webhook sink's counters.
type WebhookStats struct {
	Delivered uint64 // alerts the receiver accepted (2xx)
	Retries   uint64 // failed attempts that will be retried
	Rejected  uint64 // alerts refused by the receiver, kept in SpoolDir/rejected.jsonl
	Dropped   uint64 // oldest alerts deleted because the spool was full
	Spooled   int    // alerts waiting now
}

// Webhook is the webhook sink.
type Webhook struct {
	cfg    WebhookConfig
	log    *slog.Logger
	client *http.Client

	spool  *spool
	mu     sync.Mutex // guards closed and the rejected file
	closed bool

	wake     chan struct{}
	stop     chan struct{} // closed by Close: drain, then exit
	abort    chan struct{} // closed after CloseTimeout: exit now
	done     chan struct{}
	closeErr error
	once     sync.Once

	delivered, retries, rejected, dropped atomic.Uint64
}

var _ egress.AlertSink = (*Webhook)(nil)

// newWebhook checks cfg, loads the alerts left in cfg.SpoolDir by a previous
// run and starts delivering them.
func newWebhook(cfg WebhookConfig, l *slog.Logger) (*Webhook, error) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sink: webhook: URL %q is not an http(s) URL", cfg.URL)
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("sink: webhook: SpoolDir is required (alerts wait there while the receiver is down)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.MaxSpoolAlerts <= 0 {
		cfg.MaxSpoolAlerts = 100000
	}
	if cfg.MaxSpoolBytes <= 0 {
		cfg.MaxSpoolBytes = 64 << 20
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1
	}
	if cfg.BatchSize > 1000 {
		return nil, fmt.Errorf("sink: webhook: BatchSize %d is over 1000", cfg.BatchSize)
	}
	tr := cfg.transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	w := &Webhook{
		cfg: cfg,
		log: l.With("component", "sink", "sink", "webhook", "url", u.Redacted()),
		// Redirects are not followed: a 301/302 would turn the POST into a
		// GET and "deliver" an alert without its body. 3xx is a rejection.
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
	}
	sp, dropped, err := openSpool(cfg.SpoolDir, cfg.Fsync, cfg.MaxSpoolAlerts, cfg.MaxSpoolBytes)
	if err != nil {
		return nil, fmt.Errorf("sink: webhook: SpoolDir: %w", err)
	}
	w.spool = sp
	if dropped > 0 {
		w.dropped.Add(uint64(dropped))
		w.log.Warn("webhook spool over its bounds at start: dropped the oldest alerts", "dropped", dropped)
	}
	if n := sp.len(); n > 0 {
		w.log.Info("webhook spool has undelivered alerts", "alerts", n, "dir", cfg.SpoolDir)
		w.signal()
	}
	go w.run()
	return w, nil
}

func (w *Webhook) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (w *Webhook) Stats() WebhookStats {
	n := w.spool.len()
	return WebhookStats{
		Delivered: w.delivered.Load(), Retries: w.retries.Load(),
		Rejected: w.rejected.Load(), Dropped: w.dropped.Load(), Spooled: n,
	}
}

// Send spools a for delivery. It returns an error only when the alert
// could not be written to the spool (it was not accepted).
func (w *Webhook) Send(_ context.Context, a egress.Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("sink: webhook: %w", err)
	}
	w.mu.Lock() // so that Close cannot close the spool under the append
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("sink: webhook: closed")
	}
	dropped, err := w.spool.append(body)
	if dropped > 0 {
		n := w.dropped.Add(uint64(dropped))
		if bits.Len64(n) != bits.Len64(n-uint64(dropped)) { // log when the total passes a power of two
			w.log.Warn("webhook spool full: dropped the oldest alerts", "dropped_total", n,
				"max_spool_alerts", w.cfg.MaxSpoolAlerts, "max_spool_bytes", w.cfg.MaxSpoolBytes)
		}
	}
	if err != nil {
		return fmt.Errorf("sink: webhook: spool: %w", err)
	}
	w.signal()
	return nil
}

// errReject marks an answer that retrying will not change.
var errReject = errors.New("rejected")

// run delivers spooled alerts in order until Close.
func (w *Webhook) run() {
	defer close(w.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.abort:
			cancel()
		case <-w.done:
		}
	}()
	failures := 0
	for {
		batch := w.spool.headN(w.cfg.BatchSize)
		if len(batch) == 0 {
			select {
			case <-w.wake:
				continue
			case <-w.stop:
				return
			}
		}
		select {
		case <-w.abort:
			return
		default:
		}
		body, bodies, bad := w.readBatch(batch)
		if bad != nil {
			w.spool.doneN(bad)
			continue
		}
		retryAfter, err := w.post(ctx, body)
		switch {
		case err == nil:
			failures = 0
			w.delivered.Add(uint64(len(batch)))
			w.spool.doneN(batch)
		case errors.Is(err, errReject):
			failures = 0
			w.rejected.Add(uint64(len(batch)))
			w.log.Error("webhook receiver rejected alerts; kept in rejected.jsonl", "error", err, "alerts", len(batch), "seq", batch[0].seq)
			w.keepRejected(bodies)
			w.spool.doneN(batch)
		default:
			w.retries.Add(1)
			delay := w.cfg.MinBackoff << min(failures, 30)
			if delay > w.cfg.MaxBackoff || delay <= 0 {
				delay = w.cfg.MaxBackoff
			}
			if retryAfter > delay && retryAfter <= w.cfg.MaxBackoff {
				delay = retryAfter
			}
			failures++
			if failures == 1 || failures&(failures-1) == 0 {
				w.log.Warn("webhook delivery failed; will retry", "error", err, "attempt", failures, "retry_in", delay)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-w.abort:
				t.Stop()
				return
			}
		}
	}
}

// readBatch reads the alerts of a batch and builds the request body: the
// alert's JSON object, or a JSON array of them when BatchSize is above 1.
// Unreadable entries are returned in bad (to be skipped).
func (w *Webhook) readBatch(batch []spoolEntry) (body []byte, bodies [][]byte, bad []spoolEntry) {
	for _, e := range batch {
		b, err := w.spool.read(e)
		if err != nil {
			w.log.Error("webhook spool entry unreadable; skipped", "seq", e.seq, "error", err)
			bad = append(bad, e)
			continue
		}
		bodies = append(bodies, b)
	}
	if bad != nil {
		return nil, nil, bad
	}
	if w.cfg.BatchSize == 1 {
		return bodies[0], bodies, nil
	}
	body = append(body, '[')
	for i, b := range bodies {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, b...)
	}
	return append(body, ']'), bodies, nil
}

// keepRejected appends refused alerts to SpoolDir/rejected.jsonl.
func (w *Webhook) keepRejected(bodies [][]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var buf []byte
	for _, b := range bodies {
		buf = append(append(buf, b...), '\n')
	}
	f, err := os.OpenFile(filepath.Join(w.cfg.SpoolDir, "rejected.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		_, err = f.Write(buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		w.log.Error("webhook: keeping rejected alerts failed", "error", err)
	}
}

// post sends one alert. It returns nil on 2xx, an error wrapping errReject
// when the receiver refuses it, and another error (with any Retry-After)
// when it should be retried.
func (w *Webhook) post(ctx context.Context, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errReject, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cordon-egress")
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return 0, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		var ra time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			ra = time.Duration(s) * time.Second
		}
		return ra, fmt.Errorf("receiver answered %s", resp.Status)
	default:
		return 0, fmt.Errorf("%w: receiver answered %s", errReject, resp.Status)
	}
}

// Close stops accepting alerts, keeps delivering the spool for up to
// CloseTimeout, and leaves what remains on disk for the next start.
func (w *Webhook) Close() error {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
		t := time.NewTimer(w.cfg.CloseTimeout)
		defer t.Stop()
		select {
		case <-w.done:
		case <-t.C:
			close(w.abort)
			<-w.done
		}
		left := w.spool.len()
		w.mu.Lock()
		w.closeErr = w.spool.close()
		w.mu.Unlock()
		if left > 0 {
			w.log.Warn("webhook closed with undelivered alerts; they stay in the spool for the next start", "alerts", left, "dir", w.cfg.SpoolDir)
		}
	})
	return w.closeErr
}

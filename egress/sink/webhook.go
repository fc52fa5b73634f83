package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
// Delivery is at-least-once and in order: Send writes the alert to the spool
// directory (fsynced) and returns; one goroutine POSTs the oldest spooled
// alert until the receiver answers 2xx, then deletes it. Network errors, 408,
// 429 and 5xx are retried with exponential backoff (MinBackoff doubling up to
// MaxBackoff; a Retry-After up to MaxBackoff is honoured). Other answers
// (4xx, 3xx) mean the receiver refuses the alert: it is moved to
// SpoolDir/rejected/, counted and logged, so the queue does not stall.
// Spooled alerts survive a restart and are delivered first.
//
// Drop policy: the spool is bounded by MaxSpoolAlerts and MaxSpoolBytes;
// when a new alert does not fit, the oldest spooled alerts are deleted to
// make room (the newest alerts are the actionable ones) and counted in
// Stats().Dropped, with a warning in the log.
type WebhookConfig struct {
	// URL is the http or https endpoint. It is required.
	URL string `yaml:"url"`
	// Headers are added to each request (e.g. Authorization).
	Headers map[string]string `yaml:"headers"`
	// SpoolDir holds alerts not yet delivered. It is required; it is
	// created (mode 0700) if missing. Use one directory per webhook.
	SpoolDir string `yaml:"spool_dir"`
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
	// CloseTimeout is how long Close keeps delivering spooled alerts before
	// it leaves the rest on disk for the next start. It defaults to 5 s.
	CloseTimeout time.Duration `yaml:"close_timeout"`

	transport http.RoundTripper // test hook; http.DefaultTransport by default
}

// WebhookStats are a webhook sink's counters.
type WebhookStats struct {
	Delivered uint64 // alerts the receiver accepted (2xx)
	Retries   uint64 // failed attempts that will be retried
	Rejected  uint64 // alerts refused by the receiver, kept in SpoolDir/rejected/
	Dropped   uint64 // oldest alerts deleted because the spool was full
	Spooled   int    // alerts waiting now
}

// Webhook is the webhook sink.
type Webhook struct {
	cfg    WebhookConfig
	log    *slog.Logger
	client *http.Client

	mu       sync.Mutex
	queue    []spoolEntry // in delivery order
	bytes    int64
	nextSeq  uint64
	inflight uint64 // seq being delivered, 0 if none
	closed   bool

	wake     chan struct{}
	stop     chan struct{} // closed by Close: drain, then exit
	abort    chan struct{} // closed after CloseTimeout: exit now
	done     chan struct{}
	closeErr error
	once     sync.Once

	delivered, retries, rejected, dropped atomic.Uint64
}

type spoolEntry struct {
	seq  uint64
	size int64
}

var _ egress.AlertSink = (*Webhook)(nil)

// spoolName is the file of a spooled alert; names sort in delivery order.
func spoolName(seq uint64) string { return fmt.Sprintf("%020d.json", seq) }

// NewWebhook checks cfg, loads the alerts left in cfg.SpoolDir by a previous
// run and starts delivering them.
func NewWebhook(cfg WebhookConfig, l *slog.Logger) (egress.AlertSink, error) {
	w, err := newWebhook(cfg, l)
	if err != nil {
		return nil, err
	}
	return w, nil
}

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
	if err := w.load(); err != nil {
		return nil, err
	}
	if n := len(w.queue); n > 0 {
		w.log.Info("webhook spool has undelivered alerts", "alerts", n, "dir", cfg.SpoolDir)
		w.signal()
	}
	go w.run()
	return w, nil
}

// load reads the spool directory left by a previous run.
func (w *Webhook) load() error {
	dir := w.cfg.SpoolDir
	if err := os.MkdirAll(filepath.Join(dir, "rejected"), 0o700); err != nil {
		return fmt.Errorf("sink: webhook: SpoolDir: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sink: webhook: SpoolDir: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(filepath.Join(dir, name)) // a write cut short: never acknowledged
			continue
		}
		num, ok := strings.CutSuffix(name, ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil || seq == 0 {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		w.queue = append(w.queue, spoolEntry{seq, info.Size()})
		w.bytes += info.Size()
	}
	slices.SortFunc(w.queue, func(a, b spoolEntry) int { return cmpUint(a.seq, b.seq) })
	w.nextSeq = 1
	if n := len(w.queue); n > 0 {
		w.nextSeq = w.queue[n-1].seq + 1
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (w *Webhook) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (w *Webhook) Stats() WebhookStats {
	w.mu.Lock()
	n := len(w.queue)
	w.mu.Unlock()
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
	size := int64(len(body))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("sink: webhook: closed")
	}
	// Make room: drop the oldest alerts that are not being delivered.
	for len(w.queue) > 0 && (len(w.queue)+1 > w.cfg.MaxSpoolAlerts || w.bytes+size > w.cfg.MaxSpoolBytes) {
		i := 0
		if w.queue[0].seq == w.inflight {
			if len(w.queue) == 1 {
				break
			}
			i = 1
		}
		e := w.queue[i]
		w.queue = slices.Delete(w.queue, i, i+1)
		w.bytes -= e.size
		os.Remove(filepath.Join(w.cfg.SpoolDir, spoolName(e.seq)))
		if n := w.dropped.Add(1); n&(n-1) == 0 { // log at powers of two
			w.log.Warn("webhook spool full: dropped the oldest alert", "dropped_total", n,
				"max_spool_alerts", w.cfg.MaxSpoolAlerts, "max_spool_bytes", w.cfg.MaxSpoolBytes)
		}
	}
	seq := w.nextSeq
	if err := writeFileSync(w.cfg.SpoolDir, spoolName(seq), body); err != nil {
		return fmt.Errorf("sink: webhook: spool: %w", err)
	}
	w.nextSeq++
	w.queue = append(w.queue, spoolEntry{seq, size})
	w.bytes += size
	w.signal()
	return nil
}

// writeFileSync writes name in dir atomically (temporary file, fsync,
// rename) so a crash leaves either the whole alert or none.
func writeFileSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, ".tmp-"+name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
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
		w.mu.Lock()
		var e spoolEntry
		have := len(w.queue) > 0
		if have {
			e = w.queue[0]
			w.inflight = e.seq
		}
		w.mu.Unlock()
		if !have {
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
		path := filepath.Join(w.cfg.SpoolDir, spoolName(e.seq))
		body, err := os.ReadFile(path)
		if err != nil {
			// Dropped while we looked, or unreadable: take it off the queue.
			w.log.Warn("webhook spool entry unreadable", "file", path, "err", err)
			w.finish(e, "")
			continue
		}
		retryAfter, err := w.post(ctx, body)
		switch {
		case err == nil:
			failures = 0
			w.delivered.Add(1)
			w.finish(e, "")
		case errors.Is(err, errReject):
			failures = 0
			w.rejected.Add(1)
			w.log.Error("webhook receiver rejected an alert; kept in the rejected directory", "err", err, "seq", e.seq)
			w.finish(e, filepath.Join(w.cfg.SpoolDir, "rejected", spoolName(e.seq)))
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
				w.log.Warn("webhook delivery failed; will retry", "err", err, "attempt", failures, "retry_in", delay)
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

// finish removes e from the queue and its file from the spool (or moves it
// to keep).
func (w *Webhook) finish(e spoolEntry, keep string) {
	path := filepath.Join(w.cfg.SpoolDir, spoolName(e.seq))
	if keep != "" {
		if err := os.Rename(path, keep); err != nil {
			w.log.Error("webhook: keep rejected alert", "err", err)
		}
	} else {
		os.Remove(path)
	}
	w.mu.Lock()
	if len(w.queue) > 0 && w.queue[0].seq == e.seq {
		w.queue = w.queue[1:]
		w.bytes -= e.size
	}
	w.inflight = 0
	w.mu.Unlock()
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
		w.mu.Lock()
		left := len(w.queue)
		w.mu.Unlock()
		if left > 0 {
			w.log.Warn("webhook closed with undelivered alerts; they stay in the spool for the next start", "alerts", left, "dir", w.cfg.SpoolDir)
		}
	})
	return w.closeErr
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/cordon-vms/cordon/egress"
	"github.com/prometheus/client_golang/prometheus"
)

// Routes says where alerts go: the alerts section of an egress policy file.
// With nothing set they go to standard output.
type Routes struct {
	// Stdout writes JSON lines to standard output. It defaults to true when
	// no other route is set.
	Stdout *bool `yaml:"stdout"`
	// File appends JSON lines to a file (reopened on SIGHUP for logrotate).
	File string `yaml:"file"`
	// Syslog sends RFC 5424 messages over udp, tcp or tls.
	Syslog *SyslogConfig `yaml:"syslog"`
	// Webhook POSTs each alert as JSON, spooling to disk while the receiver is down.
	Webhook *WebhookConfig `yaml:"webhook"`
}

// ConfigError is a mistake in the routes (a bad syslog or webhook section),
// as opposed to a failure to reach a sink.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Open opens every configured route and returns them as one sink; stdout
// is where the standard-output route writes. A file route is reopened on
// SIGHUP until the Fanout is closed.
func (r Routes) Open(stdout io.Writer, log *slog.Logger) (*Fanout, error) {
	fan := &Fanout{}
	if r.File != "" {
		f, err := openFile(r.File)
		if err != nil {
			return nil, err
		}
		fan.Sinks = append(fan.Sinks, f)
		fan.stopHUP = reopenOnHUP(f, log)
	}
	if r.Syslog != nil {
		s, err := newSyslog(*r.Syslog, log)
		if err != nil {
			fan.Close()
			return nil, &ConfigError{fmt.Errorf("alerts.syslog: %w", err)}
		}
		fan.Sinks = append(fan.Sinks, s)
	}
	if r.Webhook != nil {
		s, err := newWebhook(*r.Webhook, log)
		if err != nil {
			fan.Close()
			return nil, &ConfigError{fmt.Errorf("alerts.webhook: %w", err)}
		}
		fan.Sinks = append(fan.Sinks, s)
	}
	if (r.Stdout == nil && len(fan.Sinks) == 0) || (r.Stdout != nil && *r.Stdout) {
		fan.Sinks = append(fan.Sinks, newJSONLines(stdout))
	}
	return fan, nil
}

// reopenOnHUP reopens f on SIGHUP (logrotate) until the returned function
// is called.
func reopenOnHUP(f *File, log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				if err := f.Reopen(); err != nil {
					log.Error("reopening the alert file failed", "error", err)
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// Fanout sends each alert to every one of Sinks, and remembers whether an
// alert of kind FailOn ("any" for every kind) went through it: the
// --fail-on of a CI pipeline.
type Fanout struct {
	Sinks  []egress.AlertSink
	FailOn string

	failed  atomic.Bool
	stopHUP func()
}

var _ egress.AlertSink = (*Fanout)(nil)

// Send sends a to every sink; a sink's failure does not keep the alert from
// the others.
func (f *Fanout) Send(ctx context.Context, a egress.Alert) error {
	if f.FailOn == "any" || (f.FailOn != "" && f.FailOn == a.Kind) {
		f.failed.Store(true)
	}
	var errs []error
	for _, s := range f.Sinks {
		if err := s.Send(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Failed reports whether an alert of kind FailOn was sent.
func (f *Fanout) Failed() bool { return f.failed.Load() }

// Close closes every sink.
func (f *Fanout) Close() error {
	if f.stopHUP != nil {
		f.stopHUP()
		f.stopHUP = nil
	}
	var errs []error
	for _, s := range f.Sinks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Metrics returns the collectors of the sinks that keep counters of their
// own (the webhook's spool).
func (f *Fanout) Metrics() []prometheus.Collector {
	var out []prometheus.Collector
	for _, s := range f.Sinks {
		if m, ok := s.(interface{ Metrics() prometheus.Collector }); ok {
			out = append(out, m.Metrics())
		}
	}
	return out
}

// String says where the alerts go, for the start-up log line: "stdout",
// "file alerts.jsonl", "syslog udp://host:514", "webhook https://host"
// (a webhook's path and query are left out: they may hold a token).
func (r Routes) String() string {
	var to []string
	if r.File != "" {
		to = append(to, "file "+r.File)
	}
	if r.Syslog != nil {
		n := string(r.Syslog.Network)
		if n == "" {
			n = "udp"
		}
		to = append(to, "syslog "+n+"://"+r.Syslog.Addr)
	}
	if r.Webhook != nil {
		w := "webhook"
		if u, err := url.Parse(r.Webhook.URL); err == nil {
			w += " " + u.Scheme + "://" + u.Host
		}
		to = append(to, w)
	}
	if (r.Stdout == nil && len(to) == 0) || (r.Stdout != nil && *r.Stdout) {
		to = append(to, "stdout")
	}
	return strings.Join(to, ", ")
}

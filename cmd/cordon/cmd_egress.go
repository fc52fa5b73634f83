package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/capture"
	"github.com/cordon-vms/cordon/egress/netflow"
	"github.com/cordon-vms/cordon/egress/sink"
	"github.com/cordon-vms/cordon/internal/config"
	"github.com/cordon-vms/cordon/internal/logging"
	"github.com/cordon-vms/cordon/internal/watchlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const egressUsage = `usage: cordon egress --policy FILE (--pcap FILE | --iface NAME | --netflow ADDR) [flags]

Watches what cameras send and raises alerts a SOC can act on:
  unexpected-destination  a camera talks to a host/port no allow rule permits
                          (public DNS resolvers hard-coded in firmware included)
  vendor-cloud            DNS query, TLS SNI or QUIC Initial SNI naming a
                          watch-listed vendor domain; watch-listed IPs, ports
                          and payload signatures (UDP 8800, PPPP 0xF1, ...)
  dns-tunnel              many long/high-entropy/hex names under one domain
  beacon                  regular contacts with one destination
  volume                  bytes a camera sends to non-allowed destinations
  lateral                 camera → camera or camera → core on management ports
  new-destination         first contact not in the learned baseline

Inputs: --pcap reads a pcap or pcapng file (gzip/zstd compressed too; - for
standard input) on packet time, then exits. --iface (AF_PACKET, needs
CAP_NET_RAW) and --netflow (NetFlow v5/v9/IPFIX over UDP) run until stopped.

Alerts go to standard output as JSON lines unless the policy's alerts:
section routes them elsewhere (file, syslog, webhook). See docs/egress.md.

Exit codes: 0 ok, 1 failure, 2 usage, 3 when --fail-on is reached.

Examples:
  cordon egress --policy policy.yml --pcap capture.pcapng | jq -c 'select(.severity=="high")'
  cordon egress --policy policy.yml --pcap - < capture.pcap.zst
  cordon egress --policy policy.yml --pcap day.pcap.gz --baseline base.json --fail-on vendor-cloud
  cordon egress --policy policy.yml --netflow 0.0.0.0:2055 --metrics 127.0.0.1:9464
  cordon egress --policy policy.yml --iface eth1 --filter 'net 192.168.50.0/24'
  cordon inspect ./rootfs --watchlist cam.yml && cordon egress --policy p.yml --watchlist cam.yml --pcap c.pcap`

// egressFile is the policy file: the egress.Policy plus the alert routes
// (which name sink configurations, so they live here, where both meet).
type egressFile struct {
	egress.Policy `yaml:",inline"`
	Alerts        alertRoutes `yaml:"alerts"`
}

// alertRoutes says where alerts go. With nothing set they go to stdout.
type alertRoutes struct {
	// Stdout writes JSON lines to standard output. It defaults to true when
	// no other route is set.
	Stdout *bool `yaml:"stdout"`
	// File appends JSON lines to a file (reopened on SIGHUP for logrotate).
	File string `yaml:"file"`
	// Syslog sends RFC 5424 messages over udp, tcp or tls.
	Syslog *sink.SyslogConfig `yaml:"syslog"`
	// Webhook POSTs each alert as JSON, spooling to disk while the receiver is down.
	Webhook *sink.WebhookConfig `yaml:"webhook"`
}

func runEgress(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "egress", egressUsage)
	policyPath := fs.String("policy", "", "policy YAML `FILE` (required; see docs/egress.md)")
	pcap := fs.String("pcap", "", "read packets from a pcap/pcapng `FILE` (.gz/.zst recognised; - for stdin)")
	iface := fs.String("iface", "", "capture live on interface `NAME` (AF_PACKET; needs CAP_NET_RAW)")
	filter := fs.String("filter", "", "capture `filter` for --iface, a subset of tcpdump's: \"net 192.168.50.0/24 and not port 554\"")
	promisc := fs.Bool("promisc", false, "with --iface: capture in promiscuous mode (a switch mirror port)")
	nf := fs.String("netflow", "", "collect NetFlow v5/v9/IPFIX on UDP `ADDR` (like 0.0.0.0:2055)")
	var watchlists stringList
	fs.Var(&watchlists, "watchlist", "extra watch-list `FILE` (cordon inspect --watchlist output); repeatable")
	baseline := fs.String("baseline", "", "new-destination baseline `FILE` (overrides the policy's baseline.file)")
	reset := fs.Bool("reset-baseline", false, "forget the learned baseline before starting")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on `ADDR` (like 127.0.0.1:9464) at /metrics")
	failOn := fs.String("fail-on", "", "exit with code 3 when an alert of this `kind` (or \"any\") was raised")
	stats := fs.Bool("stats", false, "print packet, flow and alert counts and the rate to stderr at the end")
	logLevel := fs.String("log-level", "warn", "log `level`: debug, info, warn or error")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags go before it? the capture is --pcap FILE)", fs.Arg(0))
	}
	if *policyPath == "" {
		return usagef("--policy FILE is required (see docs/egress.md for an example)")
	}
	inputs := 0
	for _, s := range []string{*pcap, *iface, *nf} {
		if s != "" {
			inputs++
		}
	}
	if inputs != 1 {
		return usagef("give exactly one input: --pcap FILE, --iface NAME or --netflow ADDR")
	}
	if *filter != "" && *iface == "" {
		return usagef("--filter applies to --iface only")
	}
	if *failOn != "" && *failOn != "any" && !slices.Contains(egress.Kinds, *failOn) {
		return usagef("--fail-on %q: want any or one of %s", *failOn, strings.Join(egress.Kinds, ", "))
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: *logLevel})
	if err != nil {
		return usagef("--log-level: %v", err)
	}

	var pf egressFile
	if err := config.LoadFile(*policyPath, &pf); err != nil {
		return usagef("%v", err)
	}
	if err := pf.Policy.Validate(*policyPath); err != nil {
		return usagef("%v", err)
	}
	pf.Policy.Defaults()

	wl := watchlist.Default()
	files := slices.Clone(watchlists)
	for _, f := range pf.Watchlists {
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(*policyPath), f)
		}
		files = append(files, f)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return usagef("watch-list: %v", err)
		}
		extra, err := watchlist.Parse(f, data)
		if err != nil {
			return usagef("%v", err)
		}
		wl = wl.Merge(extra)
	}

	var base *egress.Baseline
	basePath := pf.Baseline.File
	if *baseline != "" {
		basePath = *baseline
	} else if basePath != "" && !filepath.IsAbs(basePath) {
		basePath = filepath.Join(filepath.Dir(*policyPath), basePath)
	}
	if *reset {
		if basePath == "" {
			return usagef("--reset-baseline needs a baseline (--baseline FILE or baseline.file in the policy)")
		}
		if err := egress.ResetBaseline(basePath); err != nil {
			return err
		}
	}
	if basePath != "" {
		if base, err = egress.LoadBaseline(basePath, pf.Baseline.Learn.D(), pf.Baseline.Max); err != nil {
			return err
		}
	}

	sinks, err := openSinks(e, pf.Alerts, log)
	if err != nil {
		return err
	}
	fan := &fanout{sinks: sinks, failOn: *failOn}
	defer fan.Close()

	eng, err := egress.NewEngine(egress.Config{Policy: &pf.Policy, Watchlist: wl, Sink: fan, Baseline: base, Logger: log})
	if err != nil {
		return err
	}

	var live egress.PacketSource
	if *iface != "" {
		if live, err = openCapture(*iface, *filter, *promisc); err != nil {
			return err
		}
	}

	var nfc *netflow.Collector
	if *nf != "" {
		nfc = &netflow.Collector{Addr: *nf, Logger: log, Handle: eng.HandleFlow}
		if err := nfc.Listen(); err != nil {
			return err
		}
	}

	if *metrics != "" {
		// Sinks and inputs with counters of their own (the webhook's spool,
		// the NetFlow collector's decode errors) are scraped too.
		var extra []prometheus.Collector
		for _, s := range sinks {
			if m, ok := s.(interface{ Metrics() prometheus.Collector }); ok {
				extra = append(extra, m.Metrics())
			}
		}
		if nfc != nil {
			extra = append(extra, nfc.Metrics())
		}
		stop, err := serveMetrics(*metrics, eng, live, extra, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	start := time.Now()
	var runErr error
	switch {
	case *pcap != "":
		src, err := egress.OpenFile(*pcap, e.Stdin)
		if err != nil {
			return err
		}
		runErr = eng.Run(ctx, src)
		src.Close()
	case nfc != nil:
		log.Info("collecting flows", "addr", nfc.LocalAddr().String())
		runErr = runLive(ctx, eng, func(ctx context.Context) error { return nfc.Run(ctx) })
	case *iface != "":
		runErr = runCapture(ctx, eng, live, log)
	}
	// The alerts still pending are delivered at exit even after SIGINT
	// canceled ctx, within a bound.
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelClose()
	if err := eng.Close(closeCtx); err != nil && runErr == nil {
		runErr = err
	}
	if *stats {
		m := eng.Metrics()
		el := time.Since(start)
		var alerts uint64
		for i := range m.Alerts {
			alerts += m.Alerts[i].Load()
		}
		fmt.Fprintf(e.Stderr, "egress: %d packets, %d flow records, %d flows (%d evicted), %d malformed, %d alerts in %s (%.0f packets+records/s)\n",
			m.Packets.Load(), m.FlowRecords.Load(), m.Flows.Load(), m.FlowEvictions.Load(), m.DecodeErrors.Load(), alerts,
			el.Round(time.Millisecond), float64(m.Packets.Load()+m.FlowRecords.Load())/el.Seconds())
	}
	if runErr != nil {
		return runErr
	}
	if fan.failed.Load() {
		return &exitError{code: exitFindings, err: fmt.Errorf("alerts of kind %s were raised (--fail-on)", *failOn)}
	}
	return nil
}

// runLive runs a live input and advances the engine clock every second so
// windows close while the network is quiet.
func runLive(ctx context.Context, eng *egress.Engine, run func(context.Context) error) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				eng.Advance(ctx, now)
			}
		}
	})
	err := run(ctx)
	close(done)
	wg.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func openSinks(e *env, r alertRoutes, log *slog.Logger) ([]egress.AlertSink, error) {
	var sinks []egress.AlertSink
	if r.File != "" {
		f, err := sink.OpenFile(r.File)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, f)
		reopenOnHUP(f, log)
	}
	if r.Syslog != nil {
		s, err := sink.NewSyslog(*r.Syslog, log)
		if err != nil {
			closeAll(sinks)
			return nil, usagef("alerts.syslog: %v", err)
		}
		sinks = append(sinks, s)
	}
	if r.Webhook != nil {
		s, err := sink.NewWebhook(*r.Webhook, log)
		if err != nil {
			closeAll(sinks)
			return nil, usagef("alerts.webhook: %v", err)
		}
		sinks = append(sinks, s)
	}
	if (r.Stdout == nil && len(sinks) == 0) || (r.Stdout != nil && *r.Stdout) {
		sinks = append(sinks, sink.NewJSONLines(e.Stdout))
	}
	return sinks, nil
}

func closeAll(sinks []egress.AlertSink) {
	for _, s := range sinks {
		_ = s.Close()
	}
}

// fanout sends each alert to every sink and remembers whether --fail-on was reached.
type fanout struct {
	sinks  []egress.AlertSink
	failOn string
	failed atomic.Bool
}

func (f *fanout) Send(ctx context.Context, a egress.Alert) error {
	if f.failOn == "any" || f.failOn == a.Kind {
		f.failed.Store(true)
	}
	var errs []error
	for _, s := range f.sinks {
		if err := s.Send(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *fanout) Close() error {
	var errs []error
	for _, s := range f.sinks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

var _ egress.AlertSink = (*fanout)(nil)

func serveMetrics(addr string, eng *egress.Engine, live egress.PacketSource, extra []prometheus.Collector, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(eng.Collector(), collectors.NewGoCollector())
	reg.MustRegister(extra...)
	if s, ok := live.(*capture.Source); ok {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cordon_egress_capture_dropped_total", Help: "Packets the kernel dropped because the capture ring was full.",
		}, func() float64 {
			_, d, _ := s.Stats()
			return float64(d)
		}))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("egress: metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// runCapture captures live on iface until ctx is done.
func runCapture(ctx context.Context, eng *egress.Engine, src egress.PacketSource, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { src.Close() }) // unblocks ReadPacketData
	defer stop()
	err := runLive(ctx, eng, func(ctx context.Context) error { return eng.Run(ctx, src) })
	if s, ok := src.(*capture.Source); ok {
		if rx, drop, serr := s.Stats(); serr == nil {
			log.Info("capture finished", "received", rx, "dropped_by_kernel", drop)
		}
	}
	src.Close()
	return err
}

// openCapture opens the live capture; filter mistakes are usage errors.
func openCapture(iface, filter string, promisc bool) (egress.PacketSource, error) {
	src, err := capture.Open(iface, capture.Options{Filter: filter, Promiscuous: promisc})
	var fe *capture.FilterError
	if errors.As(err, &fe) || errors.Is(err, capture.ErrFilterTooComplex) {
		return nil, usagef("--filter: %v", err)
	}
	return src, err
}

// reopenOnHUP reopens the alert file on SIGHUP (logrotate).
func reopenOnHUP(f *sink.File, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		for range ch {
			if err := f.Reopen(); err != nil {
				log.Error("reopening the alert file failed", "err", err)
			}
		}
	}()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/capture"
	"github.com/cordon-vms/cordon/egress/netflow"
	"github.com/cordon-vms/cordon/egress/nfcapd"
	"github.com/cordon-vms/cordon/egress/sink"
	"github.com/cordon-vms/cordon/internal/logging"
	"github.com/cordon-vms/cordon/internal/metricsrv"
	"github.com/cordon-vms/cordon/internal/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const egressUsage = `usage: cordon egress --policy FILE (--pcap FILE | --nfcapd FILE|DIR | --iface NAME | --netflow ADDR) [flags]

Watches what cameras send and raises alerts a SOC can act on:
  scan                    more than 20 unexpected destinations in a window,
                          rolled up into one alert (scan, flood, worm)
  unexpected-destination  a camera talks to a host/port no allow rule permits
                          (public DNS resolvers hard-coded in firmware and
                          DNS-over-HTTPS/TLS included)
  vendor-cloud            DNS query, TLS SNI or QUIC Initial SNI naming a
                          watch-listed vendor domain; watch-listed IPs, ports
                          and payload signatures (UDP 8800, PPPP header, ...)
  dns-tunnel              many long/high-entropy/hex names under one domain
  beacon                  regular contacts with one destination
  volume                  bytes a camera sends to non-allowed destinations
  lateral                 camera → camera or camera → core on management ports
                          (one alert per window lists every target)
  new-destination         first contact not in the learned baseline

Inputs: --pcap reads a pcap or pcapng file (gzip/zstd compressed too; - for
standard input) on packet time, then exits; --nfcapd reads nfdump's flow
files (a file, or a directory of nfcapd.* files) the same way. --iface (AF_PACKET, needs
CAP_NET_RAW) and --netflow (NetFlow v5/v9/IPFIX over UDP) run until stopped.

Alerts go to standard output as JSON lines unless the policy's alerts:
section routes them elsewhere (file, syslog, webhook). See docs/egress.md.

Exit codes: 0 ok, 1 failure, 2 usage, 3 when --fail-on is reached.

Examples:
  cordon egress --policy policy.yml --pcap capture.pcapng | jq -c 'select(.severity=="high")'
  cordon egress --policy policy.yml --pcap - < capture.pcap.zst
  cordon egress --policy policy.yml --pcap day.pcap.gz --baseline base.json --fail-on vendor-cloud
  cordon egress --policy policy.yml --netflow 0.0.0.0:2055 --metrics 127.0.0.1:9464
  cordon egress --policy policy.yml --nfcapd /var/cache/nfdump --stats
  cordon egress --policy policy.yml --iface eth1 --filter 'net 192.168.50.0/24'
  cordon inspect ./rootfs --watchlist cam.yml && cordon egress --policy p.yml --watchlist cam.yml --pcap c.pcap`

// egressFile is the policy file: the egress.Policy plus the alert routes
// (which name sink configurations, so they meet here).
type egressFile struct {
	egress.Policy `yaml:",inline"`
	Alerts        sink.Routes `yaml:"alerts"`
}

// egressFlags are cordon egress's flags.
type egressFlags struct {
	policy, pcap, nfcapd, iface, filter, netflow string
	promisc, reset, stats                        bool
	watchlists                                   stringList
	baseline, metrics, failOn, logLevel          string
}

func runEgress(ctx context.Context, e *env, args []string) (err error) {
	defer func() {
		if err != nil {
			err = &unprefixed{err}
		}
	}()
	f, err := parseEgressFlags(e, args)
	if err != nil {
		return err
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: f.logLevel})
	if err != nil {
		return usagef("--log-level: %v", err)
	}
	var pf egressFile
	if err := egress.DecodePolicyFile(f.policy, &pf, &pf.Policy); err != nil {
		return usagef("%v", err)
	}
	dir := filepath.Dir(f.policy)
	wl, err := pf.Policy.LoadWatchlist(dir, f.watchlists...)
	if err != nil {
		return usagef("%v", err)
	}
	base, err := pf.Policy.OpenBaseline(dir, f.baseline, f.reset)
	if errors.Is(err, egress.ErrNoBaseline) {
		return usagef("%v", err)
	} else if err != nil {
		return err
	}
	fan, err := pf.Alerts.Open(e.Stdout, log)
	var ce *sink.ConfigError
	if errors.As(err, &ce) {
		return usagef("%v", err)
	} else if err != nil {
		return err
	}
	defer fan.Close()
	fan.FailOn = f.failOn
	eng, err := egress.NewEngine(egress.Config{Policy: &pf.Policy, Watchlist: wl, Sink: fan, Baseline: base, Logger: log})
	if err != nil {
		return err
	}

	start := time.Now()
	runErr := runEgressInput(ctx, e, f, eng, fan, pf.Alerts.String(), log)
	// The alerts still pending are delivered at exit even after SIGINT
	// canceled ctx, within a bound.
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelClose()
	if err := eng.Close(closeCtx); err != nil && runErr == nil {
		runErr = err
	}
	if f.stats {
		fmt.Fprintln(e.Stderr, eng.Metrics().Summary(time.Since(start)))
	}
	if cutShort(runErr) && fan.Failed() {
		// The packets before the cut (or the bad record) were analysed
		// and raised the kind.
		return &exitError{code: exitFindings, err: fmt.Errorf("%v; alerts of kind %s were raised (--fail-on)", runErr, f.failOn)}
	}
	if runErr != nil {
		return runErr
	}
	if fan.Failed() {
		return &exitError{code: exitFindings, err: fmt.Errorf("alerts of kind %s were raised (--fail-on)", f.failOn)}
	}
	return nil
}

// cutShort says err is an input that ended early, a capture truncated or
// with a record that cannot be read, or an nfcapd file cut short: what
// came before it was analysed, so the alerts it raised decide --fail-on.
func cutShort(err error) bool {
	var te *egress.TruncatedError
	var re *egress.ReadError
	return errors.As(err, &te) || errors.As(err, &re) || errors.Is(err, nfcapd.ErrTruncated)
}

func parseEgressFlags(e *env, args []string) (*egressFlags, error) {
	var f egressFlags
	fs := newFlagSet(e, "egress", egressUsage)
	fs.StringVar(&f.policy, "policy", "", "policy YAML `FILE` (required; see docs/egress.md)")
	fs.StringVar(&f.pcap, "pcap", "", "read packets from a pcap/pcapng `FILE` (.gz/.zst recognised; - for stdin)")
	fs.StringVar(&f.nfcapd, "nfcapd", "", "read flow records from nfdump's nfcapd `FILE` or a DIR of nfcapd.* files")
	fs.StringVar(&f.iface, "iface", "", "capture live on interface `NAME` (AF_PACKET; needs CAP_NET_RAW)")
	fs.StringVar(&f.filter, "filter", "", "capture `filter` for --iface, a subset of tcpdump's: \"net 192.168.50.0/24 and not port 554\"")
	fs.BoolVar(&f.promisc, "promisc", false, "with --iface: capture in promiscuous mode (a switch mirror port)")
	fs.StringVar(&f.netflow, "netflow", "", "collect NetFlow v5/v9/IPFIX on UDP `ADDR` (like 0.0.0.0:2055)")
	fs.Var(&f.watchlists, "watchlist", "extra watch-list `FILE` (cordon inspect --watchlist output); repeatable")
	fs.StringVar(&f.baseline, "baseline", "", "new-destination baseline `FILE` (overrides the policy's baseline.file)")
	fs.BoolVar(&f.reset, "reset-baseline", false, "forget the learned baseline before starting")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics on `ADDR` (like 127.0.0.1:9464) at /metrics")
	fs.StringVar(&f.failOn, "fail-on", "", "exit with code 3 when an alert of this `kind` (or \"any\") was raised")
	fs.BoolVar(&f.stats, "stats", false, "print packet, flow and alert counts and the rate to stderr at the end")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info (a start-up line says what is read and where alerts go), warn or error")
	if err := parseFlags(e, fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (flags go before it? the capture is --pcap FILE)", fs.Arg(0))
	}
	if f.policy == "" {
		return nil, usagef("--policy FILE is required (see docs/egress.md for an example)")
	}
	inputs := 0
	for _, s := range []string{f.pcap, f.nfcapd, f.iface, f.netflow} {
		if s != "" {
			inputs++
		}
	}
	if inputs != 1 {
		return nil, usagef("give exactly one input: --pcap FILE, --nfcapd FILE|DIR, --iface NAME or --netflow ADDR")
	}
	if f.filter != "" && f.iface == "" {
		return nil, usagef("--filter applies to --iface only")
	}
	if f.failOn != "" && f.failOn != "any" && !slices.Contains(egress.Kinds, f.failOn) {
		return nil, usagef("--fail-on %q: want any or one of %s", f.failOn, strings.Join(egress.Kinds, ", "))
	}
	return &f, nil
}

// runEgressInput opens the one input, the metrics server if asked, and runs
// the input through eng until it ends (a pcap) or ctx is done (live).
func runEgressInput(ctx context.Context, e *env, f *egressFlags, eng *egress.Engine, fan *sink.Fanout, alertsTo string, log *slog.Logger) error {
	var (
		run     func(context.Context) error
		metrics = append([]prometheus.Collector{eng.Collector(), collectors.NewGoCollector(), version.Collector()}, fan.Metrics()...)
	)
	switch {
	case f.pcap != "":
		src, err := egress.OpenFile(f.pcap, e.Stdin)
		if err != nil {
			return err
		}
		defer src.Close()
		log.Info("reading packets", "pcap", f.pcap, "alerts", alertsTo)
		run = func(ctx context.Context) error { return eng.Run(ctx, src) }
	case f.nfcapd != "":
		r := &nfcapd.Reader{Logger: log}
		log.Info("reading flow files", "nfcapd", f.nfcapd, "alerts", alertsTo)
		run = func(ctx context.Context) error {
			err := r.Read(ctx, f.nfcapd, eng.HandleFlow)
			st := r.Stats()
			if f.stats {
				fmt.Fprintln(e.Stderr, st)
			}
			if len(st.NotDecoded) > 0 {
				log.Warn("nfcapd records not decoded", "stats", st.String())
			}
			return err
		}
	case f.netflow != "":
		nfc := &netflow.Collector{Addr: f.netflow, Logger: log, Handle: eng.HandleFlow}
		if err := nfc.Listen(); err != nil {
			return err
		}
		metrics = append(metrics, nfc.Metrics())
		log.Info("collecting flows", "addr", nfc.LocalAddr().String(), "alerts", alertsTo)
		run = func(ctx context.Context) error { return eng.RunLive(ctx, nfc.Run) }
	default:
		src, err := capture.Open(f.iface, capture.Options{Filter: f.filter, Promiscuous: f.promisc})
		var fe *capture.FilterError
		if errors.As(err, &fe) || errors.Is(err, capture.ErrFilterTooComplex) {
			return usagef("--filter: %v", err)
		} else if err != nil {
			return err
		}
		defer src.Close()
		log.Info("capturing packets", "iface", f.iface, "filter", f.filter, "alerts", alertsTo)
		cs, _ := src.(*capture.Source) // nil where capture is not supported
		if cs != nil {
			metrics = append(metrics, cs.Metrics())
		}
		run = func(ctx context.Context) error {
			err := eng.RunCapture(ctx, src)
			if cs == nil {
				return err
			}
			if rx, drop, serr := cs.Stats(); serr == nil {
				log.Info("capture finished", "received", rx, "dropped_by_kernel", drop)
			}
			return err
		}
	}
	if f.metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics...)
		_, stop, err := metricsrv.Serve(f.metrics, reg, log)
		if err != nil {
			return fmt.Errorf("egress: %w", err)
		}
		defer stop()
	}
	return run(ctx)
}

// unprefixed prints an error without the package's "egress: " prefix, which
// would follow "cordon egress: " (its Unwrap keeps the exit code mapping).
type unprefixed struct{ err error }

func (u *unprefixed) Error() string { return strings.TrimPrefix(u.err.Error(), "egress: ") }
func (u *unprefixed) Unwrap() error { return u.err }

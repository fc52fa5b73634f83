package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cordon-vms/cordon/internal/logging"
	"github.com/cordon-vms/cordon/internal/procs"
	"github.com/cordon-vms/cordon/internal/sdnotify"
	"github.com/cordon-vms/cordon/proxy"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// proxyCameraFlags collects repeated --camera name=url flags.
type proxyCameraFlags []proxy.Camera

func (c *proxyCameraFlags) String() string { return "" }

func (c *proxyCameraFlags) Set(s string) error {
	name, raw, ok := strings.Cut(s, "=")
	if !ok || name == "" || raw == "" {
		return fmt.Errorf("want name=rtsp://user:password@camera/path")
	}
	u, err := proxy.ParseSecretURL(raw)
	if err != nil {
		return fmt.Errorf("camera %s: %v", name, err)
	}
	*c = append(*c, proxy.Camera{Name: name, URL: u})
	return nil
}

const proxyUsage = `usage: cordon proxy [-c cordon.yml] [--camera name=rtsp://...]... [flags]

Pulls each camera's RTSP stream once on the camera network and re-serves it to
any number of recorders at rtsp://PROXY:8554/<camera-name>. Cameras never see a
core address, recorders never see a camera address, and nothing a recorder
sends reaches a camera. See docs/proxy.md for the configuration file.

With no -c and no --camera, a demo starts: a simulated camera "demo" is served
through the proxy at rtsp://127.0.0.1:8554/demo.

Safe by default: with -c, the proxy listens only where listen.rtsp says (it is
required) and refuses to start without readers: unless the file says
allow_anonymous: true. Without -c (the demo, --camera) it listens on
127.0.0.1:8554, where anonymous reading is allowed; --listen elsewhere needs
--allow-anonymous.

--check validates everything at once (addresses, ports, this host's interfaces,
TLS files, log settings), each problem at its file and line, and warns when a
reader-side listener shares the camera network's interface. --check --probe
also asks every camera for OPTIONS and DESCRIBE with its credentials and prints
what answered; it changes nothing and exits 1 if a camera failed.

'cordon proxy hash --user NAME' prints a reader's password_hash lines (argon2id
for Basic; the Digest-ready MD5 HA1) from the password on standard input.

SIGHUP reloads the configuration file: added cameras start, removed ones stop,
changed ones restart; other cameras and their readers are not interrupted.

Examples:

	# the demo, then watch it
	cordon proxy
	ffplay rtsp://127.0.0.1:8554/demo

	# one camera without a file (readers on 127.0.0.1 only)
	cordon proxy --camera lobby=rtsp://admin:secret@192.168.50.11:554/Streaming/Channels/101

	# a configuration file; check it (and its cameras) first, reload it after edits
	cordon proxy -c cordon.yml --check
	cordon proxy -c cordon.yml --check --probe
	cordon proxy -c cordon.yml
	kill -HUP $(pidof cordon)

	# the console (a browser), state and metrics
	xdg-open http://127.0.0.1:9554/
	curl -s http://127.0.0.1:9554/v1/cameras
	curl -s http://127.0.0.1:9554/metrics | grep cordon_camera_up`

// demoListen is where the proxy listens without a configuration file (the
// demo and --camera): loopback only.
const demoListen = "127.0.0.1:8554"

// proxyFlags are cordon proxy's flags.
type proxyFlags struct {
	cfgPath, listen, admin, udp, logLevel, logFormat string
	cams                                             proxyCameraFlags
	anon, check, probe                               bool
	probeTimeout                                     time.Duration
}

func runProxy(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "hash" {
		return runProxyHash(ctx, e, args[1:])
	}
	f, err := parseProxyFlags(e, args)
	if err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	demo := f.cfgPath == "" && len(f.cams) == 0
	if f.check {
		if demo {
			return usagef("--check needs -c or --camera")
		}
		return runProxyCheck(ctx, e, f, cfg)
	}
	if !demo {
		// Everything at once, as --check does (New would stop at the first
		// kind of problem).
		if err := cfg.Validate(); err != nil {
			return f.problems(err)
		}
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: cfg.Log.Level, Format: cfg.Log.Format})
	if err != nil {
		return usagef("%v", err) // the demo's --log-level (a file's is validated above)
	}
	if demo {
		sim, err := startDemoCamera(&cfg, log)
		if err != nil {
			return err
		}
		defer sim.Close()
	}
	p, err := proxy.New(cfg, log)
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		var ve *proxy.ValidationError
		if errors.As(err, &ve) {
			return f.problems(ve)
		}
		return err
	}
	defer p.Close()
	if demo {
		printDemo(e, p)
	}
	return serveProxy(ctx, f, p, log)
}

func parseProxyFlags(e *env, args []string) (*proxyFlags, error) {
	var f proxyFlags
	fs := newFlagSet(e, "proxy", proxyUsage)
	fs.StringVar(&f.cfgPath, "c", "", "configuration `file` (YAML; see docs/proxy.md)")
	fs.Var(&f.cams, "camera", "a camera to proxy, as `name=rtsp://user:password@host/path` (repeatable; added to the file's cameras)")
	fs.StringVar(&f.listen, "listen", "", "core-side RTSP `address` (overrides listen.rtsp; without -c the default is "+demoListen+")")
	fs.StringVar(&f.admin, "admin", "", "admin HTTP `address` for the console, /v1/..., /metrics, /healthz, or off (default 127.0.0.1:9554; off loopback it needs admin_users in the file)")
	fs.StringVar(&f.udp, "udp", "", "reader UDP server `port` for RTP (RTCP uses the next one), or off (default 8000)")
	fs.BoolVar(&f.anon, "allow-anonymous", false, "let readers read without credentials (sets allow_anonymous; automatic without -c on 127.0.0.1)")
	fs.StringVar(&f.logLevel, "log-level", "", "log `level`: debug, info, warn or error (overrides log.level)")
	fs.StringVar(&f.logFormat, "log-format", "", "log `format`: text or json (overrides log.format)")
	fs.BoolVar(&f.check, "check", false, "check the configuration against this host, print every problem, and exit")
	fs.BoolVar(&f.probe, "probe", false, "with --check: also send OPTIONS and DESCRIBE to every camera and print what answered")
	fs.DurationVar(&f.probeTimeout, "probe-timeout", 5*time.Second, "with --probe: how long each camera may take")
	if err := parseFlags(e, fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("proxy takes no arguments (use -c or --camera)")
	}
	if f.probe && !f.check {
		return nil, usagef("--probe goes with --check (cordon proxy -c FILE --check --probe)")
	}
	if f.udp != "" && f.udp != "off" {
		if n, err := strconv.Atoi(f.udp); err != nil || n <= 0 || n >= 65535 || n%2 != 0 {
			return nil, usagef("--udp %q: want an even port number or off", f.udp)
		}
	}
	return &f, nil
}

// config builds the configuration from the file and the flags; SIGHUP
// calls it again.
func (f *proxyFlags) config() (proxy.Config, error) {
	var cfg proxy.Config
	if f.cfgPath != "" {
		c, err := proxy.DecodeConfigFile(f.cfgPath)
		if err != nil {
			return cfg, err
		}
		cfg = c
	}
	cfg.Cameras = append(cfg.Cameras, f.cams...)
	set := func(dst *string, v, key, flag string) {
		if v != "" {
			*dst = v
			cfg.SetByFlag(key, flag)
		}
	}
	set(&cfg.Listen.RTSP, f.listen, "listen.rtsp", "--listen")
	if f.listen == "" && f.cfgPath == "" {
		cfg.Listen.RTSP = demoListen
	}
	set(&cfg.Listen.Admin, f.admin, "listen.admin", "--admin")
	switch f.udp {
	case "":
	case "off":
		cfg.Listen.UDPRTP, cfg.Listen.UDPRTCP = "off", "off"
		cfg.SetByFlag("listen.udp_rtp", "--udp")
	default:
		n, _ := strconv.Atoi(f.udp)
		host := ""
		if h, _, err := net.SplitHostPort(cfg.Listen.RTSP); err == nil {
			host = h
		}
		cfg.Listen.UDPRTP, cfg.Listen.UDPRTCP = net.JoinHostPort(host, strconv.Itoa(n)), net.JoinHostPort(host, strconv.Itoa(n+1))
		cfg.SetByFlag("listen.udp_rtp", "--udp")
		cfg.SetByFlag("listen.udp_rtcp", "--udp")
	}
	switch {
	case f.anon:
		cfg.AllowAnonymous = true
		cfg.SetByFlag("allow_anonymous", "--allow-anonymous")
	case f.cfgPath == "" && isLoopback(cfg.Listen.RTSP):
		cfg.AllowAnonymous = true // the demo, and --camera, on loopback
	}
	set(&cfg.Log.Level, f.logLevel, "log.level", "--log-level")
	set(&cfg.Log.Format, f.logFormat, "log.format", "--log-format")
	return cfg, nil
}

// problems formats a configuration's problems for the administrator.
func (f *proxyFlags) problems(err error) error {
	msg := err.Error()
	var ve *proxy.ValidationError
	if errors.As(err, &ve) && f.cfgPath != "" && len(ve.Problems) > 1 {
		msg = f.cfgPath + ": " + msg
	}
	if f.cfgPath == "" && strings.Contains(msg, "allow_anonymous: true") {
		msg += "\n(without -c: pass --allow-anonymous, or write a file with readers)"
	}
	return &usageError{msg: msg}
}

// runProxyCheck is --check (and --probe): every problem, warnings, and a
// one-line summary.
func runProxyCheck(ctx context.Context, e *env, f *proxyFlags, cfg proxy.Config) error {
	warns, err := cfg.Check()
	for _, w := range warns {
		fmt.Fprintln(e.Stderr, "warning: "+w.String())
	}
	if err != nil {
		return f.problems(err)
	}
	extra := ""
	if cfg.AllowAnonymous {
		extra = " (anonymous reading allowed)"
	}
	if len(cfg.Trunks) > 0 {
		extra += fmt.Sprintf(", %d trunks to edges", len(cfg.Trunks))
	}
	if cfg.Trunk.Listen != "" {
		extra += fmt.Sprintf(", trunk.listen %s (UDP)", cfg.Trunk.Listen)
	}
	if len(cfg.Trunk.Dial) > 0 {
		extra += fmt.Sprintf(", dialing %d cores", len(cfg.Trunk.Dial))
	}
	fmt.Fprintf(e.Stdout, "configuration OK: %d cameras, %d readers%s; recorders connect to %s\n",
		len(cfg.Cameras), len(cfg.Readers), extra, cfg.Listen.RTSP)
	if f.probe {
		return runProbe(ctx, e, cfg, f.probeTimeout)
	}
	return nil
}

// startDemoCamera serves the demo's simulated camera on loopback and makes
// it cfg's one camera.
func startDemoCamera(cfg *proxy.Config, log *slog.Logger) (*camsim.Server, error) {
	sim := &camsim.Server{
		Addr:    "127.0.0.1:0",
		Cameras: []camsim.Camera{{Name: "demo", Codec: "h264", Width: 1280, Height: 720, FPS: 25, Bitrate: 2_000_000}},
		Logger:  log.With("component", "camsim"),
	}
	if err := sim.Start(); err != nil {
		return nil, fmt.Errorf("demo camera: %w", err)
	}
	cfg.Cameras = []proxy.Camera{{Name: "demo", URL: proxy.MustParseSecretURL(sim.URL("demo"))}}
	return sim, nil
}

func printDemo(e *env, p *proxy.Proxy) {
	port := "8554"
	if _, pt, err := net.SplitHostPort(p.RTSPAddr().String()); err == nil {
		port = pt
	}
	fmt.Fprintf(e.Stdout, "Demo: a simulated camera is proxied at rtsp://127.0.0.1:%s/demo\n", port)
	fmt.Fprintf(e.Stdout, "Watch it with:  ffplay rtsp://127.0.0.1:%s/demo\n", port)
	if a := p.AdminAddr(); a != nil {
		fmt.Fprintf(e.Stdout, "State:          curl -s http://%s/v1/cameras\n", a)
	}
	fmt.Fprintln(e.Stdout, "Stop with Ctrl-C. Run 'cordon proxy --help' to proxy real cameras.")
}

// serveProxy runs until ctx is done, reloading the file on SIGHUP.
func serveProxy(ctx context.Context, f *proxyFlags, p *proxy.Proxy, log *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Under systemd (Type=notify), READY=1 says the listeners are up and the
	// configuration loaded; a reload is bracketed by RELOADING=1 and READY=1.
	sd, err := sdnotify.FromEnv()
	if err != nil {
		log.Warn("not telling systemd the proxy's state", "error", err)
	}
	notify := func(state ...string) {
		if err := sd.Notify(append(state, "STATUS="+proxyStatus(p))...); err != nil {
			log.Warn("telling systemd the proxy's state", "state", state[0], "error", err)
		}
	}
	notify(sdnotify.Ready)
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go sd.RunWatchdog(wctx, nil)
	// One P while the proxy uses well under a core (internal/procs).
	go procs.New().Run(wctx, log.With("component", "procs"))
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping on signal")
			notify(sdnotify.Stopping)
			return nil
		case <-hup:
			if f.cfgPath == "" {
				log.Info("SIGHUP ignored: no configuration file to reload (-c)")
				continue
			}
			log.Info("SIGHUP: reloading", "file", f.cfgPath)
			if err := sd.Reloading(); err != nil {
				log.Warn("telling systemd the proxy's state", "state", sdnotify.Reloading, "error", err)
			}
			ncfg, err := f.config()
			if err == nil {
				err = p.Reload(ncfg)
			}
			if err != nil {
				log.Error("reload failed; the running configuration is unchanged", "error", err)
			}
			notify(sdnotify.Ready)
		}
	}
}

// proxyStatus is the one line systemctl status shows for the proxy.
func proxyStatus(p *proxy.Proxy) string {
	up, cams := 0, p.Status()
	for _, c := range cams {
		if c.State == "up" {
			up++
		}
	}
	s := fmt.Sprintf("%d of %d cameras up; RTSP on %s", up, len(cams), p.RTSPAddr())
	if a := p.AdminAddr(); a != nil {
		s += "; admin on " + a.String()
	}
	return s
}

// isLoopback reports whether a listen address is on a loopback address.
func isLoopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// runProbe asks every camera for OPTIONS and DESCRIBE and prints a table.
func runProbe(ctx context.Context, e *env, cfg proxy.Config, timeout time.Duration) error {
	res := proxy.Probe(ctx, cfg, proxy.ProbeOptions{Timeout: timeout})
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CAMERA\tREACHABLE\tAUTH OK\tCODECS\tRESOLUTION\tPROBLEM")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	failed := 0
	for _, r := range res {
		auth, codecs, size, problem := yes(r.AuthOK), strings.Join(r.Codecs, ","), "-", r.Err
		if !r.Reachable {
			auth = "-"
		}
		if codecs == "" {
			codecs = "-"
		}
		if r.Width > 0 {
			size = fmt.Sprintf("%dx%d", r.Width, r.Height)
		}
		if problem == "" {
			problem = "-"
		}
		if !r.OK() {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Camera, yes(r.Reachable), auth, codecs, size, problem)
	}
	tw.Flush()
	if failed > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("probe: %d of %d cameras failed", failed, len(res))}
	}
	fmt.Fprintf(e.Stdout, "probe OK: %d cameras answered\n", len(res))
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
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

	# state and metrics
	curl -s http://127.0.0.1:9090/v1/cameras
	curl -s http://127.0.0.1:9090/metrics | grep cordon_camera_up`

// demoListen is where the proxy listens without a configuration file (the
// demo and --camera): loopback only.
const demoListen = "127.0.0.1:8554"

func runProxy(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "proxy", proxyUsage)
	cfgPath := fs.String("c", "", "configuration `file` (YAML; see docs/proxy.md)")
	var cams proxyCameraFlags
	fs.Var(&cams, "camera", "a camera to proxy, as `name=rtsp://user:password@host/path` (repeatable; added to the file's cameras)")
	listen := fs.String("listen", "", "core-side RTSP `address` (overrides listen.rtsp; without -c the default is "+demoListen+")")
	admin := fs.String("admin", "", "admin HTTP `address` for /metrics, /v1/cameras, /healthz, or off (default 127.0.0.1:9090)")
	udp := fs.String("udp", "", "reader UDP server `port` for RTP (RTCP uses the next one), or off (default 8000)")
	anon := fs.Bool("allow-anonymous", false, "let readers read without credentials (sets allow_anonymous; automatic without -c on 127.0.0.1)")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error (overrides log.level)")
	logFormat := fs.String("log-format", "", "log `format`: text or json (overrides log.format)")
	check := fs.Bool("check", false, "check the configuration against this host, print every problem, and exit")
	probe := fs.Bool("probe", false, "with --check: also send OPTIONS and DESCRIBE to every camera and print what answered")
	probeTimeout := fs.Duration("probe-timeout", 5*time.Second, "with --probe: how long each camera may take")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("proxy takes no arguments (use -c or --camera)")
	}
	if *probe && !*check {
		return usagef("--probe goes with --check (cordon proxy -c FILE --check --probe)")
	}
	if *udp != "" && *udp != "off" {
		if n, err := strconv.Atoi(*udp); err != nil || n <= 0 || n >= 65535 || n%2 != 0 {
			return usagef("--udp %q: want an even port number or off", *udp)
		}
	}

	// load builds the configuration from the file and the flags; SIGHUP calls it again.
	load := func() (proxy.Config, error) {
		var cfg proxy.Config
		if *cfgPath != "" {
			c, err := proxy.DecodeConfigFile(*cfgPath)
			if err != nil {
				return cfg, err
			}
			cfg = c
		}
		cfg.Cameras = append(cfg.Cameras, cams...)
		switch {
		case *listen != "":
			cfg.Listen.RTSP = *listen
			cfg.SetByFlag("listen.rtsp", "--listen")
		case *cfgPath == "":
			cfg.Listen.RTSP = demoListen
		}
		if *admin != "" {
			cfg.Listen.Admin = *admin
			cfg.SetByFlag("listen.admin", "--admin")
		}
		switch *udp {
		case "":
		case "off":
			cfg.Listen.UDPRTP, cfg.Listen.UDPRTCP = "off", "off"
			cfg.SetByFlag("listen.udp_rtp", "--udp")
		default:
			n, _ := strconv.Atoi(*udp)
			host := ""
			if h, _, err := net.SplitHostPort(cfg.Listen.RTSP); err == nil {
				host = h
			}
			cfg.Listen.UDPRTP, cfg.Listen.UDPRTCP = net.JoinHostPort(host, strconv.Itoa(n)), net.JoinHostPort(host, strconv.Itoa(n+1))
			cfg.SetByFlag("listen.udp_rtp", "--udp")
			cfg.SetByFlag("listen.udp_rtcp", "--udp")
		}
		switch {
		case *anon:
			cfg.AllowAnonymous = true
			cfg.SetByFlag("allow_anonymous", "--allow-anonymous")
		case *cfgPath == "" && isLoopback(cfg.Listen.RTSP):
			cfg.AllowAnonymous = true // the demo, and --camera, on loopback
		}
		if *logLevel != "" {
			cfg.Log.Level = *logLevel
			cfg.SetByFlag("log.level", "--log-level")
		}
		if *logFormat != "" {
			cfg.Log.Format = *logFormat
			cfg.SetByFlag("log.format", "--log-format")
		}
		return cfg, nil
	}
	// problems formats a configuration's problems for the administrator.
	problems := func(err error) error {
		msg := err.Error()
		var ve *proxy.ValidationError
		if errors.As(err, &ve) && *cfgPath != "" && len(ve.Problems) > 1 {
			msg = *cfgPath + ": " + msg
		}
		if *cfgPath == "" && strings.Contains(msg, "allow_anonymous: true") {
			msg += "\n(without -c: pass --allow-anonymous, or write a file with readers)"
		}
		return &usageError{msg: msg}
	}

	cfg, err := load()
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	demo := *cfgPath == "" && len(cams) == 0
	if *check {
		if demo {
			return usagef("--check needs -c or --camera")
		}
		warns, err := cfg.Check()
		for _, w := range warns {
			fmt.Fprintln(e.Stderr, "warning: "+w.String())
		}
		if err != nil {
			return problems(err)
		}
		anonymous := ""
		if cfg.AllowAnonymous {
			anonymous = " (anonymous reading allowed)"
		}
		fmt.Fprintf(e.Stdout, "configuration OK: %d cameras, %d readers%s; recorders connect to %s\n",
			len(cfg.Cameras), len(cfg.Readers), anonymous, cfg.Listen.RTSP)
		if *probe {
			return runProbe(ctx, e, cfg, *probeTimeout)
		}
		return nil
	}
	if !demo {
		// Everything at once, as --check does (New would stop at the first
		// kind of problem).
		if err := cfg.Validate(); err != nil {
			return problems(err)
		}
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: cfg.Log.Level, Format: cfg.Log.Format})
	if err != nil {
		return usagef("%v", err) // the demo's --log-level (a file's is validated above)
	}

	if demo {
		sim := &camsim.Server{
			Addr:    "127.0.0.1:0",
			Cameras: []camsim.Camera{{Name: "demo", Codec: "h264", Width: 1280, Height: 720, FPS: 25, Bitrate: 2_000_000}},
			Logger:  log.With("component", "camsim"),
		}
		if err := sim.Start(); err != nil {
			return fmt.Errorf("demo camera: %w", err)
		}
		defer sim.Close()
		cfg.Cameras = []proxy.Camera{{Name: "demo", URL: proxy.MustParseSecretURL(sim.URL("demo"))}}
	}

	p, err := proxy.New(cfg, log)
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		var ve *proxy.ValidationError
		if errors.As(err, &ve) {
			return problems(ve)
		}
		return err
	}
	defer p.Close()

	if demo {
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

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping on signal")
			return nil
		case <-hup:
			if *cfgPath == "" {
				log.Info("SIGHUP ignored: no configuration file to reload (-c)")
				continue
			}
			log.Info("SIGHUP: reloading", "file", *cfgPath)
			ncfg, err := load()
			if err == nil {
				err = p.Reload(ncfg)
			}
			if err != nil {
				log.Error("reload failed; the running configuration is unchanged", "error", err)
			}
		}
	}
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

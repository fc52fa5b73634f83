package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

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

SIGHUP reloads the configuration file: added cameras start, removed ones stop,
changed ones restart; other cameras and their readers are not interrupted.

Examples:

	# the demo, then watch it
	cordon proxy
	ffplay rtsp://127.0.0.1:8554/demo

	# one camera without a file
	cordon proxy --camera lobby=rtsp://admin:secret@192.168.50.11:554/Streaming/Channels/101

	# a configuration file; check it first, reload it after edits
	cordon proxy -c cordon.yml --check
	cordon proxy -c cordon.yml
	kill -HUP $(pidof cordon)

	# state and metrics
	curl -s http://127.0.0.1:9090/v1/cameras
	curl -s http://127.0.0.1:9090/metrics | grep cordon_camera_up`

func runProxy(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "proxy", proxyUsage)
	cfgPath := fs.String("c", "", "configuration `file` (YAML; see docs/proxy.md)")
	var cams proxyCameraFlags
	fs.Var(&cams, "camera", "a camera to proxy, as `name=rtsp://user:password@host/path` (repeatable; added to the file's cameras)")
	listen := fs.String("listen", "", "core-side RTSP `address` (overrides listen.rtsp; default :8554)")
	admin := fs.String("admin", "", "admin HTTP `address` for /metrics, /v1/cameras, /healthz, or off (default 127.0.0.1:9090)")
	udp := fs.String("udp", "", "reader UDP server `port` for RTP (RTCP uses the next one), or off (default 8000)")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error (overrides log.level)")
	logFormat := fs.String("log-format", "", "log `format`: text or json (overrides log.format)")
	check := fs.Bool("check", false, "check the configuration and exit")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("proxy takes no arguments (use -c or --camera)")
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
		if *listen != "" {
			cfg.Listen.RTSP = *listen
		}
		if *admin != "" {
			cfg.Listen.Admin = *admin
		}
		switch *udp {
		case "":
		case "off":
			cfg.Listen.UDPRTP, cfg.Listen.UDPRTCP = "off", "off"
		default:
			n, _ := strconv.Atoi(*udp)
			host := ""
			if h, _, err := net.SplitHostPort(cfg.Listen.RTSP); err == nil {
				host = h
			}
			cfg.Listen.UDPRTP, cfg.Listen.UDPRTCP = net.JoinHostPort(host, strconv.Itoa(n)), net.JoinHostPort(host, strconv.Itoa(n+1))
		}
		if *logLevel != "" {
			cfg.Log.Level = *logLevel
		}
		if *logFormat != "" {
			cfg.Log.Format = *logFormat
		}
		if *cfgPath != "" || len(cfg.Cameras) > 0 {
			if err := cfg.Validate(); err != nil {
				if *cfgPath != "" {
					return cfg, fmt.Errorf("%s: %w", *cfgPath, err)
				}
				return cfg, err
			}
		}
		return cfg, nil
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
		fmt.Fprintf(e.Stdout, "configuration OK: %d cameras, %d readers\n", len(cfg.Cameras), len(cfg.Readers))
		return nil
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: cfg.Log.Level, Format: cfg.Log.Format})
	if err != nil {
		return usagef("%v", err)
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

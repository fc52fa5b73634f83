// Package proxy pulls each camera's RTSP stream once on the camera network and
// re-serves it to any number of recorders on the core network. Cameras never
// see a core address and readers never see a camera address: every packet is
// cleaned by package rebuild, the SDP readers get is generated here, and
// nothing a reader sends is relayed to a camera.
//
// A Proxy is built from a Config (the YAML file's structure):
//
//	p, err := proxy.New(cfg, logger)
//	err = p.Start()          // listeners bound, cameras pulling
//	defer p.Close()
//	err = p.Reload(newCfg)   // cameras added, removed, changed; others untouched
//
// or Run(ctx), which blocks until ctx is done.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/cordon-vms/cordon/internal/version"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
)

// Proxy is a running RTSP proxy.
type Proxy struct {
	log *slog.Logger

	mu      sync.Mutex
	cfg     Config
	cams    map[string]*camera
	started bool
	closed  bool

	accts atomic.Pointer[accounts]

	adminAccts        atomic.Pointer[adminAccounts] // nil: no admin_users
	adminAuthFailures atomic.Uint64
	adminThrottled    atomic.Uint64 // admin logins answered 401 without a check
	adminLogins       *loginLimiter // failed admin logins, per source and account
	csrf              *csrfKey      // signs the console's CSRF tokens
	preview           *previewServer

	servers   []*gortsplib.Server                                 // plain RTSP first, then RTSPS if configured
	listeners []namedStats                                        // the servers' listeners, same order
	listen    func(network, address string) (net.Listener, error) // net.Listen; a test hook
	admin     *http.Server
	adminLn   net.Listener
	registry  *prometheus.Registry

	// frameDelay is the time from a frame's last camera packet reaching the
	// proxy to the frame's write to a (frame-batched TCP) reader returning.
	frameDelay prometheus.Histogram

	// outBudget bounds the bytes queued for all batched readers together.
	outBudget *outputBudget
	// gopBytes is what the cameras' GOP caches hold (cordon_gop_cache_bytes).
	gopBytes atomic.Int64

	authFailures   atomic.Uint64
	logins         *loginLimiter
	throttled      [3]atomic.Uint64 // logins refused without a check: source, account, busy
	refusedNetwork atomic.Uint64
	refusedCamera  atomic.Uint64
	refusedFull    atomic.Uint64
	refusedPublish atomic.Uint64
	refusedSession atomic.Uint64 // requests naming another connection's session

	trunkEdge   *trunkEdge   // nil unless trunk.listen is set
	trunks      []*trunkCore // trunks[] (this proxy as a core)
	trunkPanics atomic.Uint64
	trunkNet    trunkNet // key pair, trunk.ca, sockets (trunk_dial.go)

	stop chan struct{}
	wg   sync.WaitGroup

	// testPacketHook, when set by a test, sees every camera packet before
	// the cleaner does (from the camera's packet callback).
	testPacketHook func(camera string, pkt *rtp.Packet)
	// testNoCameraTap, set by a benchmark, leaves every camera packet to
	// gortsplib's client (camera_tap.go), for same-run comparisons.
	testNoCameraTap bool
	authDelay       time.Duration
	batching        bool  // frame-batched output for TCP readers
	readerQueue     int64 // per-reader queue of batched readers, bytes
	udpQueue        int   // per-reader pacing queue of UDP readers, packets (reader_udp.go)
	writeTmo        time.Duration
	sleep           func(time.Duration) // failed-login delay; a test hook
	randFn          func() float64

	// testDatagramLoss, when set by a test, drops the trunk datagrams
	// (as sent by this edge) for which it returns true.
	testDatagramLoss func(datagram []byte) bool
}

// New checks cfg and returns a proxy that is not started yet.
func New(cfg Config, logger *slog.Logger) (*Proxy, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	cfg = cfg.withDefaults()
	acc, err := newAccounts(cfg.Readers)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{
		log:         logger.With("component", "proxy"),
		cfg:         cfg,
		cams:        map[string]*camera{},
		stop:        make(chan struct{}),
		sleep:       time.Sleep,
		authDelay:   cfg.Timeouts.AuthFailureDelay,
		batching:    !cfg.PerPacketWrites,
		readerQueue: cfg.Limits.ReaderQueueBytes,
		udpQueue:    max(cfg.GOPCacheMaxPackets, 0) + cfg.WriteQueueSize,
		writeTmo:    cfg.Timeouts.Reader,
		randFn:      rand.Float64,
		listen:      net.Listen,
	}
	p.accts.Store(&acc)
	p.logins = newLoginLimiter()
	p.adminLogins = newLoginLimiter()
	p.csrf = newCSRFKey()
	p.outBudget = newOutputBudget(cfg.Limits.OutputBufferBytes, p.log)
	p.registry = prometheus.NewRegistry()
	p.frameDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "cordon_reader_frame_delay_seconds",
		Help:    "Time from the last packet of a frame arriving from the camera to the frame's write to a TCP reader's socket returning (readers with frame-batched output).",
		Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 3e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
	})
	p.registry.MustRegister(&collector{p: p}, p.frameDelay, version.Collector())
	return p, nil
}

// Start binds the listeners and starts pulling the cameras that are not on demand.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("proxy: already started")
	}
	cfg := p.cfg
	// What depends on this host (addresses, TLS files) is checked now, when
	// the proxy is about to use it.
	warns, err := cfg.Check()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	for _, w := range warns {
		p.log.Warn("configuration: " + w.String())
	}
	servers, err := p.startServers(cfg)
	if err != nil {
		return err
	}
	p.servers = servers
	if err := p.startTrunks(cfg); err != nil {
		for _, s := range servers {
			s.Close()
		}
		return err
	}
	if err := p.startAdmin(cfg); err != nil {
		for _, s := range servers {
			s.Close()
		}
		if p.trunkEdge != nil {
			p.trunkEdge.close()
		}
		return err
	}
	p.watchServers()
	for _, cc := range cfg.Cameras {
		p.startCameraLocked(cc)
	}
	p.startTrunkCamerasLocked()
	p.wg.Go(p.tick)
	p.started = true
	p.log.Info("proxy started", "rtsp", servers[0].NetListener().Addr().String(), "cameras", len(cfg.Cameras),
		"readers_auth", len(cfg.Readers) > 0)
	if p.anyHashWithDigest() {
		p.log.Warn("some readers have only a password_hash: they must use Basic authentication (Digest needs the clear-text password)")
	}
	return nil
}

// startServers starts the core-side RTSP server, and the RTSPS one if
// configured.
func (p *Proxy) startServers(cfg Config) ([]*gortsplib.Server, error) {
	servers := []*gortsplib.Server{p.newServer(cfg, "listen.rtsp", cfg.Listen.RTSP, nil, true)}
	if cfg.Listen.RTSPS != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls.cert/tls.key: %w", err)
		}
		servers = append(servers, p.newServer(cfg, "listen.rtsps", cfg.Listen.RTSPS, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, false))
	}
	for i, s := range servers {
		if err := s.Start(); err != nil {
			for _, o := range servers[:i] {
				o.Close()
			}
			var le *ListenError
			if errors.As(err, &le) {
				return nil, fmt.Errorf("proxy: %w", err)
			}
			return nil, fmt.Errorf("proxy: listen %s: %w", s.RTSPAddress, err)
		}
	}
	return servers, nil
}

// newServer builds one core-side server (RTSPS when tlsConf is set), its
// listener guarded and tracked for frame-batched output.
func (p *Proxy) newServer(cfg Config, key, addr string, tlsConf *tls.Config, udp bool) *gortsplib.Server {
	h := &handler{p: p, secure: tlsConf != nil}
	s := &gortsplib.Server{
		Handler:        h,
		RTSPAddress:    addr,
		TLSConfig:      tlsConf,
		ReadTimeout:    cfg.Timeouts.Reader,
		WriteTimeout:   cfg.Timeouts.Reader,
		WriteQueueSize: cfg.WriteQueueSize,
	}
	st := &listenerStats{}
	name := "rtsp"
	if tlsConf != nil {
		name = "rtsps"
	}
	p.listeners = append(p.listeners, namedStats{name, st})
	s.Listen = func(network, address string) (net.Listener, error) {
		ln, err := p.listen(network, address)
		if err != nil {
			return nil, &ListenError{Key: key, Addr: addr, Err: err}
		}
		// With TLS, gortsplib wraps this listener in tls.NewListener:
		// the handshake runs under the first-read deadline, and an RTSPS
		// reader's batched frames go through the TLS connection over the
		// trackedConn (tlsBatchConn).
		return trackedListener{newGuardedListener(ln, name, p.log, cfg.Timeouts.Reader, cfg.Limits, st)}, nil
	}
	if udp && cfg.Listen.UDPRTP != "off" {
		s.UDPRTPAddress, s.UDPRTCPAddress = cfg.Listen.UDPRTP, cfg.Listen.UDPRTCP
		s.ListenPacket = func(network, address string) (net.PacketConn, error) {
			pc, err := net.ListenPacket(network, address)
			if err != nil {
				key, a := "listen.udp_rtp", cfg.Listen.UDPRTP
				if address == cfg.Listen.UDPRTCP {
					key, a = "listen.udp_rtcp", cfg.Listen.UDPRTCP
				}
				return nil, &ListenError{Key: key, Addr: a, Err: err}
			}
			// The proxy keeps the sockets it opens for gortsplib: batched
			// UDP output writes on them (reader_udp_batch.go).
			if uc, ok := pc.(*net.UDPConn); ok {
				if address == cfg.Listen.UDPRTCP {
					h.udp.rtcp = uc
				} else {
					h.udp.rtp, h.udp.rtpB = uc, ipv4.NewPacketConn(uc)
				}
			}
			return pc, nil
		}
	}
	h.srv = s
	return s
}

// startAdmin serves /metrics, /v1/cameras and /healthz unless listen.admin is off.
func (p *Proxy) startAdmin(cfg Config) error {
	if cfg.Listen.Admin == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Listen.Admin)
	if err != nil {
		return fmt.Errorf("proxy: %w", &ListenError{Key: "listen.admin", Addr: cfg.Listen.Admin, Err: err})
	}
	p.adminLn = ln
	if err := p.setAdminUsers(cfg.AdminUsers); err != nil {
		ln.Close()
		return fmt.Errorf("proxy: %w", err)
	}
	if !cfg.Preview.Off {
		pv, err := newPreviewServer(p, cfg.Preview, ln.Addr(), p.log.With("component", "preview"))
		if err != nil {
			ln.Close()
			return fmt.Errorf("proxy: %w", err)
		}
		p.preview = pv
	}
	p.admin = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(p.log.With("component", "admin").Handler(), slog.LevelDebug)}
	if cfg.AdminTLS.Cert != "" {
		cert, err := loadAdminCert(cfg.AdminTLS)
		if err != nil {
			ln.Close()
			if p.preview != nil {
				p.preview.close()
			}
			return fmt.Errorf("proxy: %w", err)
		}
		p.admin.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, p.admin.TLSConfig)
	}
	p.wg.Go(func() { p.admin.Serve(ln) })
	return nil
}

// watchServers logs (and records for /healthz) a reader listener that
// stops while the proxy runs.
func (p *Proxy) watchServers() {
	for i, s := range p.servers {
		st := p.listeners[i].stats
		p.wg.Go(func() {
			err := s.Wait()
			select {
			case <-p.stop:
				return // closing
			default:
			}
			msg := "stopped"
			if err != nil {
				msg = "stopped: " + err.Error()
			}
			st.stopped.Store(&msg)
			p.log.Error("reader listener stopped; readers cannot connect until the proxy restarts", "listener", p.listeners[i].name, "error", err)
		})
	}
}

func (p *Proxy) anyHashWithDigest() bool {
	for _, r := range p.cfg.Readers {
		if r.PasswordHash != "" {
			return true
		}
	}
	return false
}

func (p *Proxy) startCameraLocked(cc Camera) {
	c := newCamera(p, cc)
	p.cams[cc.Name] = c
	c.start()
}

// tick updates per-camera bitrates once a second.
func (p *Proxy) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			for _, c := range p.cams {
				c.sampleBitrate(now)
			}
			p.mu.Unlock()
		}
	}
}

// RTSPAddr is the bound core-side RTSP address (useful with port 0).
func (p *Proxy) RTSPAddr() net.Addr {
	if len(p.servers) == 0 {
		return nil
	}
	return p.servers[0].NetListener().Addr()
}

// RTSPSAddr is the bound RTSPS address, or nil when RTSPS is off.
func (p *Proxy) RTSPSAddr() net.Addr {
	if len(p.servers) < 2 {
		return nil
	}
	return p.servers[1].NetListener().Addr()
}

// AdminAddr is the bound admin HTTP address, or nil when it is off.
func (p *Proxy) AdminAddr() net.Addr {
	if p.adminLn == nil {
		return nil
	}
	return p.adminLn.Addr()
}

// Reload applies a new configuration: added cameras start, removed cameras
// stop (their readers are closed), changed cameras restart, and untouched
// cameras keep their session and readers. Reader accounts are replaced (new
// logins use them; attached readers stay). Listener and timeout changes need
// a restart and are reported in the log.
func (p *Proxy) Reload(cfg Config) error {
	warns, err := cfg.Check()
	if err != nil {
		return fmt.Errorf("proxy: reload: %w", err)
	}
	for _, w := range warns {
		p.log.Warn("configuration: " + w.String())
	}
	cfg = cfg.withDefaults()
	acc, err := newAccounts(cfg.Readers)
	if err != nil {
		return fmt.Errorf("proxy: reload: %w", err)
	}
	var waitTrunks func() // stopped trunks end after p.mu is released
	defer func() {
		if waitTrunks != nil {
			waitTrunks()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: reload: closed")
	}
	old := p.cfg
	p.keepRestartOnly(old, &cfg)
	if old.CameraSide != cfg.CameraSide {
		// Every camera's connection changes: restart them all.
		p.log.Info("reload: camera_side changed; reconnecting every camera")
	}
	p.cfg = cfg
	p.accts.Store(&acc)
	if err := p.setAdminUsers(cfg.AdminUsers); err != nil {
		p.log.Warn("reload: admin_users not applied", "error", err)
	}
	added, removed, changed := p.reloadCamerasLocked(old, cfg)
	waitTrunks = p.reloadTrunksLocked(old, cfg)
	p.log.Info("configuration reloaded", "added", added, "removed", removed, "changed", changed, "cameras", len(p.cams))
	return nil
}

// keepRestartOnly puts old's values back into cfg for the settings that
// only apply after a restart (listeners, TLS, timeouts, limits, queues,
// the trunks' keys and listener), and says so in the log when they changed.
func (p *Proxy) keepRestartOnly(old Config, cfg *Config) {
	if old.Listen != cfg.Listen || old.TLS != cfg.TLS || old.Timeouts != cfg.Timeouts ||
		old.WriteQueueSize != cfg.WriteQueueSize || old.GOPCacheMaxPackets != cfg.GOPCacheMaxPackets ||
		old.PerPacketWrites != cfg.PerPacketWrites || old.Limits != cfg.Limits {
		p.log.Warn("reload: listen, tls, timeouts, limits and queue settings changed but only apply after a restart")
		cfg.Limits = old.Limits
		cfg.Listen, cfg.TLS, cfg.Timeouts = old.Listen, old.TLS, old.Timeouts
		cfg.WriteQueueSize, cfg.GOPCacheMaxPackets, cfg.PerPacketWrites = old.WriteQueueSize, old.GOPCacheMaxPackets, old.PerPacketWrites
	}
	p.keepTrunkRestartOnly(old, cfg)
	if old.AdminTLS != cfg.AdminTLS || old.Preview != cfg.Preview {
		p.log.Warn("reload: admin_tls and preview changed but only apply after a restart")
		cfg.AdminTLS, cfg.Preview = old.AdminTLS, old.Preview
	}
}

// reloadCamerasLocked stops the configuration's cameras that were removed
// or changed (all of them when camera_side changed) and, once the proxy has
// started, starts the new and changed ones. Trunk cameras are left alone.
// p.mu must be held.
func (p *Proxy) reloadCamerasLocked(old, cfg Config) (added, removed, changed int) {
	want := map[string]Camera{}
	for _, cc := range cfg.Cameras {
		want[cc.Name] = cc
	}
	for name, c := range p.cams {
		if c.trunk != nil {
			continue // the trunk's, not the file's
		}
		nc, ok := want[name]
		switch {
		case !ok:
			c.stop("camera removed from the configuration")
			delete(p.cams, name)
			removed++
		case !sameCamera(c.cfg, nc) || old.CameraSide != cfg.CameraSide:
			c.stop("camera configuration changed")
			delete(p.cams, name)
			changed++
		}
	}
	if !p.started {
		return added, removed, changed
	}
	for _, cc := range cfg.Cameras {
		if _, ok := p.cams[cc.Name]; !ok {
			p.startCameraLocked(cc)
			if !isChanged(old, cc.Name) {
				added++
			}
		}
	}
	return added, removed, changed
}

func isChanged(old Config, name string) bool {
	for _, c := range old.Cameras {
		if c.Name == name {
			return true
		}
	}
	return false
}

func sameCamera(a, b Camera) bool {
	return a.URL.Equal(b.URL) && a.Transport == b.Transport && a.OnDemand == b.OnDemand &&
		a.MaxReaders == b.MaxReaders && a.Mode == b.Mode && a.Audio == b.Audio && a.AUD == b.AUD &&
		a.TLSFingerprint == b.TLSFingerprint && reflect.DeepEqual(a.KeepSEI, b.KeepSEI)
}

// Close stops every camera, closes every reader and the listeners.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	cams := p.cams
	p.cams = map[string]*camera{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cams {
		wg.Go(func() { c.stopWait("proxy shutting down") })
	}
	wg.Wait()
	p.closeTrunks()
	close(p.stop)
	for _, s := range p.servers {
		s.Close()
	}
	if p.admin != nil {
		p.admin.Close()
	}
	if p.preview != nil {
		p.preview.close()
	}
	p.wg.Wait()
	p.log.Info("proxy stopped")
}

// Run starts the proxy and blocks until ctx is done, then closes it.
func (p *Proxy) Run(ctx context.Context) error {
	if err := p.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	p.Close()
	return nil
}

// namedStats is one reader listener's counters.
type namedStats struct {
	name  string
	stats *listenerStats
}

// listenerProblems says why reader listeners cannot accept connections (a
// stopped server, or Accept failing since some time); empty when all accept.
func (p *Proxy) listenerProblems() []string {
	var out []string
	for _, l := range p.listeners {
		if m := l.stats.stopped.Load(); m != nil {
			out = append(out, fmt.Sprintf("%s listener %s", l.name, *m))
		} else if m, since, ok := l.stats.failingNow(time.Now()); ok {
			out = append(out, fmt.Sprintf("%s listener: accept failing for %s: %s", l.name, since.Round(time.Millisecond), m))
		}
	}
	return out
}

// camera returns the camera called name, or nil.
func (p *Proxy) camera(name string) *camera {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cams[name]
}

// cameras returns the cameras sorted by name.
func (p *Proxy) cameras() []*camera {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*camera, 0, len(p.cams))
	for _, c := range p.cams {
		out = append(out, c)
	}
	sortCameras(out)
	return out
}

var throttleScopes = [...]string{throttleSource, throttleAccount, throttleBusy}

func (p *Proxy) countThrottled(scope string) {
	for i, s := range throttleScopes {
		if s == scope {
			p.throttled[i].Add(1)
		}
	}
}

// failedLoginDelay sleeps a random time in [d/2, d].
func (p *Proxy) failedLoginDelay() {
	d := p.authDelay
	p.sleep(d/2 + time.Duration(p.randFn()*float64(d/2)))
}

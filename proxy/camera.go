package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// Camera states, as shown by /v1/cameras and the cordon_camera_up metric.
const (
	stateIdle       = "idle"       // on-demand camera without readers
	stateConnecting = "connecting" // dialing, DESCRIBE, SETUP, PLAY
	stateUp         = "up"         // packets flowing
	stateDown       = "down"       // waiting to reconnect
)

// stateAuthFailed: the camera refused the credentials; the proxy waits
// Timeouts.AuthFailureBackoff before trying again (see camera_auth.go).
const stateAuthFailed = "auth_failed"

// healthySession is how long a session must deliver media before its end
// resets the reconnect backoff: packets must arrive both within it after
// PLAY and after it. A camera that accepts PLAY and then closes, or sends a
// few packets and stalls, is retried with a growing delay, not at 1 Hz.
const healthySession = 10 * time.Second

// camera pulls one camera and fans its cleaned packets out to readers.
type camera struct {
	p        *Proxy
	cfg      Camera
	tmo      Timeouts
	bind     string
	gopMax   int
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	demand   chan struct{} // on-demand wake-up, buffered 1
	counters rebuild.Counters

	bytesIn, packetsIn, lost, reconnects, decodeErrors, processErrors, panics atomic.Uint64
	jitterBits                                                                atomic.Uint64 // float64 bits
	sdpWarned                                                                 atomic.Bool
	poisoned                                                                  atomic.Bool   // a panic was contained: build the next plan afresh
	tlsWarned                                                                 atomic.Bool   // the unpinned certificate was logged
	bitrate                                                                   atomic.Uint64 // bit/s, from tick
	lastBytes                                                                 uint64        // tick only
	lastSample                                                                time.Time     // tick only

	dial func(ctx context.Context, network, address string) (net.Conn, error) // test hook; nil: a net.Dialer

	mu       sync.Mutex
	abort    func(error) // ends the current camera session; nil between sessions
	state    string
	lastErr  string
	since    time.Time
	plan     *rebuild.Plan
	jitter   map[*rebuild.Track]*jitterState
	hasVideo bool
	streams  []*gortsplib.ServerStream // one per server, same order as Proxy.servers
	ready    chan struct{}             // closed once streams exist
	readers  map[*reader]struct{}
	waiters  int
	lastUse  time.Time // last DESCRIBE/SETUP/PLAY, for on-demand idling
	gop      []gopEntry
	gopValid bool
}

type gopEntry struct {
	t   *rebuild.Track
	pkt *rtp.Packet
}

// reader is one reader session of a camera.
type reader struct {
	ss     *gortsplib.ServerSession
	cam    *camera
	stream *gortsplib.ServerStream
	user   string
	remote string
	since  time.Time

	// guarded by cam.mu
	active  bool
	waitKey bool // skip packets up to the next keyframe
	slow    bool // waitKey because the reader's queue overflowed (count the skipped packets)

	bytes, packets, dropped atomic.Uint64

	// Frame-batched output (plain TCP readers). chans and ssrcs are filled
	// from the SETUP responses (conn goroutine, before PLAY); bw is set in
	// OnPlay before the reader is added to the camera.
	bw           *batchWriter
	chans        map[*description.Media]uint8
	ssrcs        map[*description.Media]uint32
	pendingMedia *description.Media
}

func newCamera(p *Proxy, cc Camera) *camera {
	ctx, cancel := context.WithCancel(context.Background())
	c := &camera{
		p:       p,
		cfg:     cc,
		tmo:     p.cfg.Timeouts,
		bind:    p.cfg.CameraSide.Bind,
		gopMax:  p.cfg.GOPCacheMaxPackets,
		log:     p.log.With("camera", cc.Name),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		demand:  make(chan struct{}, 1),
		state:   stateConnecting,
		since:   time.Now(),
		ready:   make(chan struct{}),
		readers: map[*reader]struct{}{},
	}
	if cc.OnDemand {
		c.state = stateIdle
	}
	return c
}

func (c *camera) start() {
	c.log.Info("camera added", "url", c.cfg.URL, "transport", c.cfg.Transport, "on_demand", c.cfg.OnDemand)
	go c.run()
}

// stop ends the camera's session and closes its readers. It does not wait.
func (c *camera) stop(reason string) {
	c.log.Info("camera stopping", "reason", reason)
	c.cancel()
	go func() {
		defer c.recoverGo("teardown")
		<-c.done
		c.teardown(reason)
	}()
}

// stopWait is stop that returns once the camera is stopped.
func (c *camera) stopWait(reason string) {
	c.cancel()
	<-c.done
	c.teardown(reason)
}

func (c *camera) run() {
	defer close(c.done)
	defer c.recoverGo("camera loop")
	b := newBackoff(c.tmo.BackoffMin, c.tmo.BackoffMax, c.tmo.AuthFailureBackoff)
	if !c.cfg.OnDemand {
		retryLoop(c.ctx, b, c.safeSession, c.onRetry)
		return
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.demand:
		}
		c.log.Info("on-demand camera starting: a reader asked for it")
		ctx, cancel := context.WithCancel(c.ctx)
		go c.idleWatch(ctx, cancel)
		retryLoop(ctx, b, c.safeSession, c.onRetry)
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		c.teardown("on-demand camera has no readers left")
		if b.holding() {
			c.setState(stateAuthFailed, "") // the next demand waits for the rest
		} else {
			c.setState(stateIdle, "")
		}
		b.reset()
	}
}

// idleWatch cancels an on-demand pull once nobody has read, asked for or
// waited for the camera for Timeouts.OnDemandClose.
func (c *camera) idleWatch(ctx context.Context, cancel context.CancelFunc) {
	defer c.recoverGo("on-demand idle watch")
	t := time.NewTicker(min(time.Second, c.tmo.OnDemandClose/4+time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.mu.Lock()
			idle := len(c.readers) == 0 && c.waiters == 0 && now.Sub(c.lastUse) >= c.tmo.OnDemandClose
			c.mu.Unlock()
			if idle {
				cancel()
				return
			}
		}
	}
}

func (c *camera) onRetry(err error, wait time.Duration) {
	msg := redactError(err, c.cfg.URL)
	c.reconnects.Add(1)
	var ae *authError
	if errors.As(err, &ae) {
		c.setState(stateAuthFailed, msg)
		c.log.Error("camera refused the proxy's credentials; check the user and password in its url "+
			"(cameras lock the account after repeated failures, so the proxy waits before trying again; "+
			"a reload that changes the camera retries at once)",
			"error", msg, "retry_in", wait.Round(time.Second))
		return
	}
	c.setState(stateDown, msg)
	c.log.Warn("camera session ended; reconnecting", "error", msg, "retry_in", wait.Round(time.Millisecond))
}

func (c *camera) setState(s, errMsg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != s {
		c.since = time.Now()
	}
	c.state = s
	if errMsg != "" {
		c.lastErr = errMsg
	}
}

// safeSession is session with any panic contained: it becomes the
// session's error.
func (c *camera) safeSession(ctx context.Context) (played bool, err error) {
	defer c.recoverSession("camera session", &played, &err)
	return c.session(ctx)
}

// session runs one camera session until it fails or ctx is done. It
// reports whether the session was healthy (see healthySession); a refusal
// of the credentials is an *authError.
func (c *camera) session(ctx context.Context) (healthy bool, err error) {
	defer func() { err = asAuthError(err) }()
	c.setState(stateConnecting, "")
	u, err := base.ParseURL(c.cfg.URL.reveal())
	if err != nil {
		return false, errors.New("camera url cannot be parsed")
	}
	cl := &gortsplib.Client{
		Scheme:       u.Scheme,
		Host:         u.Host,
		ReadTimeout:  c.tmo.Camera,
		WriteTimeout: c.tmo.Camera,
		UserAgent:    "cordon",
		OnPacketsLost: func(n uint64) {
			c.lost.Add(n)
		},
		OnDecodeError: func(err error) {
			if c.decodeErrors.Add(1)%1000 == 1 {
				c.log.Debug("camera sent a packet that could not be decoded", "error", redactError(err, c.cfg.URL))
			}
		},
	}
	switch c.cfg.Transport {
	case TransportTCP:
		v := gortsplib.ProtocolTCP
		cl.Protocol = &v
	case TransportUDP:
		v := gortsplib.ProtocolUDP
		cl.Protocol = &v
	}
	if u.Scheme == "rtsps" {
		cl.TLSConfig = c.tlsConfig()
	}
	d := &net.Dialer{}
	if c.bind != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.bind)}
	}
	guard := newRedirectGuard(u)
	cl.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		if err := guard.check(address); err != nil {
			return nil, err // before any byte: no credentials to another host
		}
		dial := d.DialContext
		if c.dial != nil {
			dial = c.dial
		}
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return newReadAheadConn(conn), nil
	}
	if c.bind != "" {
		cl.ListenPacket = func(network, address string) (net.PacketConn, error) {
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.ListenPacket(network, net.JoinHostPort(c.bind, port))
		}
	}
	capture := &sdpCapture{}
	cl.OnResponse = func(res *base.Response) {
		capture.onResponse(res)
		guard.onResponse(res)
		if dropTransportSource(res) {
			c.log.Debug("camera named a UDP source address in its SETUP answer; ignored (UDP stays with the camera's address)")
		}
	}
	if err := cl.Start(); err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer cl.Close()
	unwatch := context.AfterFunc(ctx, cl.Close)
	defer unwatch()

	desc, _, err := cl.Describe(u)
	if loc, rerr := guard.refusal(); rerr != nil {
		c.log.Error("camera redirect refused; check the camera's url", "error", rerr, "location", loc)
		return false, rerr
	}
	var sdpErr liberrors.ErrClientSDPInvalid
	if errors.As(err, &sdpErr) && cl.Protocol != nil && u.Scheme == "rtsp" {
		// Lenient path: keep the media sections that parse. (Not with
		// transport auto or RTSPS, where gortsplib needs its own DESCRIBE
		// state to switch transports or set up SRTP.)
		d, dropped, lerr := lenientDescription(capture.body)
		if lerr != nil {
			return false, fmt.Errorf("DESCRIBE: %w; %v", err, lerr)
		}
		d.BaseURL = baseURL(d, capture.contentBase, u)
		if c.sdpWarned.CompareAndSwap(false, true) {
			c.log.Warn("camera SDP has media sections that cannot be parsed; reading the others",
				"dropped_sections", dropped, "error", redactError(sdpErr.Err, c.cfg.URL))
		}
		for range dropped {
			c.counters.Drop("sdp_media", 0)
		}
		desc, err = d, nil
	}
	if err != nil {
		return false, fmt.Errorf("DESCRIBE: %w", err)
	}
	plan, err := c.bindPlan(desc)
	if err != nil {
		return false, err
	}
	refused := make(chan error, 1)
	c.mu.Lock()
	c.abort = func(err error) {
		select {
		case refused <- err:
		default:
		}
		go cl.Close() // not from the packet callback itself: Close waits for it
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.abort = nil
		c.mu.Unlock()
	}()
	for _, t := range plan.Tracks {
		if _, err := cl.Setup(desc.BaseURL, t.CameraMedia(), 0, 0); err != nil {
			return false, fmt.Errorf("SETUP: %w", err)
		}
		cl.OnPacketRTP(t.CameraMedia(), t.CameraFormat(), func(pkt *rtp.Packet) { c.onPacket(t, pkt) })
	}
	if _, err := cl.Play(nil); err != nil {
		return false, fmt.Errorf("PLAY: %w", err)
	}
	c.setState(stateUp, "")
	// (gortsplib's Client.Stats and Transport are not safe while the client
	// closes itself, so nothing here reads them after PLAY.)
	c.log.Info("camera playing", "tracks", len(plan.Tracks), "transport", c.cfg.Transport)
	atPlay := c.packetsIn.Load()
	var atMark atomic.Uint64 // packetsIn at healthySession after PLAY, plus one (0: not yet)
	mark := time.AfterFunc(healthySession, func() { atMark.Store(c.packetsIn.Load() + 1) })
	werr := cl.Wait()
	mark.Stop()
	m := atMark.Load()
	healthy = m > 0 && m-1 > atPlay && c.packetsIn.Load() > m-1
	select {
	case err := <-refused:
		// A refused stream did not work: the backoff goes on growing.
		return false, fmt.Errorf("stream refused: %w", err)
	default:
		return healthy, werr
	}
}

// tlsConfig is the TLS configuration towards an rtsps:// camera. Cameras
// ship self-signed certificates, so there is no chain to verify: with
// tls_fingerprint the leaf certificate must match the pin; without, the
// connection is encrypted (no passive capture on the camera network) but
// the camera is not authenticated, and the fingerprint seen is logged once
// so that an administrator can pin it.
func (c *camera) tlsConfig() *tls.Config {
	var pin *[sha256.Size]byte
	if c.cfg.TLSFingerprint != "" {
		fp, err := parseFingerprint(c.cfg.TLSFingerprint) // validated at start
		if err == nil {
			pin = &fp
		}
	}
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified below, by pin
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("camera sent no TLS certificate")
			}
			seen := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if pin == nil {
				if c.tlsWarned.CompareAndSwap(false, true) {
					c.log.Warn("camera TLS certificate not verified; pin it with tls_fingerprint",
						"fingerprint", formatFingerprint(seen), "subject", cs.PeerCertificates[0].Subject.String())
				}
				return nil
			}
			if subtle.ConstantTimeCompare(seen[:], pin[:]) != 1 {
				return fmt.Errorf("camera TLS certificate %s does not match tls_fingerprint %s (another device, or the camera's certificate changed)",
					formatFingerprint(seen), formatFingerprint(*pin))
			}
			return nil
		},
	}
}

// formatFingerprint writes a SHA-256 fingerprint as openssl does.
func formatFingerprint(fp [sha256.Size]byte) string {
	var b strings.Builder
	b.WriteString("sha256:")
	for i, x := range fp {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// refuse ends the camera session because the camera sent parameter sets
// (SPS/PPS/VPS) that fail validation in-band: nothing from such a stream
// reaches a recorder's decoder. The camera is retried with backoff, readers
// stay attached, and other cameras are not affected.
func (c *camera) refuse(err error) {
	// (the cleaner counted the dropped unit under "invalid_sps")
	c.abortSession(err, "camera stream refused: it sent invalid parameter sets; retrying with backoff")
}

// abortSession ends the current session with err, logged once with msg.
func (c *camera) abortSession(err error, msg string) {
	c.mu.Lock()
	abort := c.abort
	c.abort = nil
	c.mu.Unlock()
	if abort == nil {
		return // already refused; the session is closing
	}
	c.log.Error(msg, "error", err)
	abort(err)
}

// bindPlan keeps the reader-facing streams when the camera's media is the
// same as before, and replaces them (closing readers) when it changed.
func (c *camera) bindPlan(desc *description.Session) (*rebuild.Plan, error) {
	c.mu.Lock()
	if c.plan != nil && c.poisoned.Load() {
		// A panic was contained in this plan's cleaner: its state is not
		// to be trusted, so readers start again from a new one.
		c.mu.Unlock()
		c.log.Warn("rebuilding the camera's stream after an internal error; closing its readers")
		c.teardown("camera stream rebuilt after an internal error")
		c.mu.Lock()
	}
	c.poisoned.Store(false)
	if c.plan != nil {
		err := c.plan.Rebind(desc)
		if err == nil {
			for _, js := range c.jitter {
				js.ok = false // the outage is not jitter
			}
			plan := c.plan
			c.mu.Unlock()
			return plan, nil
		}
		c.mu.Unlock()
		c.log.Warn("camera media changed after reconnecting; closing its readers", "reason", redactError(err, c.cfg.URL))
		c.teardown("camera media changed")
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	plan, err := rebuild.NewPlan(desc, c.cfg.rebuildConfig(), &c.counters)
	if err != nil {
		return nil, err
	}
	readerDesc := &description.Session{Medias: plan.Medias()} // no title, no camera URL, no attributes
	var streams []*gortsplib.ServerStream
	for _, s := range c.p.servers {
		st := &gortsplib.ServerStream{Server: s, Desc: readerDesc}
		if err := st.Initialize(); err != nil {
			for _, o := range streams {
				o.Close()
			}
			return nil, fmt.Errorf("reader-facing stream: %w", err)
		}
		streams = append(streams, st)
	}
	c.plan = plan
	c.streams = streams
	c.jitter = map[*rebuild.Track]*jitterState{}
	c.hasVideo = false
	for _, t := range plan.Tracks {
		c.jitter[t] = &jitterState{clock: float64(t.CameraFormat().ClockRate())}
		if t.Media().Type == description.MediaTypeVideo {
			c.hasVideo = true
		}
	}
	c.gop, c.gopValid = nil, false
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	return plan, nil
}

// teardown closes the reader-facing streams (and so every reader) and
// forgets the plan.
func (c *camera) teardown(reason string) {
	c.mu.Lock()
	streams := c.streams
	n := len(c.readers)
	c.streams, c.plan, c.readers = nil, nil, map[*reader]struct{}{}
	c.gop, c.gopValid = nil, false
	select {
	case <-c.ready:
		c.ready = make(chan struct{})
	default:
	}
	c.mu.Unlock()
	if n > 0 {
		c.log.Info("closing readers", "readers", n, "reason", reason)
	}
	for _, st := range streams {
		st.Close()
	}
}

// onPacket cleans one camera packet and sends the result to every reader.
func (c *camera) onPacket(t *rebuild.Track, pkt *rtp.Packet) {
	defer c.recoverPacket()
	if h := c.p.testPacketHook; h != nil {
		h(c.cfg.Name, pkt)
	}
	c.packetsIn.Add(1)
	c.bytesIn.Add(uint64(pkt.MarshalSize()))
	arrival := time.Now()
	ts := pkt.Timestamp
	out, keyAt, err := t.Process(pkt)
	if errors.Is(err, rebuild.ErrInvalidParameters) {
		c.refuse(err)
		return
	}
	if err != nil {
		if c.processErrors.Add(1)%1000 == 1 {
			c.log.Debug("packet dropped by the cleaner", "error", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.plan == nil {
		return
	}
	if js := c.jitter[t]; js != nil {
		js.update(arrival, ts)
		if t == c.plan.Tracks[0] {
			c.jitterBits.Store(math.Float64bits(js.j))
		}
	}
	if err != nil || len(out) == 0 {
		return
	}
	// The cleaner flags where a keyframe starts; without video, every
	// packet is a place to start.
	video := t.Media().Type == description.MediaTypeVideo
	for i, op := range out {
		key := !c.hasVideo || (video && i == keyAt)
		c.cacheLocked(t, op, key && video)
		for r := range c.readers {
			c.sendLocked(r, t, op, key, arrival)
		}
	}
}

// cacheLocked keeps the packets since the last keyframe for new readers.
func (c *camera) cacheLocked(t *rebuild.Track, pkt *rtp.Packet, videoKey bool) {
	if c.gopMax < 0 || !c.hasVideo {
		return
	}
	if videoKey {
		clear(c.gop)
		c.gop = c.gop[:0]
		c.gopValid = true
	}
	if !c.gopValid {
		return
	}
	if len(c.gop) >= c.gopMax {
		// A GOP this long would not fit in a reader's queue anyway: new
		// readers wait for the next keyframe instead.
		c.gop, c.gopValid = nil, false
		return
	}
	c.gop = append(c.gop, gopEntry{t, pkt})
}

// arrival is when the camera packet being sent reached the proxy.
func (c *camera) sendLocked(r *reader, t *rebuild.Track, pkt *rtp.Packet, key bool, arrival time.Time) {
	if !r.active {
		if r.ss.State() != gortsplib.ServerSessionStatePlay {
			return
		}
		r.active = true
		if c.gopValid && len(c.gop) > 0 {
			// The GOP ends with pkt (cached just before).
			for _, e := range c.gop {
				if !c.writeLocked(r, e.t, e.pkt, arrival) {
					break
				}
			}
			return
		}
		r.waitKey = c.hasVideo
	}
	if r.waitKey {
		if !key {
			if r.slow {
				r.dropped.Add(1)
			}
			return
		}
		r.waitKey, r.slow = false, false
	}
	c.writeLocked(r, t, pkt, arrival)
}

// writeLocked writes one packet to one reader. When the reader's queue is
// full, the reader skips everything up to the next keyframe (a partial frame
// would only show as corruption) and the skipped packets are counted.
func (c *camera) writeLocked(r *reader, t *rebuild.Track, pkt *rtp.Packet, arrival time.Time) bool {
	if r.bw != nil {
		return c.writeBatchedLocked(r, t, pkt, arrival)
	}
	if err := r.ss.WritePacketRTP(t.Media(), pkt); err != nil {
		var full liberrors.ErrServerWriteQueueFull
		if !errors.As(err, &full) {
			// Not the reader's fault (a packet too large for UDP, say).
			if c.processErrors.Add(1)%1000 == 1 {
				c.log.Debug("packet not sent", "reader", r.user, "remote", r.remote, "error", err)
			}
			r.dropped.Add(1)
			return true
		}
		c.slowLocked(r, 1, err)
		return false
	}
	r.packets.Add(1)
	r.bytes.Add(uint64(pkt.MarshalSize()))
	return true
}

func (c *camera) writeBatchedLocked(r *reader, t *rebuild.Track, pkt *rtp.Packet, arrival time.Time) bool {
	m := t.Media()
	ch, ok := r.chans[m]
	if !ok {
		return true // the reader did not set this media up
	}
	video := m.Type == description.MediaTypeVideo
	r.bw.arrival = arrival
	ok, dropped, err := r.bw.add(pkt, ch, r.ssrcs[m], video, !video || pkt.Marker)
	if err != nil {
		if c.processErrors.Add(1)%1000 == 1 {
			c.log.Debug("packet not sent", "error", err)
		}
		return true
	}
	if !ok {
		c.slowLocked(r, dropped, errors.New("write queue is full"))
		return false
	}
	return true
}

func (c *camera) slowLocked(r *reader, dropped uint64, err error) {
	r.dropped.Add(dropped)
	if !r.waitKey {
		c.log.Debug("reader too slow; skipping to the next keyframe", "reader", r.user, "remote", r.remote, "error", err)
	}
	r.waitKey, r.slow = c.hasVideo, true
}

// streamFor returns the reader-facing stream of the given server, waiting up
// to wait for the camera to deliver one (on-demand cameras start here).
func (c *camera) streamFor(srv *gortsplib.Server, wait time.Duration) (*gortsplib.ServerStream, error) {
	c.mu.Lock()
	c.lastUse = time.Now()
	if st := c.streamLocked(srv); st != nil {
		c.mu.Unlock()
		return st, nil
	}
	if !c.cfg.OnDemand {
		c.mu.Unlock()
		return nil, errCameraDown
	}
	c.waiters++
	ready := c.ready
	c.mu.Unlock()
	select {
	case c.demand <- struct{}{}:
	default:
	}
	defer func() {
		c.mu.Lock()
		c.waiters--
		c.mu.Unlock()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
		return nil, errCameraDown
	case <-c.ctx.Done():
		return nil, errCameraDown
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streamLocked(srv); st != nil {
		return st, nil
	}
	return nil, errCameraDown
}

var errCameraDown = errors.New("camera is not available")

func (c *camera) streamLocked(srv *gortsplib.Server) *gortsplib.ServerStream {
	for i, s := range c.p.servers {
		if s == srv && i < len(c.streams) {
			return c.streams[i]
		}
	}
	return nil
}

// addReader registers a reader that is about to PLAY; it fails when the
// camera's max_readers is reached or the stream changed since SETUP.
func (c *camera) addReader(r *reader) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.streams, r.stream) {
		return errCameraDown
	}
	if _, ok := c.readers[r]; ok {
		return nil
	}
	if c.cfg.MaxReaders >= 0 && len(c.readers) >= c.cfg.MaxReaders {
		return errTooManyReaders
	}
	c.readers[r] = struct{}{}
	return nil
}

var errTooManyReaders = errors.New("camera has reached max_readers")

func (c *camera) removeReader(r *reader) {
	c.mu.Lock()
	delete(c.readers, r)
	c.lastUse = time.Now()
	c.mu.Unlock()
	if r.bw != nil {
		r.bw.stop()
	}
}

// jitterState is the RFC 3550 interarrival jitter of one camera track, in
// RTP clock units.
type jitterState struct {
	clock       float64
	lastArrival time.Time
	lastTS      uint32
	j           float64
	ok          bool
}

func (js *jitterState) update(now time.Time, ts uint32) {
	if js.ok {
		d := now.Sub(js.lastArrival).Seconds()*js.clock - float64(int32(ts-js.lastTS))
		js.j += (math.Abs(d) - js.j) / 16
	}
	js.lastArrival, js.lastTS, js.ok = now, ts, true
}

func (c *camera) sampleBitrate(now time.Time) {
	b := c.bytesIn.Load()
	if !c.lastSample.IsZero() {
		if dt := now.Sub(c.lastSample).Seconds(); dt > 0 {
			c.bitrate.Store(uint64(float64(b-c.lastBytes) * 8 / dt))
		}
	}
	c.lastBytes, c.lastSample = b, now
}

func sortCameras(cs []*camera) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].cfg.Name < cs[j].cfg.Name })
}

package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
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

// camera ties one configured camera to its source (source.go: the RTSP
// pull) and its stream (stream.go: readers, GOP cache): it runs the source's
// sessions with backoff, starts and idles on-demand cameras, and keeps the
// state /v1/cameras shows.
type camera struct {
	cfg      Camera
	tmo      Timeouts
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	demand   chan struct{} // on-demand wake-up, buffered 1
	counters rebuild.Counters
	src      *source
	stream   *stream
	// session runs one session of the camera's source: src.safeSession
	// (RTSP), or a trunk session for a camera that comes through a trunk.
	session func(ctx context.Context) (healthy bool, err error)
	// trunk is the trunk the camera comes through; nil for a camera
	// pulled over RTSP.
	trunk *trunkCore

	reconnects, panics atomic.Uint64

	mu      sync.Mutex
	state   string
	lastErr string
	since   time.Time
	waiters int       // readers waiting in streamFor
	lastUse time.Time // last DESCRIBE/SETUP/PLAY, for on-demand idling
	hist    stateHistory
	kick    context.CancelCauseFunc // ends the running session (camera_reconnect.go)
}

var _ sourceParent = (*camera)(nil)

func newCamera(p *Proxy, cc Camera) *camera {
	ctx, cancel := context.WithCancel(context.Background())
	c := &camera{
		cfg:    cc,
		tmo:    p.cfg.Timeouts,
		log:    p.log.With("camera", cc.Name),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		demand: make(chan struct{}, 1),
		state:  stateConnecting,
		since:  time.Now(),
	}
	if cc.OnDemand {
		c.state = stateIdle
	}
	c.hist.add(StateChange{Time: c.since, State: c.state})
	c.stream = newStream(cc, p.servers, p.cfg.GOPCacheMaxPackets, &c.counters, c.log)
	c.stream.gop.total = &p.gopBytes
	c.src = &source{
		cfg: cc, tmo: c.tmo, bind: p.cfg.CameraSide.Bind, coalesce: p.cfg.CameraSide.ReadCoalesce, log: c.log,
		counters: &c.counters, stream: c.stream, parent: c, noTap: p.testNoCameraTap,
	}
	c.session = c.src.safeSession
	if h := p.testPacketHook; h != nil {
		c.src.packetHook = func(pkt *rtp.Packet) { h(cc.Name, pkt) }
	}
	return c
}

func (c *camera) start() {
	if c.trunk != nil {
		c.log.Info("camera added", "trunk", c.trunk.cfg.Name, "edge_address", c.trunk.cfg.Address)
	} else {
		c.log.Info("camera added", "url", c.cfg.URL, "transport", c.cfg.Transport, "on_demand", c.cfg.OnDemand)
	}
	go c.run()
}

// stop ends the camera's session and closes its readers. It does not wait.
func (c *camera) stop(reason string) {
	c.log.Info("camera stopping", "reason", reason)
	c.cancel()
	go func() {
		defer c.recoverGo("teardown")
		<-c.done
		c.stream.close(reason)
	}()
}

// stopWait is stop that returns once the camera is stopped.
func (c *camera) stopWait(reason string) {
	c.cancel()
	<-c.done
	c.stream.close(reason)
}

func (c *camera) run() {
	defer close(c.done)
	defer c.recoverGo("camera loop")
	b := newBackoff(c.tmo.BackoffMin, c.tmo.BackoffMax, c.tmo.AuthFailureBackoff)
	if !c.cfg.OnDemand {
		retryLoop(c.ctx, b, c.kickableSession, c.onRetry)
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
		retryLoop(ctx, b, c.kickableSession, c.onRetry)
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		c.stream.close("on-demand camera has no readers left")
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
			readers := c.stream.readerCount()
			c.mu.Lock()
			idle := readers == 0 && c.waiters == 0 && now.Sub(c.lastUse) >= c.tmo.OnDemandClose
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
		c.hist.add(StateChange{Time: c.since, State: s, Error: errMsg})
	}
	c.state = s
	if errMsg != "" {
		c.lastErr = errMsg
	}
}

// streamFor returns the reader-facing stream of the given server, waiting up
// to wait for the camera to deliver one (on-demand cameras start here).
func (c *camera) streamFor(srv *gortsplib.Server, wait time.Duration) (*gortsplib.ServerStream, error) {
	c.touch()
	st, ready := c.stream.serverStream(srv)
	if st != nil {
		return st, nil
	}
	if !c.cfg.OnDemand {
		return nil, errCameraDown
	}
	c.mu.Lock()
	c.waiters++
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
	if st, _ := c.stream.serverStream(srv); st != nil {
		return st, nil
	}
	return nil, errCameraDown
}

// touch marks the camera as used now (on-demand idling counts from here).
func (c *camera) touch() {
	c.mu.Lock()
	c.lastUse = time.Now()
	c.mu.Unlock()
}

// addReader registers a reader that is about to PLAY from st; it fails
// when the camera's max_readers is reached or the stream changed since
// SETUP.
func (c *camera) addReader(r *reader, st *gortsplib.ServerStream) error {
	return c.stream.add(r, st)
}

func (c *camera) removeReader(r *reader) {
	c.stream.remove(r)
	c.touch()
}

func (c *camera) sampleBitrate(now time.Time) {
	c.src.sampleBitrate(now)
	c.stream.sampleFPS()
}

func sortCameras(cs []*camera) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].cfg.Name < cs[j].cfg.Name })
}

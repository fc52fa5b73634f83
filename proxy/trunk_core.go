package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// Trunk states, as /v1/trunks shows them.
const (
	trunkConnecting = "connecting"
	trunkUp         = "up"
	trunkDown       = "down"
)

// maxTrunkCameras bounds the cameras a "*" trunk takes from an edge's
// catalogue (the edge is not trusted to list a sane number).
const maxTrunkCameras = 1024

// errTrunkRemote is an error the edge answered (an unknown camera, a
// camera that is down).
var errTrunkRemote = errors.New("edge refused")

// trunkCore is the core end of one trunk: it dials the edge (the core
// always initiates), pins the edge's certificate, reads the edge's
// catalogue, and keeps one QUIC connection up with backoff. Each remote
// camera is a camera of this proxy whose source is a QUIC stream on that
// connection (trunkSession), so that readers stay attached across an
// outage of the trunk as across an outage of a camera.
type trunkCore struct {
	cfg  Trunk
	p    *Proxy
	log  *slog.Logger
	tls  *tls.Config
	tmo  Timeouts
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}

	reconnects, bytesIn atomic.Uint64 // over every connection
	resumed             atomic.Uint64 // connections that resumed a TLS session
	started             atomic.Bool
	dgram               trunkCoreDatagrams // trunk_datagram.go
	media               trunkCoreMedia     // per-camera counters (trunk_media.go)
	wg                  sync.WaitGroup     // the connections' loops

	mu       sync.Mutex
	remote   []string              // the edge's catalogue, last seen
	links    []*trunkLink          // its QUIC connections (trunk_link.go): linkFor adds them
	assigned map[string]*trunkLink // camera (edge name) → its connection
	nextLink int
	running  bool // run started the connections' loops
	closing  bool // halt was called: no loop starts any more
}

func newTrunkCore(p *Proxy, cfg Trunk, cert tls.Certificate) *trunkCore {
	ctx, cancel := context.WithCancel(context.Background())
	log := p.log.With("trunk", cfg.Name)
	who := "edge " + cfg.Address
	if cfg.Dialer == TrunkDialerEdge {
		who = "edge " + cfg.Name + " (dialing in)"
	}
	t := &trunkCore{
		cfg: cfg, p: p, log: log, tmo: p.cfg.Timeouts,
		tls: trunkClientTLS(cert, trunkALPN, trunkTrustOf(cfg, p.trunkNet.roots), tls.NewLRUClientSessionCache(4), log, who),
		ctx: ctx, stop: cancel, done: make(chan struct{}),
		assigned: map[string]*trunkLink{},
	}
	t.links = []*trunkLink{newTrunkLink(t, 0)}
	return t
}

func (t *trunkCore) start() {
	t.log.Info("trunk added", "address", t.cfg.Address, "cameras", t.cfg.Cameras)
	t.started.Store(true)
	go t.run()
}

func (t *trunkCore) close() {
	t.halt()
	for _, l := range t.linkList() {
		l.inbox.close()
	}
	if t.started.Load() {
		<-t.done
	}
}

func (t *trunkCore) run() {
	defer close(t.done)
	t.mu.Lock()
	if !t.closing {
		t.running = true
		for _, l := range t.links {
			t.wg.Go(l.run)
		}
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// halt ends the trunk's connections: no loop starts after it (so that
// run's Wait is never raced by linkFor), then every one ends.
func (t *trunkCore) halt() {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	t.stop()
}

// catalogue asks the edge for its cameras (and an edge that dials to open
// the connections the trunk has so far).
func (t *trunkCore) catalogue(ctx context.Context, conn *quic.Conn) ([]trunkCameraInfo, error) {
	t.mu.Lock()
	n := len(t.links)
	t.mu.Unlock()
	ans, err := t.ask(ctx, conn, trunkRequest{Op: trunkOpCatalogue, Connections: n})
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	return ans.Cameras, nil
}

// request sends req and waits for the edge's answer (an error or not).
func (t *trunkCore) request(ctx context.Context, conn *quic.Conn, req trunkRequest) error {
	_, err := t.ask(ctx, conn, req)
	return err
}

// ask sends one request on a new stream and reads the answer.
func (t *trunkCore) ask(ctx context.Context, conn *quic.Conn, req trunkRequest) (trunkAnswer, error) {
	var ans trunkAnswer
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return ans, err
	}
	defer st.CancelRead(0)
	st.SetDeadline(time.Now().Add(t.tmo.Camera))
	if err := writeJSONFrame(st, req); err != nil {
		return ans, err
	}
	st.Close()
	if err := readJSONFrame(st, maxTrunkAnswer, &ans); err != nil {
		return ans, err
	}
	if ans.Error != "" {
		return ans, fmt.Errorf("%w: %s", errTrunkRemote, ans.Error)
	}
	return ans, nil
}

// addCameras adds a camera for each name of the edge's catalogue the
// trunk takes ("*"); a listed camera the edge does not have is logged.
func (t *trunkCore) addCameras(names []string) {
	if slices.Contains(t.cfg.Cameras, "*") {
		added := 0
		for _, n := range names {
			switch {
			case !nameRE.MatchString(n):
				t.log.Warn("the edge lists a camera name that is not valid here; ignored", "camera", fmt.Sprintf("%.80q", n))
			case added >= maxTrunkCameras:
				t.log.Warn("the edge lists more cameras than a trunk takes; the rest are ignored", "max", maxTrunkCameras, "listed", len(names))
				return
			default:
				t.p.addTrunkCamera(t, n)
				added++
			}
		}
		return
	}
	for _, n := range t.cfg.Cameras {
		if !slices.Contains(names, n) {
			t.log.Warn("the edge does not list a camera this trunk is configured to take", "camera", n)
		}
	}
}

// trunkCameraConfig is the configuration of a camera that comes through
// a trunk: the core's own cleaner runs on it (defaults), since the core
// does not trust the edge's output blindly.
func trunkCameraConfig(edge, name string) Camera {
	cfg := Config{Cameras: []Camera{{Name: trunkPath(edge, name)}}}.withDefaults()
	return cfg.Cameras[0]
}

// addTrunkCamera adds camera name of trunk t, unless it exists.
func (p *Proxy) addTrunkCamera(t *trunkCore, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	path := trunkPath(t.cfg.Name, name)
	if p.closed || p.cams[path] != nil || t.ctx.Err() != nil {
		return
	}
	c := newTrunkCamera(p, t, name)
	p.cams[path] = c
	c.start()
}

// newTrunkCamera is camera name of trunk t.
func newTrunkCamera(p *Proxy, t *trunkCore, name string) *camera {
	cc := trunkCameraConfig(t.cfg.Name, name)
	transport, always := t.cfg.cameraMedia(name)
	cc.OnDemand = !always // pulled only while a reader wants it, unless always_on
	c := newCamera(p, cc)
	c.trunk = t
	ts := &trunkSession{t: t, link: t.linkFor(name), c: c, remote: name, transport: transport, fec: t.cfg.cameraFEC(name)}
	c.session = func(ctx context.Context) (played bool, err error) {
		defer c.src.recoverSession("trunk camera session", &played, &err)
		return ts.run(ctx)
	}
	return c
}

// trunkSession is the source of a camera that comes through a trunk: one
// QUIC stream per session, on which the edge sends the camera's SDP and
// then its packets. Everything is validated (frame sizes, SDP, RTP, media
// index) and cleaned again by the core's own plan.
type trunkSession struct {
	t      *trunkCore
	link   *trunkLink // the connection it is assigned to
	c      *camera
	remote string // the camera's name on the edge
	// transport is how the camera's media crosses the trunk, fec the
	// repair it asks for datagrams.
	transport TrunkTransport
	fec       TrunkFEC
	warnedFEC bool // the edge's lack of FEC was logged
}

// answeredFEC is the FEC of the edge's datagrams: what it answered (at
// most what the core asked), or off from an edge that has no FEC (it
// ignores the request's fec; logged once).
func (s *trunkSession) answeredFEC(req trunkRequest, ans trunkAnswer) (TrunkFEC, error) {
	switch {
	case ans.FEC == nil:
		if req.FEC != nil && !s.warnedFEC {
			s.warnedFEC = true
			s.c.log.Warn("the edge sends this camera's datagrams without FEC (an edge older than FEC): a lost datagram costs the rest of the GOP", "fec", s.fec)
		}
		return TrunkFEC{Off: true}, nil
	case req.FEC == nil:
		return TrunkFEC{}, fmt.Errorf("%w: the edge answered fec the core did not ask", errTrunkFrame)
	}
	f := TrunkFEC{Data: ans.FEC.Data, Parity: ans.FEC.Parity}
	if err := f.check(); err != nil {
		return TrunkFEC{}, fmt.Errorf("%w: the edge's fec: %v", errTrunkFrame, err)
	}
	return f, nil
}

func (s *trunkSession) run(ctx context.Context) (healthy bool, err error) {
	c, t := s.c, s.t
	c.setState(stateConnecting, "")
	conn, err := s.link.waitConn(ctx, t.tmo.Camera)
	if err != nil {
		return false, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return false, fmt.Errorf("open trunk stream: %w", err)
	}
	defer st.CancelRead(0)
	defer context.AfterFunc(ctx, func() { st.CancelRead(0) })()
	st.SetWriteDeadline(time.Now().Add(t.tmo.Camera))
	req := trunkRequest{Op: trunkOpPlay, Camera: s.remote, MaxBitrate: int64(t.cfg.MaxBitrate), Ages: true}
	if s.transport == TrunkDatagram {
		req.Transport, req.Ages = string(TrunkDatagram), false
		if s.fec.on() {
			req.FEC = &trunkFECWire{Data: s.fec.Data, Parity: s.fec.Parity}
		}
	}
	if err := writeJSONFrame(st, req); err != nil {
		return false, fmt.Errorf("trunk request: %w", err)
	}
	st.Close() // nothing more to send on this stream
	st.SetReadDeadline(time.Now().Add(t.tmo.Camera + t.tmo.OnDemandStart))
	desc, ans, err := readPlayAnswerID(st)
	if err != nil {
		return false, err
	}
	dgramID := ans.Datagram
	fec := TrunkFEC{Off: true}
	if dgramID != 0 {
		if fec, err = s.answeredFEC(req, ans); err != nil {
			return false, err
		}
	}
	plan, err := c.stream.bind(desc)
	if err != nil {
		return false, err
	}
	tracks := make([]*rebuild.Track, len(desc.Medias))
	for _, tr := range plan.Tracks {
		if i := slices.Index(desc.Medias, tr.CameraMedia()); i >= 0 {
			tracks[i] = tr
		}
	}
	c.setState(stateUp, "")
	c.log.Info("camera playing through the trunk", "tracks", len(plan.Tracks), "datagrams", dgramID != 0)
	if dgramID != 0 {
		return s.runDatagrams(ctx, conn, st, dgramID, tracks, fec)
	}
	return s.readStream(st, tracks)
}

// readStream feeds the camera's packets from its QUIC stream to its
// stream until the stream ends or breaks the protocol.
func (s *trunkSession) readStream(st *quic.Stream, tracks []*rebuild.Track) (healthy bool, err error) {
	c, t := s.c, s.t
	stats := t.media.camera(s.remote, TrunkStream)
	start := time.Now()
	src := c.src
	var n uint64
	br := bufio.NewReaderSize(st, 64<<10) // (one stream read per burst, not two per packet)
	// The read deadline moves on at most every trunkDeadlineStep, not at
	// each packet (quic-go takes the stream's lock and resets a timer).
	deadlineAt := time.Now()
	st.SetReadDeadline(deadlineAt.Add(t.tmo.Camera))
	for {
		i, pkt, age, size, err := readAgedPacket(br, len(tracks))
		if errors.Is(err, errTrunkFrame) || errors.Is(err, errTrunkFrameSize) {
			return false, err // the edge broke the protocol: start again
		}
		if err != nil {
			return n > 0 && time.Since(start) >= healthySession, fmt.Errorf("trunk stream: %w", err)
		}
		now := time.Now()
		if now.Sub(deadlineAt) >= trunkDeadlineStep {
			deadlineAt = now
			st.SetReadDeadline(now.Add(t.tmo.Camera))
		}
		t.bytesIn.Add(uint64(size))
		stats.bytes.Add(uint64(size))
		stats.packets.Add(1)
		tr := tracks[i]
		if tr == nil {
			c.counters.Drop("trunk_media", size)
			continue
		}
		n++
		src.packetsIn.Add(1)
		if age > 0 {
			size -= 4 // (the age)
		}
		src.bytesIn.Add(uint64(size - 6))
		// A packet the edge's GOP cache replayed arrives with its age:
		// placed when it was live, the burst does not pull the camera's
		// timeline back under the first reader (timeline.go).
		if err := c.stream.packet(tr, pkt, now.Add(-age)); errors.Is(err, rebuild.ErrInvalidParameters) {
			return false, fmt.Errorf("stream refused: %w", err)
		}
	}
}

// trunkDeadlineStep is how often a trunk camera's read deadline moves
// on: the camera times out between timeouts.camera minus this and
// timeouts.camera after its last packet.
const trunkDeadlineStep = 100 * time.Millisecond

// recoverTrunk is deferred by trunk goroutines that are not a camera's.
func (p *Proxy) recoverTrunk(where string, log *slog.Logger) {
	if v := recover(); v != nil {
		p.trunkPanics.Add(1)
		log.Error("trunk goroutine panicked; contained", "where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	}
}

// startTrunks starts the edge listener (trunk.listen) and prepares the
// trunks to edges (their connections start with the cameras).
func (p *Proxy) startTrunks(cfg Config) error {
	if !cfg.trunkUsed() {
		return nil
	}
	if err := p.loadTrunkNet(cfg.Trunk); err != nil {
		return err
	}
	// The trunks exist before trunk.listen accepts an edge dialing in
	// (they start with the cameras; a connection waits in its inbox).
	p.trunkNet.mu.Lock()
	for _, tc := range cfg.Trunks {
		p.trunks = append(p.trunks, newTrunkCore(p, tc, p.trunkNet.cert))
	}
	p.trunkNet.mu.Unlock()
	edge, err := p.startTrunkEdge(cfg)
	if err != nil {
		return err
	}
	p.trunkEdge = edge
	return nil
}

// startTrunkCamerasLocked starts the trunks and the cameras they list by
// name (those of a "*" trunk are added when its catalogue arrives).
func (p *Proxy) startTrunkCamerasLocked() {
	for _, t := range p.trunks {
		p.startTrunkLocked(t)
	}
}

// closeTrunks ends the trunks' connections and the edge listener (the
// cameras are stopped first).
func (p *Proxy) closeTrunks() {
	for _, t := range p.trunkList() {
		t.close()
	}
	if p.trunkEdge != nil {
		p.trunkEdge.close()
	}
}

// TrunkAddr is the bound trunk.listen address (useful with port 0), or
// nil when this proxy is not an edge.
func (p *Proxy) TrunkAddr() net.Addr {
	if p.trunkEdge == nil || p.trunkEdge.ln == nil {
		return nil
	}
	return p.trunkEdge.ln.Addr()
}

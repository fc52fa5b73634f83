package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// trunkEdge serves this proxy's cameras to core proxies over QUIC (the
// edge end of a trunk). A core authenticates with a pinned certificate
// (trunk.peers) and may only ask for the catalogue or for a configured
// camera by name: nothing it sends becomes a request to a camera, and what
// it gets is the cleaned, reader-facing stream, through a reader like any
// other (keyframe wait, slow-reader policy, GOP cache).
type trunkEdge struct {
	p          *Proxy
	ln         *quic.Listener // nil without trunk.listen (an edge that only dials)
	lnTr       *quic.Transport
	log        *slog.Logger
	tmo        Timeouts // (the proxy's config is not read after Start: a reload replaces it)
	queueBytes int64    // limits.reader_queue_bytes
	maxBitrate int64    // trunk.max_bitrate, per core
	ctx        context.Context
	end        context.CancelFunc
	wg         sync.WaitGroup

	refused atomic.Uint64 // handshakes refused (certificate not pinned)

	coreTrust, edgeTrust atomic.Pointer[trunkTrust] // see serverTLS
	dialers              []*trunkDialer             // trunk.dial

	mu    sync.Mutex
	peers map[*quic.Conn]*trunkPeer
	cores map[string]*trunkCoreGroup // by fingerprint
}

// trunkPeer is one connection of a connected core.
type trunkPeer struct {
	fingerprint, remote string
	since               time.Time
	streams             atomic.Int64 // cameras it is reading on this connection
	// media is shared by the core's connections (a trunk of several
	// connections is one core: one max_bitrate, one set of counters).
	media *trunkPeerMedia
	// setConnections, on connection 0 of an edge that dials, opens as
	// many connections as the core's catalogue request asks; nil otherwise.
	setConnections func(int)
}

// trunkCoreGroup is what a core's connections to this edge share.
type trunkCoreGroup struct {
	media *trunkPeerMedia
	conns int
}

// trunkQUICConfig is the QUIC configuration of both ends of a trunk.
func trunkQUICConfig(tmo Timeouts) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: tmo.Camera,
		MaxIdleTimeout:       tmo.Camera,
		KeepAlivePeriod:      tmo.Camera / 3,
		MaxIncomingStreams:   4096, // cameras (and catalogue requests) per core
		EnableDatagrams:      true, // cameras with transport datagram (trunk_datagram.go)
	}
}

// startTrunkEdge listens on trunk.listen; nil when it is not set.
func (p *Proxy) startTrunkEdge(cfg Config) (*trunkEdge, error) {
	if cfg.Trunk.Listen == "" && len(cfg.Trunk.Dial) == 0 {
		return nil, nil
	}
	e := &trunkEdge{p: p, log: p.log.With("trunk", "edge"), tmo: cfg.Timeouts, queueBytes: cfg.Limits.ReaderQueueBytes, maxBitrate: int64(cfg.Trunk.MaxBitrate), peers: map[*quic.Conn]*trunkPeer{}, cores: map[string]*trunkCoreGroup{}}
	e.setTrust(cfg, p.trunkNet.roots)
	e.ctx, e.end = context.WithCancel(context.Background())
	if cfg.Trunk.Listen != "" {
		if err := e.listen(&p.trunkNet, cfg.Trunk.Listen, e.serverTLS(p.trunkNet.cert)); err != nil {
			e.end()
			return nil, fmt.Errorf("proxy: %w", &ListenError{Key: "trunk.listen", Addr: cfg.Trunk.Listen, Err: err})
		}
		e.wg.Go(e.serve)
	}
	for _, a := range cfg.Trunk.Dial {
		e.dialers = append(e.dialers, e.startDialer(&p.trunkNet, a))
	}
	return e, nil
}

func (e *trunkEdge) close() {
	e.end()
	for _, d := range e.dialerList() {
		d.close()
	}
	if e.ln != nil {
		e.ln.Close()
		defer closeTransport(e.lnTr) // after the connections' CONNECTION_CLOSE
	}
	e.mu.Lock()
	for c := range e.peers {
		c.CloseWithError(0, "edge shutting down")
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *trunkEdge) serve() {
	for {
		conn, err := e.ln.Accept(e.ctx)
		if err != nil {
			return // closed
		}
		e.wg.Go(func() { e.accepted(conn) })
	}
}

// handleConn serves a core on conn until it ends; setConnections is
// trunkPeer's.
func (e *trunkEdge) handleConn(conn *quic.Conn, setConnections func(int)) {
	defer conn.CloseWithError(0, "")
	cs := conn.ConnectionState().TLS
	if len(cs.PeerCertificates) == 0 {
		return // (VerifyPeerCertificate refused it)
	}
	peer := &trunkPeer{
		fingerprint: formatFingerprint(sha256.Sum256(cs.PeerCertificates[0].Raw)),
		remote:      conn.RemoteAddr().String(), since: time.Now(), setConnections: setConnections,
	}
	log := e.log.With("core", peer.fingerprint, "remote", peer.remote)
	e.addPeer(conn, peer)
	defer e.removePeer(conn, peer)
	log.Info("core connected")
	for {
		st, err := conn.AcceptStream(e.ctx)
		if err != nil {
			log.Info("core disconnected", "reason", err)
			return
		}
		e.wg.Go(func() {
			defer e.p.recoverTrunk("trunk edge stream", log)
			defer st.Close()
			e.handleStream(conn, st, peer, log)
		})
	}
}

// addPeer records a connection of a core, in its core's group.
func (e *trunkEdge) addPeer(conn *quic.Conn, peer *trunkPeer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.cores[peer.fingerprint]
	if g == nil {
		g = &trunkCoreGroup{media: &trunkPeerMedia{}}
		e.cores[peer.fingerprint] = g
	}
	g.conns++
	peer.media = g.media
	e.peers[conn] = peer
}

func (e *trunkEdge) removePeer(conn *quic.Conn, peer *trunkPeer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.peers, conn)
	if g := e.cores[peer.fingerprint]; g != nil {
		if g.conns--; g.conns <= 0 {
			delete(e.cores, peer.fingerprint)
		}
	}
}

// handleStream answers one request of a core.
func (e *trunkEdge) handleStream(conn *quic.Conn, st *quic.Stream, peer *trunkPeer, log *slog.Logger) {
	tmo := e.tmo.Reader
	st.SetReadDeadline(time.Now().Add(tmo))
	var req trunkRequest
	if err := readJSONFrame(st, maxTrunkRequest, &req); err != nil {
		log.Warn("bad request from core; stream closed", "error", err)
		st.CancelRead(1)
		return
	}
	st.SetWriteDeadline(time.Now().Add(tmo))
	switch req.Op {
	case trunkOpCatalogue, trunkOpConnections:
		if peer.setConnections != nil && req.Connections > 0 {
			peer.setConnections(req.Connections)
		}
		if req.Op == trunkOpCatalogue {
			writeJSONFrame(st, trunkAnswer{Cameras: e.catalogue()})
		} else {
			writeJSONFrame(st, trunkAnswer{})
		}
		return
	case trunkOpPlay:
	default:
		writeJSONFrame(st, trunkAnswer{Error: fmt.Sprintf("unknown request %q", req.Op)})
		return
	}
	c := e.p.camera(req.Camera)
	if c == nil || c.trunk != nil || !nameRE.MatchString(req.Camera) {
		log.Warn("core asked for a camera this edge does not list", "camera", req.Camera)
		writeJSONFrame(st, trunkAnswer{Error: fmt.Sprintf("camera %q is not listed by this edge", req.Camera)})
		return
	}
	srv := e.p.servers[0]
	sst, err := c.streamFor(srv, e.tmo.OnDemandStart)
	if err != nil {
		writeJSONFrame(st, trunkAnswer{Error: fmt.Sprintf("camera %q: %v", req.Camera, err)})
		return
	}
	sdp, err := sst.Desc.Marshal()
	if err != nil {
		writeJSONFrame(st, trunkAnswer{Error: fmt.Sprintf("camera %q: %v", req.Camera, err)})
		return
	}
	out := newTrunkOutput(c.stream, e.queueBytes)
	if out == nil {
		writeJSONFrame(st, trunkAnswer{Error: fmt.Sprintf("camera %q: %v", req.Camera, errCameraDown)})
		return
	}
	r := &reader{user: "trunk:" + peer.fingerprint, remote: peer.remote, since: time.Now(), out: out, close: out.stop}
	out.r = r
	ans, w := e.mediaFor(out, conn, st, peer, req, log)
	// The reader is added before the answer is sent: what the stream
	// writes meanwhile waits in the output's queue, behind the answer.
	if err := c.addReader(r, sst); err != nil {
		writeJSONFrame(st, trunkAnswer{Error: fmt.Sprintf("camera %q: %v", req.Camera, err)})
		return
	}
	defer c.removeReader(r)
	ans.SDP = string(sdp)
	if err := writeJSONFrame(st, ans); err != nil {
		return
	}
	peer.streams.Add(1)
	defer peer.streams.Add(-1)
	out.cam.active.Add(1)
	defer out.cam.active.Add(-1)
	log.Info("core reading camera", "camera", req.Camera, "transport", transportOf(&out.cam.transport))
	if ans.Datagram != 0 {
		go reportDatagrams(st, out, out.cam, tmo)
	}
	err = out.run(w, conn.Context().Done(), tmo)
	log.Info("core stopped reading camera", "camera", req.Camera, "reason", err)
}

// catalogue lists this edge's own cameras (not those it pulls from trunks).
func (e *trunkEdge) catalogue() []trunkCameraInfo {
	var out []trunkCameraInfo
	for _, c := range e.p.cameras() {
		if c.trunk != nil {
			continue
		}
		info := trunkCameraInfo{Name: c.cfg.Name}
		c.mu.Lock()
		info.State = c.state
		c.mu.Unlock()
		if sst, _ := c.stream.serverStream(e.p.servers[0]); sst != nil {
			if b, err := sst.Desc.Marshal(); err == nil {
				info.SDP = string(b)
			}
		}
		out = append(out, info)
	}
	return out
}

// trunkOutput is a reader towards a core proxy: the stream writes cleaned
// packets into its bounded queue (bytes), and run sends them as frames on
// the reader's QUIC stream. A full queue is a slow reader (the stream
// skips it to the next keyframe).
type trunkOutput struct {
	r     *reader
	index map[*rebuild.Track]int // the track's media index in the reader-facing SDP
	max   int64
	cam   *trunkEdgeCamera // this camera's counters towards this core
	limit *trunkLimiter    // the core's max_bitrate; nil: none
	// skipping: the last write was refused, so the stream skips this
	// reader to the next keyframe, and the next write starts a GOP
	// (guarded by the stream's mutex, as write is).
	skipping bool

	// video[i] says media i is video: its packets are queued an access
	// unit at a time (cur), as the batch writer of RTSP readers does;
	// other packets one at a time.
	video []bool
	cur   trunkFrame // the access unit being gathered (guarded as write)
	// ages: the core asked for the age of replayed packets (set before
	// the reader is added).
	ages bool

	q chan trunkFrame
	// headAt is when the frame last taken off q was queued (unix ns):
	// how far behind the trunk is (trunk_media.go, maxTrunkLag).
	headAt atomic.Int64
	queued atomic.Int64
	once   sync.Once
	done   chan struct{}
	buf    []byte     // run's batch
	held   trunkFrame // what run wrote last (released at the next gather)
}

var (
	_ output             = (*trunkOutput)(nil)
	_ streamCloseWatcher = (*trunkOutput)(nil)
)

// newTrunkOutput returns the output of a reader of s's current plan, or
// nil when s has none.
func newTrunkOutput(s *stream, maxBytes int64) *trunkOutput {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plan == nil {
		return nil
	}
	idx := map[*rebuild.Track]int{}
	video := make([]bool, len(s.plan.Tracks))
	for i, t := range s.plan.Tracks {
		idx[t] = i
		video[i] = t.Media() != nil && t.Media().Type == description.MediaTypeVideo
	}
	return &trunkOutput{index: idx, video: video, max: maxBytes, cam: &trunkEdgeCamera{}, q: make(chan trunkFrame, 4096), done: make(chan struct{})}
}

var errTrunkTrack = errors.New("trunk: packet of a track the core was not told about")

func (o *trunkOutput) playing() bool { return true }
func (o *trunkOutput) batched() bool { return false }

func (o *trunkOutput) stop()         { o.once.Do(func() { close(o.done) }) }
func (o *trunkOutput) streamClosed() { o.stop() }

func (o *trunkOutput) write(t *rebuild.Track, pkt *rtp.Packet, _, ntp time.Time) (bool, uint64, error) {
	i, ok := o.index[t]
	if !ok {
		return false, 1, errTrunkTrack
	}
	n := pkt.MarshalSize()
	if 1+n > maxTrunkPacket {
		return false, 1, fmt.Errorf("%w: RTP packet of %d bytes", errTrunkFrameSize, n)
	}
	video := i < len(o.video) && o.video[i]
	if video && o.cur.packets > 0 && pkt.Timestamp != o.cur.ts && !o.flush() {
		return o.refuse(errQueueFull) // (a new access unit began)
	}
	size := 6 + n
	if o.queued.Load()+int64(len(o.cur.b)+size) > o.max {
		return o.refuseAfterFlush(errQueueFull)
	}
	if !o.limit.admit(o.cam.name, size, o.skipping) {
		return o.refuseAfterFlush(errTrunkCap)
	}
	if o.lagging() {
		return o.refuseAfterFlush(errTrunkLag)
	}
	if err := o.cur.appendPacket(i, pkt, n, o.ageOf(ntp)); err != nil {
		return false, 1, err
	}
	o.cur.ts = pkt.Timestamp
	o.skipping = false
	if (!video || pkt.Marker) && !o.flush() {
		return o.refuse(errQueueFull)
	}
	return false, 0, nil
}

// refuseAfterFlush queues the packets of the access unit gathered so
// far (they were admitted), then refuses the packet.
func (o *trunkOutput) refuseAfterFlush(why error) (bool, uint64, error) {
	o.flush()
	return o.refuse(why)
}

// flush queues the access unit gathered so far; false when the queue
// has no room (the access unit is dropped).
func (o *trunkOutput) flush() bool {
	f := o.cur
	if f.packets == 0 {
		return true
	}
	o.cur = trunkFrame{}
	f.at = time.Now().UnixNano()
	select {
	case o.q <- f:
		o.queued.Add(int64(len(f.b)))
		return true
	default:
		f.release()
		return false
	}
}

// run writes queued frames to w until the output stops, connDone is
// closed or a write fails.
func (o *trunkOutput) run(w trunkWriter, connDone <-chan struct{}, tmo time.Duration) error {
	for {
		select {
		case <-o.done:
			return errors.New("camera stream closed")
		case <-connDone:
			return errors.New("trunk connection closed")
		case f := <-o.q:
			b, packets, payload := o.gather(f) // (trunk_media.go: one write for what is queued)
			w.SetWriteDeadline(time.Now().Add(tmo))
			if _, err := w.Write(b); err != nil {
				return err
			}
			o.r.packets.Add(packets)
			o.r.bytes.Add(payload)
			o.cam.packets.Add(packets)
			o.cam.bytes.Add(payload)
		}
	}
}

package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/internal/udpgro"
)

// trunkNet holds what the trunk connections of a proxy share: its key
// pair, trunk.ca, and the socket factory.
type trunkNet struct {
	cert  tls.Certificate
	roots *x509.CertPool

	// listenPacket opens a trunk's UDP socket (net.ListenPacket); a test
	// hook, for sockets in another network namespace.
	listenPacket func(network, address string) (net.PacketConn, error)

	mu sync.Mutex // guards Proxy.trunks against a reload
}

func (n *trunkNet) packetConn(address string) (net.PacketConn, error) {
	if n.listenPacket != nil {
		return n.listenPacket("udp", address)
	}
	return net.ListenPacket("udp", address)
}

// loadTrunkNet loads trunk.cert, trunk.key and trunk.ca.
func (p *Proxy) loadTrunkNet(t TrunkEnd) error {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return fmt.Errorf("proxy: trunk.cert/trunk.key: %w", err)
	}
	roots, err := loadTrunkCA(t.CA)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	p.trunkNet.cert, p.trunkNet.roots = cert, roots
	return nil
}

// trunkList is the current trunks (a reload may replace some).
func (p *Proxy) trunkList() []*trunkCore {
	p.trunkNet.mu.Lock()
	defer p.trunkNet.mu.Unlock()
	return slices.Clone(p.trunks)
}

// trunkTransport opens a UDP socket and a QUIC transport on it; closing
// the transport closes the socket.
func (n *trunkNet) trunkTransport(address string) (*quic.Transport, error) {
	pc, err := n.packetConn(address)
	if err != nil {
		return nil, err
	}
	return &quic.Transport{Conn: withGRO(pc), ConnectionIDLength: 8}, nil
}

// withGRO returns pc reading with UDP_GRO where the kernel has it
// (internal/udpgro): quic-go then gets a train of the peer's GSO packets
// in one read rather than one kernel datagram each, which cut quic-go's
// CPU per GB by about a quarter at the receiving end (docs/trunk.md, "The
// quic-go floor"). Writes are unchanged (quic-go's GSO and ECN); pc
// itself where UDP_GRO is refused.
func withGRO(pc net.PacketConn) net.PacketConn {
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		return pc
	}
	g, err := udpgro.New(udp)
	if err != nil {
		return pc
	}
	return g
}

// closeTransport closes a transport of trunkTransport and its socket.
func closeTransport(tr *quic.Transport) {
	tr.Close()
	tr.Conn.Close()
}

// dial opens a QUIC connection to addr from a new socket, resuming the
// TLS session when tc's cache holds a ticket of that peer. It returns once
// the handshake has completed: the first request is not sent as 0-RTT
// data, because quic-go races when a stream is opened while the handshake
// is still running (quic-go issue 4303, open in v0.65: the client reads
// the peer's transport parameters unsynchronised). Resumption still saves
// the certificate signatures; a round trip is not saved. The socket is
// closed with the connection.
func (n *trunkNet) dial(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	tr, err := n.trunkTransport(":0")
	if err != nil {
		return nil, err
	}
	conn, err := tr.Dial(ctx, ua, tc, qc)
	if err != nil {
		closeTransport(tr)
		return nil, err
	}
	context.AfterFunc(conn.Context(), func() { closeTransport(tr) })
	return conn, nil
}

// dial returns the trunk's next connection: the core dials the edge, or,
// with dialer "edge", waits for the edge to dial in.
func (t *trunkCore) dial(ctx context.Context, l *trunkLink) (*quic.Conn, error) {
	if t.cfg.Dialer == TrunkDialerEdge {
		return l.inbox.wait(ctx)
	}
	dctx, cancel := context.WithTimeout(ctx, t.tmo.Camera)
	defer cancel()
	conn, err := t.p.trunkNet.dial(dctx, t.cfg.Address, t.tls, trunkQUICConfig(t.tmo))
	if err != nil {
		return nil, fmt.Errorf("dial edge %s: %w", t.cfg.Address, err)
	}
	return conn, nil
}

// connUp logs how the trunk's connection was set up (resumed or not).
func (t *trunkCore) connUp(conn *quic.Conn, i int) {
	cs := conn.ConnectionState()
	if cs.TLS.DidResume {
		t.resumed.Add(1)
	}
	t.log.Info("trunk connection", "connection", i, "remote", conn.RemoteAddr().String(), "resumed", cs.TLS.DidResume)
}

// backoff is the delay between the trunk's connections: the configured
// backoff when this proxy dials; none when it waits for the edge to dial
// in (the edge has its own backoff).
func (t *trunkCore) backoff() *backoff {
	if t.cfg.Dialer == TrunkDialerEdge {
		return newBackoff(0, 0, 0)
	}
	return newBackoff(t.tmo.BackoffMin, t.tmo.BackoffMax, t.tmo.AuthFailureBackoff)
}

// trunkDialer is an edge's connection to one core of trunk.dial: it dials
// with backoff and serves that core on the connection as it serves the
// cores that connect to trunk.listen.
type trunkDialer struct {
	e    *trunkEdge
	addr string
	tls  *tls.Config
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}

	dials atomic.Uint64
	links sync.WaitGroup // the extra connections' loops

	mu             sync.Mutex
	trunkConnState                      // connection 0's
	extra          []context.CancelFunc // connections 1.. the core asked for
	closing        bool                 // close was called: no connection loop starts
}

// TrunkDialStatus is one core of an edge's trunk.dial.
type TrunkDialStatus struct {
	Address   string    `json:"address"`
	State     string    `json:"state"` // connecting, up, down
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
	Dials     uint64    `json:"dials"` // connection attempts
}

func (d *trunkDialer) setState(s string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	d.set(s, msg)
}

// trunkConnState is a trunk connection's state (trunkConnecting, trunkUp,
// trunkDown), since when, and the last error seen; its owner's mutex
// guards it.
type trunkConnState struct {
	state   string
	since   time.Time
	lastErr string
}

func newTrunkConnState() trunkConnState {
	return trunkConnState{state: trunkConnecting, since: time.Now()}
}

// set moves to state s (since is kept when s is the current state) and
// keeps errMsg as the last error unless it is empty.
func (c *trunkConnState) set(s, errMsg string) {
	if c.state != s {
		c.since = time.Now()
	}
	c.state = s
	if errMsg != "" {
		c.lastErr = errMsg
	}
}

func (d *trunkDialer) status() TrunkDialStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return TrunkDialStatus{Address: d.addr, State: d.state, Since: d.since, LastError: d.lastErr, Dials: d.dials.Load()}
}

// dialStatus is the state of the edge's trunk.dial.
func (e *trunkEdge) dialStatus() []TrunkDialStatus {
	var out []TrunkDialStatus
	for _, d := range e.dialerList() {
		out = append(out, d.status())
	}
	return out
}

// dialerList is the current dialers (a reload may replace some).
func (e *trunkEdge) dialerList() []*trunkDialer {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.dialers)
}

func (e *trunkEdge) startDialer(n *trunkNet, addr string) *trunkDialer {
	log := e.log.With("core_address", addr)
	ctx, cancel := context.WithCancel(e.ctx)
	d := &trunkDialer{
		e: e, addr: addr, log: log, ctx: ctx, stop: cancel, done: make(chan struct{}),
		trunkConnState: newTrunkConnState(),
		tls:            trunkClientTLS(n.cert, trunkALPNEdge, nil, tls.NewLRUClientSessionCache(4), log, "core "+addr),
	}
	// The core is checked with the edge's current trunk.peers.
	d.tls.VerifyConnection = trunkVerifier(func(tls.ConnectionState) *trunkTrust { return e.coreTrust.Load() }, log, "core "+addr, &e.refused)
	go d.run(n)
	return d
}

func (d *trunkDialer) close() {
	d.mu.Lock()
	d.closing = true // (before links.Wait: setConnections adds no loop after it)
	d.mu.Unlock()
	d.stop()
	<-d.done
	d.links.Wait()
}

func (d *trunkDialer) run(n *trunkNet) {
	defer close(d.done)
	d.loop(d.ctx, n, 0)
}

// loop keeps connection i to the core up (0: the catalogue's, and the
// dialer's state) until ctx ends.
func (d *trunkDialer) loop(ctx context.Context, n *trunkNet, i int) {
	defer d.e.p.recoverTrunk("trunk dial loop", d.log)
	b := newBackoff(d.e.tmo.BackoffMin, d.e.tmo.BackoffMax, d.e.tmo.AuthFailureBackoff)
	retryLoop(ctx, b, func(ctx context.Context) (bool, error) { return d.connect(ctx, n, i) }, func(err error, wait time.Duration) {
		if i == 0 {
			d.setState(trunkDown, err)
		}
		d.log.Warn("connection to core down; dialing again", "connection", i, "error", err, "retry_in", wait.Round(time.Millisecond))
	})
}

// setConnections makes the dialer keep n connections to the core, as the
// core's catalogue request asked (its trunks[].connections).
func (d *trunkDialer) setConnections(n *trunkNet, want int) {
	want = max(1, min(want, maxTrunkConnections))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing || d.ctx.Err() != nil || want == len(d.extra)+1 {
		return
	}
	d.log.Info("the core asks for connections", "connections", want, "had", len(d.extra)+1)
	for len(d.extra)+1 > want {
		d.extra[len(d.extra)-1]()
		d.extra = d.extra[:len(d.extra)-1]
	}
	for i := len(d.extra) + 1; i < want; i++ {
		ctx, cancel := context.WithCancel(d.ctx)
		d.extra = append(d.extra, cancel)
		d.links.Go(func() { d.loop(ctx, n, i) })
	}
}

// connect dials the core and serves it on connection i until the
// connection ends.
func (d *trunkDialer) connect(ctx context.Context, n *trunkNet, i int) (healthy bool, err error) {
	d.dials.Add(1)
	if i == 0 {
		d.setState(trunkConnecting, nil)
	}
	dctx, cancel := context.WithTimeout(ctx, d.e.tmo.Camera)
	conn, err := n.dial(dctx, d.addr, d.tls, trunkQUICConfig(d.e.tmo))
	cancel()
	if err != nil {
		return false, fmt.Errorf("dial core %s: %w", d.addr, err)
	}
	if err := sendHello(conn, i); err != nil {
		conn.CloseWithError(0, "")
		return false, fmt.Errorf("core %s: hello: %w", d.addr, err)
	}
	cs := conn.ConnectionState()
	d.log.Info("connected to core", "connection", i, "remote", conn.RemoteAddr().String(), "resumed", cs.TLS.DidResume)
	if i == 0 {
		d.setState(trunkUp, nil)
	}
	up := time.Now()
	stop := context.AfterFunc(ctx, func() { conn.CloseWithError(0, "edge shutting down") })
	defer stop()
	var setConns func(int)
	if i == 0 {
		setConns = func(want int) { d.setConnections(n, want) }
	}
	d.e.handleConn(conn, setConns)
	err = context.Cause(conn.Context())
	if err == nil {
		err = errors.New("closed")
	}
	return time.Since(up) >= healthySession, fmt.Errorf("connection %d to core %s lost: %w", i, d.addr, err)
}

package proxy

import (
	"bytes"
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
	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/internal/config"
)

// TrunkDialer says which end of a trunk opens the QUIC connection.
type TrunkDialer string

// Trunk dialers.
const (
	TrunkDialerCore TrunkDialer = "core" // the core dials the edge's trunk.listen (the default)
	TrunkDialerEdge TrunkDialer = "edge" // the edge dials the core's trunk.listen (edges behind NAT)
)

// UnmarshalYAML validates the value.
func (d *TrunkDialer) UnmarshalYAML(n *yaml.Node) error {
	return config.OneOf(n, "dialer", d, TrunkDialerCore, TrunkDialerEdge)
}

// trunkUsed reports whether this proxy is an end of any trunk.
func (c *Config) trunkUsed() bool {
	return c.Trunk.Listen != "" || len(c.Trunk.Dial) > 0 || len(c.Trunks) > 0
}

// edgeDials reports whether some trunk has the edge dialing this proxy.
func (c *Config) edgeDials() bool {
	return slices.ContainsFunc(c.Trunks, func(t Trunk) bool { return t.Dialer == TrunkDialerEdge })
}

// checkTrunkEnd checks trunk: (this proxy's end).
func (c *Config) checkTrunkEnd(add addFunc) {
	t := c.Trunk
	serves := t.Listen != "" || len(t.Dial) > 0
	switch {
	case len(t.Peers) > 0 && !serves:
		add("trunk.peers", "trunk.peers is set but trunk.listen and trunk.dial are not; peers are the cores this edge serves (through trunk.listen or trunk.dial)")
	case len(t.Peers) == 0 && len(t.Dial) > 0:
		add("trunk.peers", "trunk.peers: none configured, so the cores of trunk.dial would be refused; add the fingerprint `cordon trunk keygen` printed on each core")
	case len(t.Peers) == 0 && t.Listen != "" && !c.edgeDials():
		add("trunk.peers", "trunk.peers: none configured, so no core could connect; add the fingerprint `cordon trunk keygen` printed on each core")
	}
	for i, p := range t.Peers {
		_, err := parseTrunkFingerprint(p)
		switch {
		case err == nil:
		case t.CA == "":
			add(fmt.Sprintf("trunk.peers[%d]", i), "trunk.peers[%d]: %v", i, err)
		case !nameRE.MatchString(p):
			add(fmt.Sprintf("trunk.peers[%d]", i), "trunk.peers[%d]: %q is neither a fingerprint nor a certificate name (letters, digits, '.', '_' and '-') for trunk.ca to check", i, p)
		}
	}
	for i, a := range t.Dial {
		key := fmt.Sprintf("trunk.dial[%d]", i)
		if _, _, err := net.SplitHostPort(a); err != nil {
			add(key, "%s: %q: want a core's trunk.listen as host:port", key, a)
		} else if j := slices.Index(t.Dial, a); j < i {
			add(key, "%s: %q is already trunk.dial[%d]", key, a, j)
		}
	}
	if c.trunkUsed() && (t.Cert == "" || t.Key == "") {
		add("trunk.cert", "trunk.cert and trunk.key are required with trunk.listen or trunks (make them with: cordon trunk keygen -o DIR)")
	}
}

// checkTrunkPeer checks how trunks[i] reaches its edge and knows it.
func (c *Config) checkTrunkPeer(add addFunc, key, where string, tr Trunk) {
	switch tr.Dialer {
	case TrunkDialerEdge:
		if tr.Address != "" {
			add(key+".address", "%s: address %q is not used with dialer \"edge\" (the edge dials this proxy's trunk.listen); remove it", where, tr.Address)
		}
		if c.Trunk.Listen == "" {
			add(key+".dialer", "%s: dialer \"edge\" needs trunk.listen on this proxy: the address the edge dials (its trunk.dial)", where)
		}
		for j, o := range c.Trunks {
			if o.Name == tr.Name {
				break
			}
			if o.Dialer == TrunkDialerEdge && trunkTrustOf(o, nil).sameIdentity(trunkTrustOf(tr, nil)) {
				add(key+".fingerprint", "%s: trunks[%d] (%s) has the same edge certificate; an edge that dials in could not be told apart", where, j, o.Name)
			}
		}
	default:
		if _, _, err := net.SplitHostPort(tr.Address); err != nil {
			add(key+".address", "%s: address %q: want the edge's trunk.listen as host:port", where, tr.Address)
		}
	}
	switch {
	case tr.Fingerprint == "" && c.Trunk.CA == "":
		add(key+".fingerprint", "%s: fingerprint is missing: paste the edge's (`cordon trunk keygen` printed it on the edge), or set trunk.ca", where)
	case tr.Fingerprint != "":
		if _, err := parseTrunkFingerprint(tr.Fingerprint); err != nil {
			add(key+".fingerprint", "%s: %v", where, err)
		}
		if tr.PeerName != "" {
			add(key+".peer_name", "%s: peer_name is checked only without a fingerprint (the edge's certificate issued by trunk.ca); remove one of them", where)
		}
	case tr.PeerName != "" && !nameRE.MatchString(tr.PeerName):
		add(key+".peer_name", "%s: peer_name %q is not a certificate name (letters, digits, '.', '_' and '-')", where, tr.PeerName)
	}
}

// sameIdentity reports whether two trunks' edges would present the same
// certificate (same pin or same name).
func (tr *trunkTrust) sameIdentity(o *trunkTrust) bool {
	for _, p := range tr.pins {
		if slices.Contains(o.pins, p) {
			return true
		}
	}
	for _, n := range tr.names {
		if slices.Contains(o.names, n) {
			return true
		}
	}
	return false
}

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
	return &quic.Transport{Conn: pc, ConnectionIDLength: 8}, nil
}

// closeTransport closes a transport of trunkTransport and its socket.
func closeTransport(tr *quic.Transport) {
	tr.Close()
	tr.Conn.Close()
}

// dialEarly opens a QUIC connection to addr from a new socket, with 0-RTT
// when tc's session cache holds a ticket of that peer. The socket is
// closed with the connection.
func (n *trunkNet) dialEarly(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	tr, err := n.trunkTransport(":0")
	if err != nil {
		return nil, err
	}
	conn, err := tr.DialEarly(ctx, ua, tc, qc)
	if err != nil {
		closeTransport(tr)
		return nil, err
	}
	context.AfterFunc(conn.Context(), func() { closeTransport(tr) })
	return conn, nil
}

// trunkListenQUICConfig is the QUIC configuration of trunk.listen: 0-RTT
// accepted (the streams it opens are answered only once the handshake
// has completed, so a replayed 0-RTT request gets nothing).
func trunkListenQUICConfig(tmo Timeouts) *quic.Config {
	qc := trunkQUICConfig(tmo)
	qc.Allow0RTT = true
	return qc
}

// dial returns the trunk's next connection: the core dials the edge, or,
// with dialer "edge", waits for the edge to dial in.
func (t *trunkCore) dial(ctx context.Context) (*quic.Conn, error) {
	if t.cfg.Dialer == TrunkDialerEdge {
		return t.inbox.wait(ctx)
	}
	dctx, cancel := context.WithTimeout(ctx, t.tmo.Camera)
	defer cancel()
	conn, err := t.p.trunkNet.dialEarly(dctx, t.cfg.Address, t.tls, trunkQUICConfig(t.tmo))
	if err != nil {
		return nil, fmt.Errorf("dial edge %s: %w", t.cfg.Address, err)
	}
	return conn, nil
}

// connUp logs how the trunk's connection was set up (resumed, 0-RTT).
func (t *trunkCore) connUp(conn *quic.Conn) {
	select {
	case <-conn.HandshakeComplete():
	case <-conn.Context().Done():
		return
	}
	cs := conn.ConnectionState()
	if cs.TLS.DidResume {
		t.resumed.Add(1)
	}
	t.log.Info("trunk connection", "remote", conn.RemoteAddr().String(), "resumed", cs.TLS.DidResume, "used_0rtt", cs.Used0RTT)
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

// trunkInbox hands a connection an edge dialed in to its trunk: the
// newest wins (an edge whose address changed beyond what QUIC migration
// covers dials again, and its old connection is closed).
type trunkInbox struct {
	mu      sync.Mutex
	pending *quic.Conn
	current *quic.Conn
	closed  bool          // the trunk is going away: connections offered now are closed
	ready   chan struct{} // 1-buffered: a connection is pending
}

func newTrunkInbox() *trunkInbox { return &trunkInbox{ready: make(chan struct{}, 1)} }

// offer gives conn to the trunk, closing what it replaces.
func (in *trunkInbox) offer(conn *quic.Conn) {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		conn.CloseWithError(0, "trunk removed")
		return
	}
	old, cur := in.pending, in.current
	in.pending = conn
	in.mu.Unlock()
	for _, c := range []*quic.Conn{old, cur} {
		if c != nil {
			c.CloseWithError(0, "replaced by a newer connection from the edge")
		}
	}
	select {
	case in.ready <- struct{}{}:
	default:
	}
}

// wait returns the next connection the edge dialed in.
func (in *trunkInbox) wait(ctx context.Context) (*quic.Conn, error) {
	for {
		in.mu.Lock()
		c := in.pending
		in.pending, in.current = nil, c
		in.mu.Unlock()
		if c != nil && c.Context().Err() == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-in.ready:
		}
	}
}

// close closes a pending connection (the trunk is going away).
func (in *trunkInbox) close() {
	in.mu.Lock()
	c := in.pending
	in.pending, in.closed = nil, true
	in.mu.Unlock()
	if c != nil {
		c.CloseWithError(0, "trunk removed")
	}
}

// serverTLS is the TLS configuration of trunk.listen: cores (trunkALPN)
// are checked against trunk.peers, edges that dial in (trunkALPNEdge)
// against the trunks with dialer "edge"; both lists are read at each
// handshake, so that a reload applies to the next one.
func (e *trunkEdge) serverTLS(cert tls.Certificate) *tls.Config {
	base := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{trunkALPN, trunkALPNEdge},
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAnyClientCert,
	}
	trust := func(cs tls.ConnectionState) *trunkTrust {
		if cs.NegotiatedProtocol == trunkALPNEdge {
			return e.edgeTrust.Load()
		}
		return e.coreTrust.Load()
	}
	base.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		// The same configuration, with the peer's address in the log of
		// a refusal (quic-go gives the hello a Conn with the addresses).
		who := "peer"
		if hi.Conn != nil {
			who = hi.Conn.RemoteAddr().String()
		}
		c := base.Clone()
		c.GetConfigForClient = nil
		c.VerifyConnection = trunkVerifier(trust, e.log, who, &e.refused)
		c.WrapSession, c.UnwrapSession = ticketPeer(c, trust, e.log, who)
		return c, nil
	}
	return base
}

// ticketPeerPrefix marks the peer's certificate in a session ticket's
// Extra (quic-go keeps its own entry there, with its own prefix).
const ticketPeerPrefix = "cordon-trunk-peer:"

// ticketPeer returns WrapSession and UnwrapSession functions for c: a
// session ticket carries the peer's certificate, and a ticket whose peer
// the current trust no longer accepts (a reload removed it) is not
// resumed: the peer gets a full handshake, and VerifyConnection refuses
// it. This check runs when the ClientHello arrives, before any 0-RTT data
// is read, which is what lets accepted serve a 0-RTT request at once.
func ticketPeer(c *tls.Config, trust func(tls.ConnectionState) *trunkTrust, log *slog.Logger, who string) (
	func(tls.ConnectionState, *tls.SessionState) ([]byte, error),
	func([]byte, tls.ConnectionState) (*tls.SessionState, error),
) {
	wrap := func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if len(cs.PeerCertificates) > 0 {
			ss.Extra = append(ss.Extra, append([]byte(ticketPeerPrefix), cs.PeerCertificates[0].Raw...))
		}
		return c.EncryptTicket(cs, ss)
	}
	unwrap := func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := c.DecryptTicket(identity, cs)
		if ss == nil || err != nil {
			return ss, err
		}
		for _, x := range ss.Extra {
			if der, ok := bytes.CutPrefix(x, []byte(ticketPeerPrefix)); ok {
				leaf, err := x509.ParseCertificate(der)
				if err == nil && trust(cs).check([]*x509.Certificate{leaf}) == nil {
					return ss, nil
				}
				log.Info("session ticket of a peer no longer trusted: full handshake", "peer", who)
				return nil, nil
			}
		}
		return nil, nil // a ticket without its peer: not resumed
	}
	return wrap, unwrap
}

// setTrust sets whom trunk.listen and trunk.dial accept, and closes the
// connections of cores no longer accepted.
func (e *trunkEdge) setTrust(cfg Config, roots *x509.CertPool) {
	e.coreTrust.Store(peersTrust(cfg.Trunk, roots))
	e.edgeTrust.Store(edgesTrust(cfg.Trunks, roots))
	e.mu.Lock()
	defer e.mu.Unlock()
	for conn, peer := range e.peers {
		if e.coreTrust.Load().check(conn.ConnectionState().TLS.PeerCertificates) != nil {
			e.log.Warn("core no longer in trunk.peers; disconnected", "core", peer.fingerprint)
			conn.CloseWithError(0, "no longer a peer of this edge")
		}
	}
}

// listen opens trunk.listen (0-RTT allowed).
func (e *trunkEdge) listen(n *trunkNet, addr string, tc *tls.Config) error {
	tr, err := n.trunkTransport(addr)
	if err != nil {
		return err
	}
	ln, err := tr.ListenEarly(tc, trunkListenQUICConfig(e.tmo))
	if err != nil {
		closeTransport(tr)
		return err
	}
	e.ln, e.lnTr = ln, tr
	return nil
}

// accepted handles a connection to trunk.listen once its handshake has
// completed: a core that reads (served here), or an edge that dialed in
// (handed to its trunk). A core whose 0-RTT data was accepted is served at
// once: its session ticket's peer was checked against trunk.peers when
// the ClientHello arrived (ticketPeer), and a replayed 0-RTT request gets
// an answer only the holder of the handshake's keys can read.
func (e *trunkEdge) accepted(conn *quic.Conn) {
	if cs := conn.ConnectionState(); cs.Used0RTT && cs.TLS.NegotiatedProtocol == trunkALPN && len(cs.TLS.PeerCertificates) > 0 {
		e.handleConn(conn)
		return
	}
	select {
	case <-conn.HandshakeComplete():
	case <-conn.Context().Done():
		return
	case <-e.ctx.Done():
		conn.CloseWithError(0, "shutting down")
		return
	}
	if conn.ConnectionState().TLS.NegotiatedProtocol == trunkALPNEdge {
		e.p.acceptEdgeConn(conn, e.log)
		return
	}
	e.handleConn(conn)
}

// acceptEdgeConn hands a connection an edge dialed in to the trunk whose
// edge it is.
func (p *Proxy) acceptEdgeConn(conn *quic.Conn, log *slog.Logger) {
	certs := conn.ConnectionState().TLS.PeerCertificates
	for _, t := range p.trunkList() {
		if t.cfg.Dialer == TrunkDialerEdge && trunkTrustOf(t.cfg, p.trunkNet.roots).check(certs) == nil {
			t.log.Info("edge dialed in", "remote", conn.RemoteAddr().String())
			t.inbox.offer(conn)
			return
		}
	}
	log.Warn("an edge dialed in but no trunk takes it (removed by a reload?)", "remote", conn.RemoteAddr().String())
	conn.CloseWithError(0, "no trunk for this edge")
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

	mu      sync.Mutex
	state   string // trunkConnecting, trunkUp, trunkDown
	since   time.Time
	lastErr string
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
	if d.state != s {
		d.since = time.Now()
	}
	d.state = s
	if err != nil {
		d.lastErr = err.Error()
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
		state: trunkConnecting, since: time.Now(),
		tls: trunkClientTLS(n.cert, trunkALPNEdge, nil, tls.NewLRUClientSessionCache(4), log, "core "+addr),
	}
	// The core is checked with the edge's current trunk.peers.
	d.tls.VerifyConnection = trunkVerifier(func(tls.ConnectionState) *trunkTrust { return e.coreTrust.Load() }, log, "core "+addr, &e.refused)
	go d.run(n)
	return d
}

func (d *trunkDialer) close() {
	d.stop()
	<-d.done
}

func (d *trunkDialer) run(n *trunkNet) {
	defer close(d.done)
	defer d.e.p.recoverTrunk("trunk dial loop", d.log)
	b := newBackoff(d.e.tmo.BackoffMin, d.e.tmo.BackoffMax, d.e.tmo.AuthFailureBackoff)
	retryLoop(d.ctx, b, func(ctx context.Context) (bool, error) { return d.connect(ctx, n) }, func(err error, wait time.Duration) {
		d.setState(trunkDown, err)
		d.log.Warn("connection to core down; dialing again", "error", err, "retry_in", wait.Round(time.Millisecond))
	})
}

// connect dials the core and serves it until the connection ends.
func (d *trunkDialer) connect(ctx context.Context, n *trunkNet) (healthy bool, err error) {
	d.dials.Add(1)
	d.setState(trunkConnecting, nil)
	dctx, cancel := context.WithTimeout(ctx, d.e.tmo.Camera)
	conn, err := n.dialEarly(dctx, d.addr, d.tls, trunkQUICConfig(d.e.tmo))
	if err == nil {
		select {
		case <-conn.HandshakeComplete():
		case <-dctx.Done():
		}
		if err = context.Cause(conn.Context()); err == nil && dctx.Err() != nil {
			err = dctx.Err()
		}
	}
	cancel()
	if err != nil {
		if conn != nil {
			conn.CloseWithError(0, "")
		}
		return false, fmt.Errorf("dial core %s: %w", d.addr, err)
	}
	cs := conn.ConnectionState()
	d.log.Info("connected to core", "remote", conn.RemoteAddr().String(), "resumed", cs.TLS.DidResume)
	d.setState(trunkUp, nil)
	up := time.Now()
	stop := context.AfterFunc(ctx, func() { conn.CloseWithError(0, "edge shutting down") })
	defer stop()
	d.e.handleConn(conn)
	err = context.Cause(conn.Context())
	if err == nil {
		err = errors.New("closed")
	}
	return time.Since(up) >= healthySession, fmt.Errorf("connection to core %s lost: %w", d.addr, err)
}

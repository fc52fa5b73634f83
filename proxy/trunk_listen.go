package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

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
// it (with its fingerprint in the log), rather than a resumed session
// that crypto/tls would only check at the end of the handshake.
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

// listen opens trunk.listen.
func (e *trunkEdge) listen(n *trunkNet, addr string, tc *tls.Config) error {
	tr, err := n.trunkTransport(addr)
	if err != nil {
		return err
	}
	ln, err := tr.Listen(tc, trunkQUICConfig(e.tmo))
	if err != nil {
		closeTransport(tr)
		return err
	}
	e.ln, e.lnTr = ln, tr
	return nil
}

// accepted handles a connection to trunk.listen (its handshake has
// completed): a core that reads (served here), or an edge that dialed in
// (handed to its trunk).
func (e *trunkEdge) accepted(conn *quic.Conn) {
	if conn.ConnectionState().TLS.NegotiatedProtocol == trunkALPNEdge {
		e.p.acceptEdgeConn(conn, e.log)
		return
	}
	e.handleConn(conn, nil)
}

// acceptEdgeConn hands a connection an edge dialed in to the trunk whose
// edge it is, in the slot the edge's hello names.
func (p *Proxy) acceptEdgeConn(conn *quic.Conn, log *slog.Logger) {
	certs := conn.ConnectionState().TLS.PeerCertificates
	for _, t := range p.trunkList() {
		if t.cfg.Dialer == TrunkDialerEdge && trunkTrustOf(t.cfg, p.trunkNet.roots).check(certs) == nil {
			i := readHello(conn, t.tmo.Camera)
			l := t.link(i)
			if l == nil {
				t.log.Warn("an edge dialed in for a connection this trunk does not have; closed", "remote", conn.RemoteAddr().String(), "connection", i)
				conn.CloseWithError(0, "no such connection of this trunk")
				return
			}
			t.log.Info("edge dialed in", "remote", conn.RemoteAddr().String(), "connection", i)
			l.inbox.offer(conn)
			return
		}
	}
	log.Warn("an edge dialed in but no trunk takes it (removed by a reload?)", "remote", conn.RemoteAddr().String())
	conn.CloseWithError(0, "no trunk for this edge")
}

// readHello reads which connection of its trunk an edge dialed in for
// (the hello on the first unidirectional stream it opens); an edge that
// sends none within d is taken as connection 0.
func readHello(conn *quic.Conn, d time.Duration) int {
	ctx, cancel := context.WithTimeout(conn.Context(), d)
	defer cancel()
	st, err := conn.AcceptUniStream(ctx)
	if err != nil {
		return 0
	}
	defer st.CancelRead(0)
	st.SetReadDeadline(time.Now().Add(d))
	var req trunkRequest
	if err := readJSONFrame(st, maxTrunkRequest, &req); err != nil || req.Op != trunkOpHello {
		return -1
	}
	return req.Connection
}

// sendHello tells the core which connection of the trunk conn is (an
// edge that dials).
func sendHello(conn *quic.Conn, i int) error {
	st, err := conn.OpenUniStream()
	if err != nil {
		return err
	}
	st.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := writeJSONFrame(st, trunkRequest{Op: trunkOpHello, Connection: i}); err != nil {
		return err
	}
	return st.Close()
}

package proxy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// A trunk is several QUIC connections (trunks[].connections): one QUIC
// connection has one congestion controller, and over a lossy WAN one
// controller carries far less than as many TCP connections (one per
// camera) do (docs/trunk.md, Measured). Each camera is assigned to a
// connection when the core creates it and stays on it for the trunk's
// lifetime: a new connection while the trunk has fewer than it may have,
// else the connections in turn (the cameras spread evenly). Connection 0
// always exists and carries the catalogue. Each connection is dialed,
// authenticated, kept alive, resumed and migrated on its own; one that
// drops stalls only its cameras, which wait for it to come back.

// maxTrunkConnections bounds trunks[].connections, and is the default:
// one connection per camera (each with its own congestion controller,
// as RTSP/TCP gives each camera its own TCP connection) up to 128 (the
// issue's trunk of 100 cameras over a lossy WAN), then the cameras share
// them in turn. It bounds the sockets and handshakes of one trunk.
const maxTrunkConnections = 128

// connections is the most QUIC connections the trunk opens.
func (tr *Trunk) connections() int {
	if tr.Connections <= 0 {
		return maxTrunkConnections
	}
	return min(tr.Connections, maxTrunkConnections)
}

// trunkLink is one of a trunk's QUIC connections (its slot: the
// connection is replaced at each reconnect).
type trunkLink struct {
	t     *trunkCore
	i     int
	inbox *trunkInbox // dialer "edge": connections the edge dialed in for this slot

	reconnects atomic.Uint64
	cameras    atomic.Int64 // cameras assigned to it
	demux      trunkLinkDemux

	mu     sync.Mutex
	conn   *quic.Conn
	connCh chan struct{} // closed while conn is set
	trunkConnState
	resumed bool // the current connection resumed a TLS session
}

func newTrunkLink(t *trunkCore, i int) *trunkLink {
	return &trunkLink{t: t, i: i, inbox: newTrunkInbox(), connCh: make(chan struct{}), trunkConnState: newTrunkConnState()}
}

// run keeps the connection up until the trunk closes.
func (l *trunkLink) run() {
	t := l.t
	defer t.p.recoverTrunk("trunk connection loop", t.log)
	retryLoop(t.ctx, t.backoff(), l.connect, func(err error, wait time.Duration) {
		l.reconnects.Add(1)
		t.reconnects.Add(1)
		l.setState(trunkDown, err.Error())
		t.log.Warn("trunk down; reconnecting", "connection", l.i, "error", err, "retry_in", wait.Round(time.Millisecond))
	})
}

func (l *trunkLink) setState(s, errMsg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set(s, errMsg)
}

// connect dials the edge (connection 0 reads its catalogue) and holds
// the connection until it ends.
func (l *trunkLink) connect(ctx context.Context) (healthy bool, err error) {
	t := l.t
	l.setState(trunkConnecting, "")
	conn, err := t.dial(ctx, l)
	if err != nil {
		return false, err
	}
	defer conn.CloseWithError(0, "")
	if l.i == 0 {
		if err := t.catalogueUp(ctx, conn); err != nil {
			return false, err
		}
	}
	t.connUp(conn, l.i)
	l.mu.Lock()
	l.conn, l.state, l.since = conn, trunkUp, time.Now()
	l.resumed = conn.ConnectionState().TLS.DidResume
	close(l.connCh)
	l.mu.Unlock()
	up := time.Now()
	select {
	case <-ctx.Done():
	case <-conn.Context().Done():
	}
	l.mu.Lock()
	l.conn, l.connCh = nil, make(chan struct{})
	l.mu.Unlock()
	return time.Since(up) >= healthySession, fmt.Errorf("trunk connection %d lost: %w", l.i, context.Cause(conn.Context()))
}

// catalogueUp reads the edge's catalogue on connection 0 and adds the
// cameras of a "*" trunk; an edge that dials is told how many
// connections to open once they are assigned.
func (t *trunkCore) catalogueUp(ctx context.Context, conn *quic.Conn) error {
	cat, err := t.catalogue(ctx, conn)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(cat))
	for _, c := range cat {
		names = append(names, c.Name)
	}
	t.addCameras(names)
	t.mu.Lock()
	t.remote = names
	n := len(t.links)
	t.mu.Unlock()
	if t.cfg.Dialer == TrunkDialerEdge && n > 1 {
		if err := t.request(ctx, conn, trunkRequest{Op: trunkOpConnections, Connections: n}); err != nil {
			return fmt.Errorf("connections: %w", err)
		}
	}
	t.log.Info("trunk up", "address", t.cfg.Address, "edge_cameras", len(names), "connections", n)
	return nil
}

// current is the link's connection, nil while it is down.
func (l *trunkLink) current() *quic.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn
}

// waitConn returns the link's connection, waiting up to d for it.
func (l *trunkLink) waitConn(ctx context.Context, d time.Duration) (*quic.Conn, error) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		l.mu.Lock()
		conn, ch := l.conn, l.connCh
		l.mu.Unlock()
		if conn != nil {
			return conn, nil
		}
		select {
		case <-ch:
		case <-tm.C:
			return nil, fmt.Errorf("trunk %s is down (connection %d)", l.t.cfg.Name, l.i)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// linkFor assigns camera name (of the edge) to a connection, or returns
// the one it has: the first camera to connection 0, each next one to a
// new connection (started at once when the trunk runs) while there are
// fewer than trunks[].connections, then the connections in turn.
func (t *trunkCore) linkFor(name string) *trunkLink {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.assigned[name]; ok {
		return l
	}
	var l *trunkLink
	switch {
	case len(t.assigned) == 0:
		l = t.links[0]
	case len(t.links) < t.cfg.connections() && !t.closing:
		l = newTrunkLink(t, len(t.links))
		t.links = append(t.links, l)
		if t.running {
			t.wg.Go(l.run)
		}
	default:
		l = t.links[t.nextLink%len(t.links)]
		t.nextLink++
	}
	t.assigned[name] = l
	l.cameras.Add(1)
	return l
}

// linkList is the trunk's connections (linkFor adds some).
func (t *trunkCore) linkList() []*trunkLink {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.links)
}

// link is connection i, nil when the trunk has none such.
func (t *trunkCore) link(i int) *trunkLink {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i < 0 || i >= len(t.links) {
		return nil
	}
	return t.links[i]
}

// TrunkConnectionStatus is one QUIC connection of a trunk in /v1/trunks.
type TrunkConnectionStatus struct {
	State      string        `json:"state"`
	Since      time.Time     `json:"since"`
	LastError  string        `json:"last_error,omitempty"`
	Remote     string        `json:"remote,omitempty"`
	Reconnects uint64        `json:"reconnects"`
	Cameras    int64         `json:"cameras"` // assigned to this connection
	Resumed    bool          `json:"resumed"` // the current connection resumed a TLS session
	RTT        time.Duration `json:"rtt_ns"`
	// BytesReceived and PacketsLost are quic-go's statistics of the
	// current connection.
	BytesReceived uint64 `json:"bytes_received"`
	PacketsLost   uint64 `json:"packets_lost"`
}

func (l *trunkLink) status() TrunkConnectionStatus {
	l.mu.Lock()
	s := TrunkConnectionStatus{State: l.state, Since: l.since, LastError: l.lastErr}
	conn := l.conn
	s.Resumed = conn != nil && l.resumed
	l.mu.Unlock()
	s.Reconnects, s.Cameras = l.reconnects.Load(), l.cameras.Load()
	if conn != nil {
		st := conn.ConnectionStats()
		s.Remote = conn.RemoteAddr().String()
		s.RTT, s.BytesReceived, s.PacketsLost = st.SmoothedRTT, st.BytesReceived, st.PacketsLost
	}
	return s
}

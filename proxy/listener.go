package proxy

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// guardedListener is a core-side RTSP/RTSPS listener that readers cannot
// take down:
//
//   - Every accepted connection gets a read deadline at once, so a client
//     that connects and sends nothing (or less than a request) is closed
//     after firstRead. gortsplib sets its own deadlines only once it has
//     read four bytes (to tell RTSP from HTTP tunnelling) or finished the
//     TLS handshake.
//   - Connections are capped in total and per source address; the excess is
//     closed at once, counted and logged.
//   - An Accept error (EMFILE, ENFILE, ECONNABORTED...) does not end the
//     listener: it is logged and counted, Accept is retried after a delay
//     doubling from 5 ms to 1 s (as net/http's Server does), and /healthz
//     reports the listener as failing until an Accept succeeds again.
//     gortsplib's server stops for good on the first Accept error, so the
//     port would otherwise refuse every reader while the proxy looked fine.
type guardedListener struct {
	net.Listener
	name      string // "rtsp" or "rtsps", for logs and /healthz
	log       *slog.Logger
	firstRead time.Duration
	maxConns  int
	maxPerIP  int
	stats     *listenerStats

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int

	done      chan struct{}
	closeOnce sync.Once
	lastLog   time.Time // of an Accept error or a refused connection (rate limit), guarded by mu
	after     func(time.Duration) <-chan time.Time
}

// listenerStats are a listener's counters, read by /metrics and /healthz.
type listenerStats struct {
	acceptErrors      atomic.Uint64
	refusedTotal      atomic.Uint64 // over max_connections
	refusedPerSource  atomic.Uint64 // over max_connections_per_source
	open              atomic.Int64
	failing           atomic.Pointer[string] // the last Accept error, until an Accept succeeds
	stopped           atomic.Pointer[string] // why the RTSP server stopped; nil while it runs
	acceptErrorsSince atomic.Int64           // unix nanoseconds of the first error of the current run
	lastAcceptError   atomic.Int64           // unix nanoseconds
}

// failingNow returns the Accept error of a listener that is failing now:
// the last Accept failed less than two retry delays ago. (A listener that
// recovered but has no connection to accept yet stays in Accept, so the
// error is not cleared by a success.)
func (st *listenerStats) failingNow(now time.Time) (msg string, since time.Duration, ok bool) {
	m := st.failing.Load()
	if m == nil || now.Sub(time.Unix(0, st.lastAcceptError.Load())) > 2*acceptDelayMax {
		return "", 0, false
	}
	return *m, now.Sub(time.Unix(0, st.acceptErrorsSince.Load())), true
}

func newGuardedListener(ln net.Listener, name string, log *slog.Logger, firstRead time.Duration, l Limits, st *listenerStats) *guardedListener {
	return &guardedListener{
		Listener: ln, name: name, log: log, firstRead: firstRead,
		maxConns: l.MaxConnections, maxPerIP: l.MaxConnectionsPerSource, stats: st,
		perIP: map[netip.Addr]int{}, done: make(chan struct{}), after: time.After,
	}
}

// Close closes the listener; a pending Accept returns net.ErrClosed.
func (l *guardedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// logLimited logs at most once a second (floods are what it reports).
func (l *guardedListener) logLimited(msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	ok := now.Sub(l.lastLog) >= time.Second
	if ok {
		l.lastLog = now
	}
	l.mu.Unlock()
	if ok {
		l.log.Warn(msg, args...)
	}
}

const (
	acceptDelayMin = 5 * time.Millisecond
	acceptDelayMax = time.Second
)

// Accept returns the next connection within the limits. It returns an error
// only once the listener is closed.
func (l *guardedListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.done:
				return nil, err
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			delay = min(max(2*delay, acceptDelayMin), acceptDelayMax)
			l.stats.acceptErrors.Add(1)
			msg := err.Error()
			now := time.Now().UnixNano()
			if l.stats.failing.Swap(&msg) == nil {
				l.stats.acceptErrorsSince.Store(now)
			}
			l.stats.lastAcceptError.Store(now)
			l.logLimited("reader listener: accept failed; retrying", "listener", l.name, "error", err,
				"retry_in", delay, "fd_exhausted", errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE),
				"open_connections", l.stats.open.Load())
			select {
			case <-l.after(delay):
			case <-l.done:
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if l.stats.failing.Swap(nil) != nil {
			l.log.Info("reader listener: accepting again", "listener", l.name)
		}
		if gc := l.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// admit applies the connection caps and the first-read deadline. It returns
// nil (and closes c) when c is over a cap.
func (l *guardedListener) admit(c net.Conn) net.Conn {
	ip := netip.Addr{}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	}
	l.mu.Lock()
	var reason string
	switch {
	case l.total >= l.maxConns:
		reason = "max_connections"
		l.stats.refusedTotal.Add(1)
	case l.perIP[ip] >= l.maxPerIP:
		reason = "max_connections_per_source"
		l.stats.refusedPerSource.Add(1)
	default:
		l.total++
		l.perIP[ip]++
	}
	l.mu.Unlock()
	if reason != "" {
		c.Close()
		l.logLimited("reader connection refused: too many connections", "listener", l.name, "remote", c.RemoteAddr().String(),
			"limit", reason, "max_connections", l.maxConns, "max_connections_per_source", l.maxPerIP)
		return nil
	}
	l.stats.open.Add(1)
	c.SetReadDeadline(time.Now().Add(l.firstRead))
	return &guardedConn{Conn: c, release: func() { l.release(ip) }}
}

func (l *guardedListener) release(ip netip.Addr) {
	l.mu.Lock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
	l.stats.open.Add(-1)
}

// guardedConn gives its slot back when closed.
type guardedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn exposes the socket for the non-blocking fast paths.
func (c *guardedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

var _ syscall.Conn = (*guardedConn)(nil)

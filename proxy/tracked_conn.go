package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// trackedListener wraps the core-side RTSP listener so that each connection
// is a trackedConn.
type trackedListener struct{ net.Listener }

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newTrackedConn(c), nil
}

func newTrackedConn(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c}
	if rc := fastRawConn(c); rc != nil {
		tc.raw = newRawWriter(rc)
	}
	return tc
}

// trackedConn serialises gortsplib's writes (responses, RTCP) with batched
// media writes, and tells a reader's writer when its PLAY response is out.
type trackedConn struct {
	net.Conn
	mu       sync.Mutex
	armed    bool
	playSent chan struct{}

	raw *rawWriter // nil: no non-blocking fast path
}

// Write is gortsplib's path: responses and interleaved RTCP.
func (c *trackedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.Conn.Write(b)
	if c.armed {
		// The conn goroutine is answering PLAY: this write was that answer.
		c.armed = false
		close(c.playSent)
	}
	return n, err
}

// armPlay returns a channel closed after gortsplib's next write on this
// connection, which is the PLAY response being prepared.
func (c *trackedConn) armPlay() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.playSent = make(chan struct{})
	c.armed = true
	return c.playSent
}

// tryWriteBatch writes as much of b as the socket takes at once, without
// blocking. It returns ok false, and writes nothing, when the connection is
// busy (gortsplib is writing) or has no non-blocking path.
func (c *trackedConn) tryWriteBatch(b []byte, timeout time.Duration) (n int, ok bool, err error) {
	if c.raw == nil || !c.mu.TryLock() {
		return 0, false, nil
	}
	defer c.mu.Unlock()
	n, err = c.raw.tryWrite(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A deadline left by an earlier write (gortsplib sets one before
		// each response) has passed. This write cannot block, so any future
		// deadline does; writes that can block set their own.
		c.Conn.SetWriteDeadline(time.Now().Add(timeout))
		n, err = c.raw.tryWrite(b)
	}
	return n, true, err
}

func (c *trackedConn) writeBatch(b []byte, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.Conn.Write(b)
	return err
}

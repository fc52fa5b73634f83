package proxy

import (
	"crypto/tls"
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

// batchConn is where a batchWriter writes: a plain TCP reader's
// trackedConn, or an RTSPS reader's TLS connection over one.
type batchConn interface {
	// armPlay returns a channel closed once the PLAY answer is out.
	armPlay() <-chan struct{}
	// tryWriteBatch writes what it can of b without blocking; ok false
	// means it wrote nothing and the writer goroutine must.
	tryWriteBatch(b []byte, timeout time.Duration) (n int, ok bool, err error)
	// writeBatch writes b, blocking up to timeout.
	writeBatch(b []byte, timeout time.Duration) error
}

var (
	_ batchConn = (*trackedConn)(nil)
	_ batchConn = tlsBatchConn{}
)

// batchConnOf returns the connection a batched reader on nc writes to:
// nc itself when it is a plain trackedConn, a tlsBatchConn when it is TLS
// over one (RTSPS), else false (a tunnel, say).
func batchConnOf(nc net.Conn) (batchConn, bool) {
	switch c := nc.(type) {
	case *trackedConn:
		return c, true
	case *tls.Conn:
		if tc, ok := c.NetConn().(*trackedConn); ok {
			return tlsBatchConn{tc: tc, tls: c}, true
		}
	}
	return nil, false
}

// tlsBatchConn writes an RTSPS reader's frames through its TLS connection:
// one TLS record (at most 16 KiB of a frame each) and one write system
// call per frame rather than per packet. tls.Conn serialises writes, so a
// frame never interleaves with gortsplib's answers and RTCP; the PLAY
// answer is seen on the trackedConn under the TLS layer (its next write
// after OnPlay is that answer's record). No write is made without
// blocking (a record cannot be written in part), so the writer goroutine
// writes every frame.
type tlsBatchConn struct {
	tc  *trackedConn
	tls *tls.Conn
}

func (c tlsBatchConn) armPlay() <-chan struct{} { return c.tc.armPlay() }

func (c tlsBatchConn) tryWriteBatch([]byte, time.Duration) (int, bool, error) { return 0, false, nil }

func (c tlsBatchConn) writeBatch(b []byte, timeout time.Duration) error {
	c.tls.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.tls.Write(b)
	return err
}

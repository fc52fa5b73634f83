package proxy

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
)

// readAheadSize is how much a camera connection reads at once: a whole
// frame at usual camera bitrates.
const readAheadSize = 64 << 10

var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

// readAheadConn is a camera connection read with the fast socket path
// (sock_linux.go), in large chunks: gortsplib reads through a 4 KiB
// bufio.Reader, so a frame that has already arrived costs one system call
// instead of three. The buffer is taken from a pool only once the socket
// is readable and goes back as soon as it is drained, so an idle camera
// holds none.
type readAheadConn struct {
	net.Conn
	raw  syscall.RawConn
	buf  *[]byte
	r, w int

	fn    func(fd uintptr) bool // c.read, bound once
	fnTap func(fd uintptr) bool // c.readTap, bound once
	n     int                   // what c.read read
	rerr  error
	eof   bool // c.readTap read the end of the stream

	tap *cameraTap // nil: every byte goes to gortsplib as it comes

	// coalesce, when not 0, moves the socket to the camera-read reactor of
	// that interval once the tap is armed (reactor_linux.go); cleared
	// after the one attempt. Only the reading goroutine uses it.
	coalesce    time.Duration
	onMoveError func(error)               // told when the move fails (nil: nobody)
	rfd         atomic.Pointer[reactorFD] // the socket once moved; then c.Conn is closed

	wmu    sync.Mutex // held by Write, and by the move (no write on the old socket then)
	cmu    sync.Mutex // Close, deadlines and the move
	closed bool       // under cmu
	rdl    time.Time  // the deadlines set, under cmu (the move carries them over)
	wdl    time.Time
}

// newReadAheadConn wraps c when it is a socket and the fast path exists;
// otherwise it returns c unchanged.
func newReadAheadConn(c net.Conn) net.Conn {
	raw := fastRawConn(c)
	if raw == nil {
		return c
	}
	rc := &readAheadConn{Conn: c, raw: raw}
	rc.fn, rc.fnTap = rc.read, rc.readTap
	return rc
}

func (c *readAheadConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.tap != nil && !c.tap.broken {
		return c.readTapped(p)
	}
	if c.r == c.w {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	return c.give(p, c.w-c.r), nil
}

// give copies up to n buffered bytes to p, and lets the buffer go once
// drained.
func (c *readAheadConn) give(p []byte, n int) int {
	n = copy(p[:min(len(p), n)], (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		readAheadPool.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
	return n
}

// readTapped is Read with the camera tap (camera_tap.go): it hands
// gortsplib whole messages or parts of them, and after PLAY delivers the
// tap's frames itself, reading on while it has nothing else to return.
func (c *readAheadConn) readTapped(p []byte) (int, error) {
	t := c.tap
	for {
		if c.r < c.w {
			if t.pass > 0 {
				n := c.give(p, t.pass)
				t.pass -= n
				t.lastShow = time.Now()
				return n, nil
			}
			b := (*c.buf)[c.r:c.w]
			armed := t.armed.Load()
			if armed {
				if n := t.take(b); n > 0 {
					c.r += n
					if c.r == c.w {
						readAheadPool.Put(c.buf)
						c.buf, c.r, c.w = nil, 0, 0
					}
					continue
				}
			}
			size, more, bad := t.message(b)
			if bad {
				t.broken = true
				return c.Read(p)
			}
			if !more && armed && t.wholeFrameNeeded(b, size) {
				more = true
			}
			if !more {
				t.pass = size
				continue
			}
			if c.r == 0 && c.w == len(*c.buf) {
				// A message header larger than the buffer: the tap cannot
				// follow this connection.
				t.broken = true
				return c.Read(p)
			}
		}
		if t.armed.Load() && len(p) >= 4 && time.Since(t.lastShow) >= tapKeepAlive {
			// Show gortsplib an empty frame on an unused channel, between
			// two messages, so that its read time-out sees the camera alive.
			t.lastShow = time.Now()
			return copy(p, []byte{base.InterleavedFrameMagicByte, t.idle, 0, 0}), nil
		}
		if t.armed.Load() && t.pass == 0 {
			if c.coalesce > 0 {
				c.moveToReactor()
			}
			if err := c.fillTapped(); err != nil {
				return 0, err
			}
			continue
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// fillTapped reads like fill, but takes the tap's frames as they arrive,
// without returning, until something is for gortsplib (or its keep-alive
// is due). It waits for the socket without a read that would find nothing
// after a read that drained it: the runtime's readiness flag, kept while the
// callback runs, says whether more arrived since.
func (c *readAheadConn) fillTapped() error {
	if c.buf != nil && c.r > 0 {
		n := copy(*c.buf, (*c.buf)[c.r:c.w])
		c.r, c.w = 0, n
	}
	c.rerr, c.eof = nil, false
	err := c.wait(c.fnTap) // (before reading c.eof, which it sets)
	return c.readErr(err, c.eof)
}

// readErr is the error of a wait for the socket: the wait's own, else the
// callback's read error, else io.EOF when eof. On any, a buffer left empty
// goes back to the pool.
func (c *readAheadConn) readErr(err error, eof bool) error {
	if err == nil {
		err = c.rerr
	}
	if err == nil && eof {
		err = io.EOF
	}
	if err != nil && c.buf != nil && c.w == 0 {
		readAheadPool.Put(c.buf)
		c.buf = nil
	}
	return err
}

// readTap is fillTapped's callback: true to return to readTapped, false
// to wait for the socket.
func (c *readAheadConn) readTap(fd uintptr) bool {
	t := c.tap
	for {
		if c.buf == nil {
			c.buf, c.r, c.w = readAheadPool.Get().(*[]byte), 0, 0
		}
		room := len(*c.buf) - c.w
		n, err := readNonBlocking(fd, (*c.buf)[c.w:])
		switch {
		case err == syscall.EAGAIN:
			if c.w == 0 {
				readAheadPool.Put(c.buf)
				c.buf = nil
			}
			return false
		case err != nil:
			c.rerr = err
			return true
		case n == 0:
			c.eof = true
			return true
		}
		c.w += n
		c.r += t.take((*c.buf)[c.r:c.w])
		if c.r == c.w {
			readAheadPool.Put(c.buf)
			c.buf, c.r, c.w = nil, 0, 0
		} else if !t.partial((*c.buf)[c.r:c.w]) {
			return true // for gortsplib
		}
		if time.Since(t.lastShow) >= tapKeepAlive {
			return true
		}
		if n < room {
			return false // drained
		}
		if c.r > 0 {
			m := copy(*c.buf, (*c.buf)[c.r:c.w])
			c.r, c.w = 0, m
		}
	}
}

// wait calls fn with the socket until it returns true, waiting for the
// socket to be readable between calls: through Go's netpoller, or the
// reactor once the socket moved there.
func (c *readAheadConn) wait(fn func(fd uintptr) bool) error {
	if f := c.rfd.Load(); f != nil {
		return f.read(fn)
	}
	return c.raw.Read(fn)
}

// moveToReactor moves the socket to the camera-read reactor (once: on
// failure it stays with Go's netpoller). It is called by the reading
// goroutine, between two reads.
func (c *readAheadConn) moveToReactor() {
	interval := c.coalesce
	c.coalesce = 0
	if err := c.move(interval); err != nil && c.onMoveError != nil {
		c.onMoveError(err)
	}
}

func (c *readAheadConn) move(interval time.Duration) error {
	r, err := reactorFor(interval)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if c.closed {
		return nil
	}
	f, err := detachToReactor(r, c.raw, c.Conn.LocalAddr(), c.Conn.RemoteAddr())
	if err != nil {
		return err
	}
	f.setReadDeadline(c.rdl)
	f.setWriteDeadline(c.wdl)
	if err := c.Conn.Close(); err != nil {
		_ = f.close() // the socket is no longer ours to read
		return err
	}
	c.rfd.Store(f)
	return nil
}

// Write writes to the socket, through the reactor's descriptor once moved.
func (c *readAheadConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if f := c.rfd.Load(); f != nil {
		return f.write(b)
	}
	return c.Conn.Write(b)
}

// Close closes the connection (the reactor's descriptor once moved).
func (c *readAheadConn) Close() error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.closed = true
	if f := c.rfd.Load(); f != nil {
		return f.close()
	}
	return c.Conn.Close()
}

// SetDeadline sets both deadlines, one after the other (a move between the
// two carries the one set over, and the other is then set on the reactor's
// descriptor).
func (c *readAheadConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *readAheadConn) SetReadDeadline(t time.Time) error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.rdl = t
	if f := c.rfd.Load(); f != nil {
		f.setReadDeadline(t)
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *readAheadConn) SetWriteDeadline(t time.Time) error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.wdl = t
	if f := c.rfd.Load(); f != nil {
		f.setWriteDeadline(t)
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// fill waits until the socket is readable (honouring the read deadline),
// then reads what it holds into the buffer after the bytes not yet used
// (moved to its start), taking a buffer from the pool if it has none.
func (c *readAheadConn) fill() error {
	if c.buf != nil && c.r > 0 {
		n := copy(*c.buf, (*c.buf)[c.r:c.w])
		c.r, c.w = 0, n
	}
	err := c.wait(c.fn)
	n := c.n
	if err := c.readErr(err, n == 0); err != nil {
		return err
	}
	c.w += n
	return nil
}

// read is called by the runtime when the socket may be readable.
func (c *readAheadConn) read(fd uintptr) bool {
	if c.buf == nil {
		c.buf, c.r, c.w = readAheadPool.Get().(*[]byte), 0, 0
	}
	c.n, c.rerr = readNonBlocking(fd, (*c.buf)[c.w:])
	if c.rerr == syscall.EAGAIN {
		if c.w == 0 {
			readAheadPool.Put(c.buf)
			c.buf = nil
		}
		return false // wait for readability
	}
	return true
}

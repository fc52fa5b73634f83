package proxy

import (
	"io"
	"net"
	"sync"
	"syscall"
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

	fn   func(fd uintptr) bool // c.read, bound once
	got  *[]byte               // what c.read filled
	n    int
	rerr error
}

// newReadAheadConn wraps c when it is a socket and the fast path exists;
// otherwise it returns c unchanged.
func newReadAheadConn(c net.Conn) net.Conn {
	raw := fastRawConn(c)
	if raw == nil {
		return c
	}
	rc := &readAheadConn{Conn: c, raw: raw}
	rc.fn = rc.read
	return rc
}

func (c *readAheadConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.r == c.w {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		readAheadPool.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
	return n, nil
}

// fill waits until the socket is readable (honouring the read deadline),
// then reads what it holds, up to readAheadSize, into a pooled buffer.
func (c *readAheadConn) fill() error {
	err := c.raw.Read(c.fn)
	buf, n := c.got, c.n
	c.got = nil
	if err == nil {
		err = c.rerr
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		if buf != nil {
			readAheadPool.Put(buf)
		}
		return err
	}
	c.buf, c.r, c.w = buf, 0, n
	return nil
}

// read is called by the runtime when the socket may be readable.
func (c *readAheadConn) read(fd uintptr) bool {
	buf := readAheadPool.Get().(*[]byte)
	c.n, c.rerr = readNonBlocking(fd, *buf)
	if c.rerr == syscall.EAGAIN {
		readAheadPool.Put(buf)
		return false // wait for readability
	}
	c.got = buf
	return true
}

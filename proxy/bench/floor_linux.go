//go:build linux

package bench

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// floorConn makes the floor's reads and writes as cordon's camera tap and
// batched readers make theirs (proxy/sock_linux.go): system calls that do
// not tell the Go scheduler they may block (RawSyscall: the socket is
// non-blocking), waiting in the netpoller only when the socket has nothing
// to read or no room. A blocking-style syscall.Read/Write lets the
// runtime hand the thread's P to another thread when the call takes long
// (a loopback write runs the receiver's TCP work), which costs thread
// switches; without this, cordon made fewer of them than the floor.
type floorConn struct {
	net.Conn
	rc      syscall.RawConn
	readFn  func(fd uintptr) bool // bound once: no allocation per call
	writeFn func(fd uintptr) bool
	b       []byte
	n       int
	err     error
}

func newFloorConn(c net.Conn) *floorConn {
	fc := &floorConn{Conn: c, rc: rawConn(c)}
	fc.readFn, fc.writeFn = fc.read, fc.write
	return fc
}

func rawIO(trap, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}

func (c *floorConn) read(fd uintptr) bool {
	n, e := rawIO(syscall.SYS_READ, fd, c.b)
	switch {
	case e == syscall.EAGAIN:
		return false // wait until readable
	case e != 0:
		c.n, c.err = 0, e
	case n == 0:
		c.n, c.err = 0, io.EOF
	default:
		c.n, c.err = n, nil
	}
	return true
}

func (c *floorConn) write(fd uintptr) bool {
	for c.n < len(c.b) {
		n, e := rawIO(syscall.SYS_WRITE, fd, c.b[c.n:])
		switch {
		case e == syscall.EAGAIN:
			return false // wait until writable
		case e != 0:
			c.err = e
			return true
		}
		c.n += n
	}
	return true
}

// Read reads what the socket holds (at least a byte) into p.
func (c *floorConn) Read(p []byte) (int, error) {
	if c.rc == nil {
		return c.Conn.Read(p)
	}
	c.b, c.n, c.err = p, 0, nil
	if err := c.rc.Read(c.readFn); err != nil {
		return 0, err
	}
	c.b = nil
	return c.n, c.err
}

// Write writes all of b.
func (c *floorConn) Write(b []byte) (int, error) {
	if c.rc == nil {
		return c.Conn.Write(b)
	}
	c.b, c.n, c.err = b, 0, nil
	if err := c.rc.Write(c.writeFn); err != nil {
		return c.n, err
	}
	c.b = nil
	return c.n, c.err
}

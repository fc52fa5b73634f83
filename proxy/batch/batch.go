// Package batch coalesces the per-packet writes an RTSP server makes to a
// TCP reader into one write per video frame.
//
// gortsplib's server writes every RTP packet of a TCP-interleaved reader with
// its own Write call, so a 2 Mbit/s camera at 25 fps costs each reader about
// eight syscalls per frame; that syscall rate dominates the CPU of an
// RTSP→RTSP proxy. A Conn from this package holds interleaved RTP packets
// whose marker bit is clear (packets in the middle of a frame) and writes
// them together with the packet that ends the frame. Anything else — RTSP
// responses, RTCP, a frame's last packet — flushes at once, and a short timer
// bounds how long a packet can wait when a stream never sets the marker bit.
//
// Use it through the server's listen hook: gortsplib.Server{Listen: batch.Listen}.
package batch

import (
	"net"
	"sync"
	"time"
)

// Defaults for Conn.
const (
	// DefaultMaxHold bounds how long a buffered packet waits for the end of its frame.
	DefaultMaxHold = 2 * time.Millisecond
	// DefaultMaxBuffer bounds the bytes held per connection; a larger frame is
	// written in pieces of this size.
	DefaultMaxBuffer = 128 << 10
)

// Listen is a drop-in for net.Listen whose connections batch writes.
func Listen(network, address string) (net.Listener, error) {
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &Listener{Listener: l}, nil
}

// Listener wraps accepted connections in a Conn.
type Listener struct {
	net.Listener
	// MaxHold and MaxBuffer configure each Conn; zero values take the defaults.
	MaxHold   time.Duration
	MaxBuffer int
}

// Accept waits for the next connection and wraps it.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c, l.MaxHold, l.MaxBuffer), nil
}

// Conn batches interleaved RTP writes per frame. It is safe for concurrent use.
type Conn struct {
	net.Conn
	maxHold time.Duration
	maxBuf  int

	mu      sync.Mutex
	buf     []byte
	timer   *time.Timer
	armed   bool
	err     error // first write error; every later Write returns it
	flushes uint64
	writes  uint64
}

// NewConn wraps c. Zero maxHold and maxBuffer take the defaults.
func NewConn(c net.Conn, maxHold time.Duration, maxBuffer int) *Conn {
	if maxHold <= 0 {
		maxHold = DefaultMaxHold
	}
	if maxBuffer <= 0 {
		maxBuffer = DefaultMaxBuffer
	}
	bc := &Conn{Conn: c, maxHold: maxHold, maxBuf: maxBuffer}
	bc.timer = time.AfterFunc(time.Hour, bc.onTimer)
	bc.timer.Stop()
	return bc
}

// holdable reports whether p is exactly one interleaved RTP packet that does
// not end a frame: '$', an even (RTP) channel, a length matching p, RTP
// version 2 and the marker bit clear.
func holdable(p []byte) bool {
	if len(p) < 4+12 || p[0] != '$' || p[1]&1 != 0 {
		return false
	}
	if int(p[2])<<8|int(p[3]) != len(p)-4 {
		return false
	}
	rtp := p[4:]
	return rtp[0]>>6 == 2 && rtp[1]&0x80 == 0
}

// Write buffers p when it is the middle of a frame, else writes everything
// buffered together with p.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes++
	if holdable(p) && len(c.buf)+len(p) <= c.maxBuf {
		c.buf = append(c.buf, p...)
		if !c.armed {
			c.armed = true
			c.timer.Reset(c.maxHold)
		}
		return len(p), nil
	}
	if len(c.buf) == 0 {
		c.flushes++
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	if len(c.buf)+len(p) <= c.maxBuf {
		c.buf = append(c.buf, p...)
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	c.flushes++
	n, err := c.Conn.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *Conn) flushLocked() error {
	if c.armed {
		c.timer.Stop()
		c.armed = false
	}
	if len(c.buf) == 0 {
		return nil
	}
	c.flushes++
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if cap(c.buf) > c.maxBuf {
		c.buf = nil
	}
	if err != nil {
		c.err = err
	}
	return err
}

func (c *Conn) onTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	if c.err == nil {
		_ = c.flushLocked()
	}
}

// Flush writes whatever is buffered.
func (c *Conn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

// Close flushes (best effort) and closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.err == nil {
		_ = c.flushLocked()
	}
	c.timer.Stop()
	c.mu.Unlock()
	return c.Conn.Close()
}

// Stats returns how many Write calls the connection got and how many writes
// it made to the socket.
func (c *Conn) Stats() (writes, socketWrites uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.flushes
}

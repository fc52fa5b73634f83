package camsim

import (
	"net"
	"sync"
)

// frameWriteMax bounds what a connection holds back: more than a
// keyframe of the largest embedded clip (about 180 KB at 1920x1080).
const frameWriteMax = 512 << 10

// frameListener wraps the RTSP listener so that each connection sends a
// frame's RTP packets with one write (see frameConn).
type frameListener struct{ net.Listener }

func (l frameListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &frameConn{Conn: c}, nil
}

// frameConn holds back the interleaved RTP packets (TCP transport) of a
// frame until its last one (the RTP marker bit) and writes them together,
// in one system call: the bytes on the wire are the same, in the same
// order, at the time the frame's last packet is written, only in fewer,
// larger TCP segments. Sending a frame at once is what a camera whose
// encoder hands over whole frames does; it costs a tenth of the system
// calls at 2 Mbit/s. Server.WritePerPacket turns it off (one write per
// packet, as gortsplib does). Anything else — RTSP messages, RTCP, a
// packet that would overflow the buffer — first flushes what is held.
type frameConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

// holdable reports whether p is one interleaved RTP packet (even channel)
// without the marker bit.
func holdable(p []byte) bool {
	return len(p) >= 4+12 && p[0] == '$' && p[1]%2 == 0 &&
		len(p) == 4+(int(p[2])<<8|int(p[3])) && p[5]&0x80 == 0
}

func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf)+len(p) > frameWriteMax && len(c.buf) > 0 {
		_, err := c.Conn.Write(c.buf)
		c.buf = c.buf[:0]
		if err != nil {
			return 0, err
		}
	}
	if len(c.buf)+len(p) <= frameWriteMax {
		if holdable(p) {
			c.buf = append(c.buf, p...)
			return len(p), nil
		}
		if len(c.buf) > 0 {
			c.buf = append(c.buf, p...)
			_, err := c.Conn.Write(c.buf)
			c.buf = c.buf[:0]
			return len(p), err
		}
		return c.Conn.Write(p)
	}
	return c.Conn.Write(p) // larger than the buffer: not an RTP packet
}

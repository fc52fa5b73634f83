package udpgro

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

const msgTrunc = unix.MSG_TRUNC

// New turns UDP_GRO on for c and returns the Conn to hand to a
// quic.Transport in its place.
func New(c *net.UDPConn) (*Conn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, serr)
	}
	return &Conn{UDPConn: c, buf: make([]byte, bufSize), oob: make([]byte, 256), poob: make([]byte, 0, 256)}, nil
}

// splitGRO returns the segment size of the UDP_GRO control message in oob
// (0 when there is none: a datagram on its own) and appends oob's other
// control messages to rest.
func splitGRO(oob, rest []byte) (int, []byte) {
	seg := 0
	for len(oob) > 0 {
		h, body, next, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return seg, rest
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO {
			switch len(body) {
			case 2:
				seg = int(binary.NativeEndian.Uint16(body))
			case 4:
				seg = int(binary.NativeEndian.Uint32(body))
			}
		} else {
			rest = append(rest, oob[:len(oob)-len(next)]...)
		}
		oob = next
	}
	return seg, rest
}

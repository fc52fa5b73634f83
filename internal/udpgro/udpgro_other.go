//go:build !linux

package udpgro

import "net"

const msgTrunc = 0

// New returns ErrUnsupported: UDP_GRO is Linux's.
func New(c *net.UDPConn) (*Conn, error) { return nil, ErrUnsupported }

func splitGRO(oob, rest []byte) (int, []byte) { return 0, append(rest, oob...) }

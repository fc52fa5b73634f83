// Package udpgro wraps a UDP socket for quic-go so that it receives with the
// kernel's UDP generic receive offload (UDP_GRO, Linux 5.0 and later).
//
// quic-go reads its packets eight at a time with recvmmsg, one kernel
// datagram per message, and does not use UDP_GRO. With UDP_GRO set, the
// kernel hands a socket a train of same-sized datagrams from one sender in
// one read, with their segment size in a control message: on loopback
// (and on a veth) the trains that quic-go's GSO sends arrive whole instead
// of being cut into one socket buffer per packet. A Conn does one read per
// train and splits it into the messages quic-go asks for
// (quic.OOBCapablePacketConn plus ReadBatch, which quic-go uses when the
// conn has it), so quic-go still writes through the *net.UDPConn, with GSO
// and ECN.
package udpgro

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// ErrUnsupported is returned by New where the kernel or the platform has no
// UDP_GRO.
var ErrUnsupported = errors.New("udpgro: UDP_GRO is not supported here")

// bufSize is one read's buffer: the largest UDP payload (a GRO train is at
// most 64 KiB).
const bufSize = 1 << 16

// Conn is a *net.UDPConn with UDP_GRO on, read in batches by quic-go
// through ReadBatch. Its writes are the UDPConn's.
type Conn struct {
	*net.UDPConn

	buf  []byte
	oob  []byte
	pend []byte // the current train's segments not yet handed over
	seg  int    // its segment size
	poob []byte // its control messages but UDP_GRO's (copied to each segment's message)
	addr *net.UDPAddr
	ap   netip.AddrPort

	reads, segments, truncated atomic.Int64
}

// Stats are a Conn's counters: kernel reads, datagrams handed to quic-go,
// and trains dropped because they did not fit the buffer.
type Stats struct {
	Reads, Segments, Truncated int64
}

// Stats returns the counters so far.
func (c *Conn) Stats() Stats {
	return Stats{Reads: c.reads.Load(), Segments: c.segments.Load(), Truncated: c.truncated.Load()}
}

// ReadBatch fills ms with datagrams, at least one (it blocks until one
// arrives), from the current GRO train or the next read. It has the
// signature of ipv4.PacketConn's, which quic-go calls; flags are ignored.
func (c *Conn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	if len(c.pend) == 0 {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := 0
	for n < len(ms) && len(c.pend) > 0 {
		k := min(c.seg, len(c.pend))
		m := &ms[n]
		m.N = copy(m.Buffers[0], c.pend[:k])
		m.NN = 0
		if len(c.poob) <= len(m.OOB) { // (never cut a control message)
			m.NN = copy(m.OOB, c.poob)
		}
		m.Addr = c.addr
		m.Flags = 0
		c.pend = c.pend[k:]
		n++
	}
	c.segments.Add(int64(n))
	return n, nil
}

// fill reads the next train.
func (c *Conn) fill() error {
	for {
		n, oobn, flags, ap, err := c.UDPConn.ReadMsgUDPAddrPort(c.buf, c.oob)
		if err != nil {
			return err
		}
		c.reads.Add(1)
		if flags&msgTrunc != 0 {
			c.truncated.Add(1)
			continue
		}
		if c.addr == nil || ap != c.ap {
			c.ap, c.addr = ap, net.UDPAddrFromAddrPort(ap)
		}
		c.seg, c.poob = splitGRO(c.oob[:oobn], c.poob[:0])
		if c.seg <= 0 {
			c.seg = n
		}
		c.pend = c.buf[:n]
		if n > 0 {
			return nil
		}
	}
}

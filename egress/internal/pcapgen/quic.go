package pcapgen

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// recordingConn is a UDP socket that keeps a copy of every datagram written.
type recordingConn struct {
	net.PacketConn
	mu   sync.Mutex
	sent [][]byte
}

func (c *recordingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, append([]byte(nil), b...))
	c.mu.Unlock()
	return c.PacketConn.WriteTo(b, addr)
}

// QUICInitials returns the first datagrams a real QUIC client (quic-go, with
// Go's TLS stack and its post-quantum key share) sends to dial serverName.
// The client talks to a silent UDP socket on loopback, so only its Initial
// packets exist; with a post-quantum key share the ClientHello spans two.
func QUICInitials(serverName string) ([][]byte, error) {
	sink, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{PacketConn: udp}
	tr := &quic.Transport{Conn: rc}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = tr.Dial(ctx, sink.LocalAddr(), &tls.Config{ServerName: serverName, NextProtos: []string{"h3"}}, &quic.Config{})
	if err == nil {
		return nil, errors.New("pcapgen: QUIC dial to a silent socket succeeded")
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.sent) == 0 {
		return nil, errors.New("pcapgen: the QUIC client sent nothing")
	}
	// Keep the first flight only (retransmissions after the PTO repeat it).
	var out [][]byte
	for _, d := range rc.sent {
		if len(out) > 0 && len(d) > 0 && string(d) == string(out[0]) {
			break
		}
		out = append(out, d)
	}
	return out, nil
}

// SetReadBuffer and SetWriteBuffer pass quic-go's buffer tuning to the socket.
func (c *recordingConn) SetReadBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetReadBuffer(n)
}

func (c *recordingConn) SetWriteBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetWriteBuffer(n)
}

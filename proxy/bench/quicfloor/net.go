package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/internal/udpgro"
)

const alpn = "quicfloor"

// serverTLS is a TLS 1.3 configuration with a fresh self-signed key pair.
func serverTLS() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: alpn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{alpn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{alpn}}, nil
}

// clientTLS trusts any certificate: a loopback benchmark's own peer.
func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{alpn}}
}

// serve listens for the receiver's flows on loopback and calls onFlow for
// each, numbered in the order they arrive.
func serve(s system, o options, c *counters, onFlow func(int, frameWriter)) (string, error) {
	tc, err := serverTLS()
	if err != nil {
		return "", err
	}
	var next atomic.Int64
	flow := func() int { return int(next.Add(1) - 1) }
	if s.isQUIC() {
		return serveQUIC(s, tc, c, flow, onFlow)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	if s.base == "tls" {
		ln = tls.NewListener(ln, tc)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				var req [1]byte
				if _, err := io.ReadFull(c, req[:]); err != nil {
					return
				}
				onFlow(flow(), func(b []byte) error { _, err := c.Write(b); return err })
			}()
		}
	}()
	return ln.Addr().String(), nil
}

func serveQUIC(s system, tc *tls.Config, c *counters, flow func() int, onFlow func(int, frameWriter)) (string, error) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return "", err
	}
	tr := &quic.Transport{Conn: udp, ConnectionIDLength: 8}
	ln, err := tr.Listen(tc, s.quicConfig())
	if err != nil {
		return "", err
	}
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			c.addConn(conn)
			go serveConn(s, conn, flow, onFlow)
		}
	}()
	return udp.LocalAddr().String(), nil
}

// serveConn starts a flow on each stream the receiver opens on conn.
func serveConn(s system, conn *quic.Conn, flow func() int, onFlow func(int, frameWriter)) {
	for {
		st, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		var req [1]byte
		if _, err := io.ReadFull(st, req[:]); err != nil {
			return
		}
		f := flow()
		if s.datagrams() {
			onFlow(f, datagramWriter(conn, f))
			continue
		}
		onFlow(f, func(b []byte) error { _, err := st.Write(b); return err })
	}
}

// dgramHeader is a datagram's flow (uint16) and sequence number (uint32).
const dgramHeader = 6

// datagramWriter sends a frame in DATAGRAM frames as large as the path
// allows, each with the flow and a sequence number.
func datagramWriter(conn *quic.Conn, flow int) frameWriter {
	const try = 1400
	var seq, grown uint32
	size := try
	buf := make([]byte, 2048)
	return func(f []byte) error {
		for off := 0; off < len(f); {
			if seq%256 == 0 && seq != grown {
				size, grown = try, seq // the path's datagrams may have grown (PMTUD)
			}
			n := min(size-dgramHeader, len(f)-off)
			binary.BigEndian.PutUint16(buf, uint16(flow))
			binary.BigEndian.PutUint32(buf[2:], seq)
			copy(buf[dgramHeader:], f[off:off+n])
			err := conn.SendDatagram(buf[:dgramHeader+n])
			var tl *quic.DatagramTooLargeError
			if errors.As(err, &tl) && tl.MaxDatagramPayloadSize > dgramHeader && int(tl.MaxDatagramPayloadSize) < size {
				size = int(tl.MaxDatagramPayloadSize)
				continue
			}
			if err != nil {
				return err
			}
			seq++
			off += n
		}
		return nil
	}
}

// receive opens o.flows flows to the sender at o.addr and reads them,
// counting into c.
func receive(s system, o options, c *counters) error {
	if s.isQUIC() {
		return receiveQUIC(s, o, c)
	}
	for range o.flows {
		var conn net.Conn
		var err error
		if s.base == "tls" {
			conn, err = tls.Dial("tcp", o.addr, clientTLS())
		} else {
			conn, err = net.Dial("tcp", o.addr)
		}
		if err != nil {
			return err
		}
		if _, err := conn.Write([]byte{1}); err != nil {
			return err
		}
		go readAll(conn, c)
	}
	return nil
}

func readAll(r io.Reader, c *counters) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		c.bytes.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// receiveQUIC dials one connection, or one per flow, each from its own
// socket (as a trunk's core does), and opens a stream per flow.
func receiveQUIC(s system, o options, c *counters) error {
	raddr, err := net.ResolveUDPAddr("udp", o.addr)
	if err != nil {
		return err
	}
	conns, perConn := 1, o.flows
	if s.connPerFlow() {
		conns, perConn = o.flows, 1
	}
	for range conns {
		conn, err := dialQUIC(s, raddr, c)
		if err != nil {
			return err
		}
		c.addConn(conn)
		if s.datagrams() {
			go readDatagrams(conn, c)
		}
		for range perConn {
			st, err := conn.OpenStreamSync(context.Background())
			if err != nil {
				return err
			}
			if _, err := st.Write([]byte{1}); err != nil {
				return err
			}
			if !s.datagrams() {
				go readAll(st, c)
			}
		}
	}
	return nil
}

func dialQUIC(s system, raddr *net.UDPAddr, c *counters) (*quic.Conn, error) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		return nil, err
	}
	var pc net.PacketConn = udp
	if s.gro {
		g, err := udpgro.New(udp)
		if err != nil {
			return nil, err
		}
		c.gro = append(c.gro, g)
		pc = g
	}
	tr := &quic.Transport{Conn: pc, ConnectionIDLength: 8}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return tr.Dial(ctx, raddr, clientTLS(), s.quicConfig())
}

// readDatagrams counts a connection's datagrams, and the ones missing
// from each flow's numbering.
func readDatagrams(conn *quic.Conn, c *counters) {
	next := map[uint16]uint32{}
	for {
		b, err := conn.ReceiveDatagram(context.Background())
		if err != nil {
			return
		}
		if len(b) < dgramHeader {
			continue
		}
		flow, seq := binary.BigEndian.Uint16(b), binary.BigEndian.Uint32(b[2:])
		if want, ok := next[flow]; ok && seq > want {
			c.lost.Add(int64(seq - want))
		}
		next[flow] = seq + 1
		c.bytes.Add(int64(len(b) - dgramHeader))
	}
}

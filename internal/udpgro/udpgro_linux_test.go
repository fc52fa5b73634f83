package udpgro

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"unsafe"
)

func listenGRO(t *testing.T) *Conn {
	t.Helper()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	c, err := New(udp)
	if err != nil {
		t.Skipf("no UDP_GRO here: %v", err)
	}
	return c
}

// sendGSO sends payload as one UDP_SEGMENT train of seg-byte datagrams.
func sendGSO(t *testing.T, to net.Addr, payload []byte, seg int) {
	t.Helper()
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	oob[unix.CmsgLen(0)] = byte(seg)
	oob[unix.CmsgLen(0)+1] = byte(seg >> 8)
	if _, _, err := s.WriteMsgUDP(payload, oob, to.(*net.UDPAddr)); err != nil {
		t.Skipf("no UDP_SEGMENT here: %v", err)
	}
}

func messages(n int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
		ms[i].OOB = make([]byte, 128)
	}
	return ms
}

// TestReadBatchSplitsTrain sends one GSO train of 11 datagrams (the last
// one short) and reads them back in batches of 4: one kernel read, 11
// datagrams with the sent bytes, in order, each with the train's IP_TOS
// control message (as quic-go asks for, to read ECN) and not UDP_GRO's.
func TestReadBatchSplitsTrain(t *testing.T) {
	c := listenGRO(t)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1) })
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 10*1200+345)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	sendGSO(t, c.LocalAddr(), payload, 1200)
	var got []byte
	var sizes []int
	ms := messages(4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(payload) {
		n, err := c.ReadBatch(ms, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			got = append(got, m.Buffers[0][:m.N]...)
			sizes = append(sizes, m.N)
			if m.Addr == nil {
				t.Fatal("message without a source address")
			}
			cms, err := unix.ParseSocketControlMessage(m.OOB[:m.NN])
			if err != nil || len(cms) != 1 || cms[0].Header.Level != unix.IPPROTO_IP || cms[0].Header.Type != unix.IP_TOS {
				t.Fatalf("control messages %+v (%v), want IP_TOS alone", cms, err)
			}
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("segments differ from the payload sent")
	}
	if len(sizes) != 11 || sizes[0] != 1200 || sizes[10] != 345 {
		t.Fatalf("segment sizes %v, want 10 × 1200 and 345", sizes)
	}
	if s := c.Stats(); s.Reads != 1 || s.Segments != 11 {
		t.Fatalf("stats %+v, want 1 read and 11 segments", s)
	}
}

// TestReadBatchSingle reads plain datagrams (no GSO) one per message.
func TestReadBatchSingle(t *testing.T) {
	c := listenGRO(t)
	s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, m := range []string{"one", "second datagram"} {
		if _, err := s.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	ms := messages(8)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []string
	for len(got) < 2 {
		n, err := c.ReadBatch(ms, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			got = append(got, string(m.Buffers[0][:m.N]))
		}
	}
	if got[0] != "one" || got[1] != "second datagram" {
		t.Fatalf("got %q", got)
	}
}

// TestQUICOverGRO moves 2 MB over a QUIC stream whose receiving end reads
// through a Conn (the sender uses quic-go's GSO where the kernel has it).
func TestQUICOverGRO(t *testing.T) {
	c := listenGRO(t)
	srvUDP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srvTr := &quic.Transport{Conn: srvUDP}
	defer srvTr.Close()
	ln, err := srvTr.Listen(testTLS(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 2<<20)
	rand.Read(payload)
	go func() {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		st, err := conn.OpenStream()
		if err != nil {
			return
		}
		st.Write(payload)
		st.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := &quic.Transport{Conn: c}
	defer tr.Close()
	conn, err := tr.Dial(ctx, srvUDP.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"t"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, not the %d sent", len(got), len(payload))
	}
	s := c.Stats()
	t.Logf("%d reads, %d datagrams", s.Reads, s.Segments)
	if s.Segments < 1400 || s.Truncated != 0 {
		t.Fatalf("stats %+v: want at least 1,400 datagrams read through the Conn, none truncated", s)
	}
}

func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"t"}}
}

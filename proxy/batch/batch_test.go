package batch

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// frame builds one interleaved RTP packet of n payload bytes.
func frame(channel byte, marker bool, seq uint16, n int) []byte {
	p := make([]byte, 4+12+n)
	p[0], p[1] = '$', channel
	l := 12 + n
	p[2], p[3] = byte(l>>8), byte(l)
	p[4] = 0x80
	p[5] = 96
	if marker {
		p[5] |= 0x80
	}
	p[6], p[7] = byte(seq>>8), byte(seq)
	for i := range n {
		p[16+i] = byte(seq) + byte(i)
	}
	return p
}

func pipe(t *testing.T, hold time.Duration, max int) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		done <- c
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-done
	t.Cleanup(func() { client.Close(); server.Close() })
	return NewConn(server, hold, max), client
}

func TestHolds(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"mid-frame rtp", frame(0, false, 1, 100), true},
		{"frame end", frame(0, true, 1, 100), false},
		{"rtcp channel", frame(1, false, 1, 100), false},
		{"rtsp text", []byte("RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"), false},
		{"length mismatch", append(frame(0, false, 1, 100), 0), false},
		{"short", []byte{'$', 0, 0, 1, 0x80}, false},
	} {
		if got := holdable(tc.p); got != tc.want {
			t.Errorf("%s: holdable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestOrderAndCoalescing writes frames of 8 packets and checks that the peer
// gets every byte in order with one socket write per frame.
func TestOrderAndCoalescing(t *testing.T) {
	c, peer := pipe(t, time.Second, 0)
	var want bytes.Buffer
	const frames, perFrame = 50, 8
	for f := range frames {
		for i := range perFrame {
			p := frame(0, i == perFrame-1, uint16(f*perFrame+i), 1200)
			want.Write(p)
			if n, err := c.Write(p); err != nil || n != len(p) {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
	}
	resp := []byte("RTSP/1.0 200 OK\r\n\r\n")
	want.Write(resp)
	c.Write(resp)
	got := make([]byte, want.Len())
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("peer got different bytes")
	}
	writes, socket := c.Stats()
	if writes != frames*perFrame+1 || socket != frames+1 {
		t.Fatalf("%d writes became %d socket writes; want %d and %d", writes, socket, frames*perFrame+1, frames+1)
	}
}

// TestMaxHold: a stream that never sets the marker bit still goes out.
func TestMaxHold(t *testing.T) {
	c, peer := pipe(t, 5*time.Millisecond, 0)
	p := frame(0, false, 7, 100)
	c.Write(p)
	got := make([]byte, len(p))
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("held packet never flushed: %v", err)
	}
}

// TestMaxBuffer: a frame larger than the buffer is written in pieces, in order.
func TestMaxBuffer(t *testing.T) {
	c, peer := pipe(t, time.Second, 4096)
	var want bytes.Buffer
	for i := range 20 {
		p := frame(0, i == 19, uint16(i), 1000)
		want.Write(p)
		c.Write(p)
	}
	got := make([]byte, want.Len())
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("peer got different bytes")
	}
}

// TestErrorSticks: after the peer goes away, writes fail instead of buffering forever.
func TestErrorSticks(t *testing.T) {
	c, peer := pipe(t, time.Millisecond, 0)
	peer.Close()
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Write(frame(0, true, uint16(i), 1000))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}
}

func FuzzHoldable(f *testing.F) {
	f.Add(frame(0, false, 1, 10))
	f.Add(frame(1, true, 1, 0))
	f.Add([]byte("RTSP/1.0 200 OK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		if holdable(p) && (len(p) < 16 || p[0] != '$') {
			t.Fatalf("held a non-RTP write: %x", p)
		}
	})
}

// BenchmarkWrites compares per-packet socket writes (what gortsplib does) with
// batched writes, for 8-packet frames of 1,200-byte packets to a TCP peer on
// loopback. Compare the ns/op of the two sub-benchmarks (one op = one frame).
func BenchmarkWrites(b *testing.B) {
	for _, mode := range []string{"per-packet", "batched"} {
		b.Run(mode, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				io.Copy(io.Discard, c)
			}()
			raw, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			var w io.Writer = raw
			if mode == "batched" {
				w = NewConn(raw, time.Second, 0)
			}
			pkts := make([][]byte, 8)
			for i := range pkts {
				pkts[i] = frame(0, i == 7, uint16(i), 1200)
			}
			b.SetBytes(int64(8 * len(pkts[0])))
			b.ResetTimer()
			for b.Loop() {
				for _, p := range pkts {
					if _, err := w.Write(p); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

package proxy

import (
	"bufio"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// tcpPair returns both ends of a loopback TCP connection: the proxy's end
// wrapped as the core listener wraps it, and the reader's end.
func tcpPair(t *testing.T) (*trackedConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return newTrackedConn(server), client
}

// newPlayingWriter returns a batch writer whose PLAY response is out.
func newPlayingWriter(t *testing.T, tc *trackedConn, maxPending int64, onErr func(error)) *batchWriter {
	t.Helper()
	var packets, bytes atomic.Uint64
	w := newBatchWriter(tc, 5*time.Second, maxPending, newOutputBudget(1<<40, slog.New(slog.DiscardHandler)), &packets, &bytes, onErr)
	if _, err := tc.Write([]byte("RTSP/1.0 200 OK\r\n\r\n")); err != nil { // the PLAY response
		t.Fatal(err)
	}
	return w
}

// sendFrame adds one access unit of n packets with sequence numbers from seq.
func sendFrame(t *testing.T, w *batchWriter, seq uint16, ts uint32, n, size int) (ok bool) {
	t.Helper()
	for i := range n {
		pkt := &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq + uint16(i), Timestamp: ts, Marker: i == n-1},
			Payload: make([]byte, size),
		}
		binary.BigEndian.PutUint16(pkt.Payload, seq+uint16(i)) // the payload names its packet
		ok, _, err := w.add(pkt, 0, 1234, time.Now(), true, pkt.Marker)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return false
		}
	}
	return true
}

// readPackets reads the PLAY response, then n interleaved RTP packets,
// checking that sequence numbers follow each other from seq and that every
// payload is intact. RTCP sender reports in between are skipped.
func readPackets(t *testing.T, c net.Conn, seq uint16, n int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for range 2 { // status line, blank line
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("reading the PLAY response: %v", err)
		}
	}
	for got := 0; got < n; {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatalf("after %d packets: %v", got, err)
		}
		if hdr[0] != '$' {
			t.Fatalf("after %d packets: byte %#x where '$' should start a frame", got, hdr[0])
		}
		buf := make([]byte, binary.BigEndian.Uint16(hdr[2:]))
		if n, err := io.ReadFull(br, buf); err != nil {
			t.Fatalf("after %d packets: %d of %d bytes: %v", got, n, len(buf), err)
		}
		if hdr[1] == 1 {
			continue // RTCP
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(buf); err != nil {
			t.Fatal(err)
		}
		if pkt.SequenceNumber != seq || binary.BigEndian.Uint16(pkt.Payload) != seq || pkt.SSRC != 1234 {
			t.Fatalf("packet %d: seq %d, payload names %d, ssrc %d; want %d, %d, 1234",
				got, pkt.SequenceNumber, binary.BigEndian.Uint16(pkt.Payload), pkt.SSRC, seq, seq)
		}
		seq++
		got++
	}
}

// A reader that keeps up is written to from the camera goroutine itself,
// even when a deadline left on the connection by an earlier write (gortsplib
// sets one before each response) has passed. The writer goroutine is not
// started here, so a frame handed to it would never arrive.
func TestBatchWriterWritesInline(t *testing.T) {
	tc, client := tcpPair(t)
	w := newPlayingWriter(t, tc, 1<<20, func(err error) { t.Errorf("write failed: %v", err) })
	tc.Conn.SetWriteDeadline(time.Now().Add(-time.Second))
	for i := range 10 {
		if !sendFrame(t, w, uint16(i*5), uint32(i*3600), 5, 1200) {
			t.Fatalf("frame %d refused", i)
		}
		if p := w.pending.Load(); p != 0 {
			t.Fatalf("frame %d: %d bytes left to the writer goroutine; want all written inline", i, p)
		}
	}
	readPackets(t, client, 0, 50)
}

// A reader that stops reading fills its socket: the camera goroutine's
// write takes part of a frame, the writer goroutine sends the rest, and
// later frames queue behind it. Nothing is reordered or cut, and the camera
// side never blocks.
func TestBatchWriterSlowReaderKeepsOrder(t *testing.T) {
	tc, client := tcpPair(t)
	// A small send buffer, so that the socket fills up in the middle of a
	// frame. (The reader's buffer is left alone: shrinking a receive window
	// after the handshake makes Linux stall the connection in persist mode.)
	tc.Conn.(*net.TCPConn).SetWriteBuffer(4 << 10)
	w := newPlayingWriter(t, tc, 64<<20, func(err error) { t.Errorf("write failed: %v", err) })
	go w.run()
	defer w.stop()
	const frames, perFrame = 400, 40
	start := time.Now()
	queued := false
	for i := range frames {
		if !sendFrame(t, w, uint16(i*perFrame), uint32(i*3600), perFrame, 1400) {
			t.Fatalf("frame %d refused with %d bytes pending", i, w.pending.Load())
		}
		queued = queued || w.pending.Load() > 0
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("adding %d frames took %s: the camera side blocked", frames, d)
	}
	if !queued {
		t.Fatal("the socket never filled: the test did not reach the writer goroutine")
	}
	readPackets(t, client, 0, frames*perFrame)
}

// A write error on the inline path stops the writer and reports the error
// once; later frames are dropped quietly, not counted as a slow reader.
func TestBatchWriterInlineError(t *testing.T) {
	tc, client := tcpPair(t)
	var errs atomic.Int32
	w := newPlayingWriter(t, tc, 1<<20, func(error) { errs.Add(1) })
	client.(*net.TCPConn).SetLinger(0)
	client.Close() // a reset: the next writes fail
	time.Sleep(50 * time.Millisecond)
	for i := range 20 {
		if !sendFrame(t, w, uint16(i*4), uint32(i*3600), 4, 1000) {
			t.Fatalf("frame %d refused: a broken connection is not a slow reader", i)
		}
	}
	if n := errs.Load(); n != 1 {
		t.Fatalf("onErr called %d times; want once", n)
	}
}

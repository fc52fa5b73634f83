package camsim

import (
	"bytes"
	"net"
	"testing"
)

// recConn records each Write.
type recConn struct {
	net.Conn
	writes [][]byte
}

func (c *recConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func rtpFrame(ch byte, marker bool, n int) []byte {
	p := make([]byte, 4+12+n)
	p[0], p[1], p[2], p[3] = '$', ch, byte((12+n)>>8), byte(12+n)
	p[4], p[5] = 0x80, 96
	if marker {
		p[5] |= 0x80
	}
	return p
}

// TestFrameConn checks that a frame's packets go out in one write when its
// last packet (marker) is written, that RTCP and RTSP messages flush what
// is held first, and that the bytes and their order do not change.
func TestFrameConn(t *testing.T) {
	rec := &recConn{}
	c := &frameConn{Conn: rec}
	in := [][]byte{
		rtpFrame(0, false, 1400), rtpFrame(0, false, 1400), rtpFrame(0, true, 300), // one frame
		rtpFrame(0, false, 100), rtpFrame(1, false, 28), // RTCP flushes the held packet
		[]byte("RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n"),
		rtpFrame(0, false, 100), []byte("RTSP/1.0 200 OK\r\nCSeq: 4\r\n\r\n"),
	}
	var all []byte
	for _, p := range in {
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
		all = append(all, p...)
	}
	want := []int{len(in[0]) + len(in[1]) + len(in[2]), len(in[3]) + len(in[4]), len(in[5]), len(in[6]) + len(in[7])}
	if len(rec.writes) != len(want) {
		t.Fatalf("%d writes, want %d", len(rec.writes), len(want))
	}
	for i, w := range rec.writes {
		if len(w) != want[i] {
			t.Errorf("write %d: %d bytes, want %d", i, len(w), want[i])
		}
	}
	if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, all) {
		t.Fatal("the bytes written differ from those given")
	}
	// A frame larger than the buffer is flushed before it overflows.
	rec.writes = nil
	for range frameWriteMax/1416 + 2 {
		c.Write(rtpFrame(0, false, 1400))
	}
	if len(rec.writes) != 1 || len(rec.writes[0]) > frameWriteMax {
		t.Fatalf("%d writes (first %d bytes); want one of at most %d", len(rec.writes), len(rec.writes[0]), frameWriteMax)
	}
}

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestReactorEnd: a connection moved to the reactor sees the peer's end
// of the stream (FIN after data: the data, then io.EOF) and a reset
// (an error), each without waiting for anything more to arrive.
func TestReactorEnd(t *testing.T) {
	for _, reset := range []bool{false, true} {
		c, peer, _ := movedConn(t, time.Millisecond)
		read := make(chan error, 1)
		var got []byte
		go func() {
			b := make([]byte, 10)
			for {
				n, err := c.Read(b)
				got = append(got, b[:n]...)
				if err != nil {
					read <- err
					return
				}
			}
		}()
		time.Sleep(20 * time.Millisecond) // the reader waits
		if _, err := io.WriteString(peer, "bye"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if reset {
			peer.(*net.TCPConn).SetLinger(0)
		}
		peer.Close()
		select {
		case err := <-read:
			if reset && (err == nil || errors.Is(err, io.EOF)) || !reset && !errors.Is(err, io.EOF) {
				t.Errorf("reset %v: read ended with %v", reset, err)
			}
			if string(got) != "bye" {
				t.Errorf("reset %v: read %q, want bye", reset, got)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("reset %v: the read never ended", reset)
		}
		c.Close()
	}
}

// TestReactorFarDeadline: a deadline past what Unix nanoseconds hold
// (after 2262) is far in the future, as with Go's own connections, not
// one already passed.
func TestReactorFarDeadline(t *testing.T) {
	c, peer, _ := movedConn(t, time.Millisecond)
	defer c.Close()
	c.SetDeadline(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
	go func() {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(peer, "x")
	}()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Errorf("Read with a deadline in the year 3000: %v", err)
	}
	if _, err := c.Write([]byte("y")); err != nil {
		t.Errorf("Write with a deadline in the year 3000: %v", err)
	}
	// And one before 1678 has passed.
	c.SetReadDeadline(time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with a deadline in the year 1: %v, want a deadline error", err)
	}
}

package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// The read-ahead camera connection returns the byte stream unchanged
// whatever the read sizes, then io.EOF, and honours read deadlines.
func TestReadAheadConn(t *testing.T) {
	tc, peer := tcpPair(t)
	c := newReadAheadConn(tc.Conn)
	if _, ok := c.(*readAheadConn); !ok && fastSockets {
		t.Fatalf("newReadAheadConn(%T) did not wrap it", tc.Conn)
	}

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with nothing sent and a passed deadline: %v, want a deadline error", err)
	}
	c.SetReadDeadline(time.Time{})

	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(rand.IntN(256))
	}
	go func() {
		rest := want
		for len(rest) > 0 {
			n := min(len(rest), 1+rand.IntN(100_000))
			if _, err := peer.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		peer.Close()
	}()
	var got bytes.Buffer
	buf := make([]byte, 100_000)
	for {
		n, err := c.Read(buf[:1+rand.IntN(len(buf))])
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes that differ from the %d sent", got.Len(), len(want))
	}
}

// A connection that is not a socket is left as it is.
func TestReadAheadConnNotSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := newReadAheadConn(a); c != a {
		t.Fatalf("newReadAheadConn(net.Pipe) = %T, want it unchanged", c)
	}
}

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// movedConn is the server end of a loopback TCP pair moved to a reactor
// (as the tap's connection is once armed), and the peer.
func movedConn(t *testing.T, interval time.Duration) (*readAheadConn, net.Conn, *reactor) {
	t.Helper()
	tc, peer := tcpPair(t)
	c := newReadAheadConn(tc.Conn).(*readAheadConn)
	r, err := reactorFor(interval)
	if err != nil {
		t.Fatal(err)
	}
	c.coalesce = interval
	c.moveToReactor()
	if c.rfd.Load() == nil {
		t.Fatal("the connection was not moved to the reactor")
	}
	return c, peer, r
}

// A connection moved to the reactor reads the byte stream unchanged
// (through the reactor's signals), writes, honours read and write
// deadlines, and on Close unblocks its reader, leaves the reactor and
// closes the socket: the peer reads the end of the stream.
func TestReactorConn(t *testing.T) {
	c, peer, r := movedConn(t, time.Millisecond)
	before := r.registered()

	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "hello" {
		t.Fatalf("peer read %q, %v", got, err)
	}

	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with nothing sent and a passed deadline: %v, want a deadline error", err)
	}
	c.SetReadDeadline(time.Time{})

	checkReactorStream(t, c, peer)
	checkReactorWriteDeadline(t, c)

	// Close while a read waits: the read ends, the socket is closed once.
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		read <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read pending at Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read pending at Close did not return")
	}
	if err := c.Close(); err == nil {
		t.Error("a second Close returned no error")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	if n := r.registered(); n != before-1 {
		t.Errorf("the reactor has %d sockets after Close, want %d", n, before-1)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, peer); err != nil {
		t.Fatalf("the peer did not see the connection end: %v", err)
	}
	if r.idles.Load() == 0 || r.blocks.Load() != 0 {
		t.Errorf("the reactor waited idle %d times, %d of them blocking: want its idle waits in the netpoller", r.idles.Load(), r.blocks.Load())
	}
}

// checkReactorStream: bytes sent in pieces with pauses arrive through the
// reactor whole and in order.
func checkReactorStream(t *testing.T, c, peer net.Conn) {
	t.Helper()
	want := make([]byte, 300_000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 20_000)
			if _, err := peer.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
			time.Sleep(time.Millisecond)
		}
	}()
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != string(want) {
		t.Fatal("the bytes read through the reactor differ from those sent")
	}
}

// checkReactorWriteDeadline: a write to a peer that does not read ends at
// the write deadline.
func checkReactorWriteDeadline(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	big := make([]byte, 1<<20)
	var werr error
	for range 64 {
		if _, werr = c.Write(big); werr != nil {
			break
		}
	}
	if !errors.Is(werr, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a full socket past its deadline: %v", werr)
	}
}

// The reactor coalesces: with the interval, sockets that become readable
// while it sleeps are signalled by one wake-up.
func TestReactorCoalesces(t *testing.T) {
	const n = 20
	r, err := reactorFor(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*readAheadConn, n)
	peers := make([]net.Conn, n)
	for i := range conns {
		conns[i], peers[i], _ = movedConn(t, 20*time.Millisecond)
	}
	done := make(chan error, n)
	for _, c := range conns {
		go func() {
			for range 10 {
				if _, err := io.ReadFull(c, make([]byte, 100)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	time.Sleep(50 * time.Millisecond) // the first (registration) wake-ups are over
	w0 := r.wakes.Load()
	for range 10 {
		for _, p := range peers {
			if _, err := p.Write(make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// 200 writes over about 50 ms, looked at every 20 ms: a handful of
	// wake-ups (one per write would be 200).
	if w := r.wakes.Load() - w0; w > 20 {
		t.Errorf("%d wake-ups of the reactor for 200 writes to %d sockets", w, n)
	}
	for _, c := range conns {
		c.Close()
	}
}

// A reload that removes a camera read through the reactor takes its socket
// out; one that adds it back with read_coalesce 0 reads it through Go's
// netpoller again; packets flow throughout.
func TestReactorReload(t *testing.T) {
	const interval = 3 * time.Millisecond
	r, err := reactorFor(interval)
	if err != nil {
		t.Fatal(err)
	}
	sim := startCamsim(t, "cam1", "cam2")
	lobby := Camera{Name: "lobby", URL: MustParseSecretURL(sim.URL("cam1")), Transport: TransportTCP}
	hall := Camera{Name: "hall", URL: MustParseSecretURL(sim.URL("cam2")), Transport: TransportTCP}
	cfg := testConfig(lobby, hall)
	cfg.CameraSide.ReadCoalesce = interval
	log, _ := newLog(t)
	p := startProxy(t, cfg, log)
	waitReader(t, "a reader of the camera", 10*time.Second, readerURL(p, "lobby"))
	waitFor(t, "the cameras' sockets in the reactor", 5*time.Second, func() bool { return r.registered() == 2 })

	cfg2 := testConfig(hall)
	cfg2.CameraSide.ReadCoalesce = interval
	if err := p.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed camera's socket out of the reactor", 5*time.Second, func() bool { return r.registered() == 1 })

	cfg3 := cfg
	cfg3.CameraSide.ReadCoalesce = 0
	if err := p.Reload(cfg3); err != nil {
		t.Fatal(err)
	}
	rd := waitReader(t, "a reader of the camera added back", 10*time.Second, readerURL(p, "lobby"))
	waitFor(t, "packets", 5*time.Second, func() bool { return rd.packets.Load() > 50 })
	if n := r.registered(); n != 0 {
		t.Errorf("the reactor has %d sockets with read_coalesce 0", n)
	}
}

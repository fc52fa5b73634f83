package proxy

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/cordon-vms/cordon/proxy/internal/playonly"
)

// gateTry acquires st's gate for sc in a goroutine and returns a channel
// that gets whether it was taken.
func gateTry(gs *setupGates, sc *gortsplib.ServerConn, st *gortsplib.ServerStream, excl bool, wait time.Duration) <-chan bool {
	ch := make(chan bool, 1)
	go func() { ch <- gs.acquire(sc, st, excl, wait, time.Minute, nil) }()
	return ch
}

func TestSetupGateSharedAndExclusive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gs setupGates
		st := &gortsplib.ServerStream{}
		a, b, c, d := &gortsplib.ServerConn{}, &gortsplib.ServerConn{}, &gortsplib.ServerConn{}, &gortsplib.ServerConn{}
		// Shared holders (SETUPs that only write their own session) do not wait.
		if !gs.acquire(a, st, false, time.Second, time.Minute, nil) || !gs.acquire(b, st, false, time.Second, time.Minute, nil) {
			t.Fatal("two shared holds: want both taken at once")
		}
		// A UDP first SETUP waits for them...
		excl := gateTry(&gs, c, st, true, 10*time.Second)
		synctest.Wait()
		select {
		case <-excl:
			t.Fatal("exclusive hold taken while shared holds are in place")
		default:
		}
		// ...and a shared one that comes after it waits behind it (fair).
		late := gateTry(&gs, d, st, false, 10*time.Second)
		synctest.Wait()
		select {
		case <-late:
			t.Fatal("a later shared hold overtook a waiting exclusive one")
		default:
		}
		gs.release(a)
		gs.release(a) // twice: nothing more
		synctest.Wait()
		select {
		case <-excl:
			t.Fatal("exclusive hold taken while one shared hold is in place")
		default:
		}
		gs.release(b)
		if !<-excl {
			t.Fatal("exclusive hold not taken once the shared ones ended")
		}
		synctest.Wait()
		select {
		case <-late:
			t.Fatal("shared hold taken during the exclusive one")
		default:
		}
		gs.release(c)
		if !<-late {
			t.Fatal("shared hold not taken after the exclusive one")
		}
		gs.release(d)
		if n := len(gs.gates); n != 0 {
			t.Errorf("%d gates left after every hold ended, want 0", n)
		}
	})
}

func TestSetupGateTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gs setupGates
		st, other := &gortsplib.ServerStream{}, &gortsplib.ServerStream{}
		a, b, c := &gortsplib.ServerConn{}, &gortsplib.ServerConn{}, &gortsplib.ServerConn{}
		if !gs.acquire(a, st, true, time.Second, time.Minute, nil) {
			t.Fatal("first hold not taken")
		}
		// Another camera's stream has its own gate.
		if !gs.acquire(c, other, true, time.Second, time.Minute, nil) {
			t.Fatal("another stream's gate was busy")
		}
		gs.release(c)
		start := time.Now()
		if gs.acquire(b, st, false, 3*time.Second, time.Minute, nil) {
			t.Fatal("hold taken while an exclusive one is in place")
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("gave up after %v, want 3s", d)
		}
		gs.release(b) // nothing held: no effect
		gs.release(a)
		if n := len(gs.gates); n != 0 {
			t.Errorf("%d gates left, want 0", n)
		}
	})
}

// A hold whose OnResponse never comes ends by itself after holdMax.
func TestSetupGateHoldExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gs setupGates
		st := &gortsplib.ServerStream{}
		a, b := &gortsplib.ServerConn{}, &gortsplib.ServerConn{}
		var expired atomic.Int32
		if !gs.acquire(a, st, true, time.Second, 5*time.Second, func() { expired.Add(1) }) {
			t.Fatal("first hold not taken")
		}
		start := time.Now()
		if !gs.acquire(b, st, true, 10*time.Second, time.Minute, nil) {
			t.Fatal("hold not taken after the first one expired")
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("waited %v, want 5s (the first hold's limit)", d)
		}
		if expired.Load() != 1 {
			t.Errorf("expired called %d times, want 1", expired.Load())
		}
		gs.release(a) // late OnResponse: already given back, no effect
		gs.release(b)
		if n := len(gs.gates); n != 0 {
			t.Errorf("%d gates left, want 0", n)
		}
	})
}

// BenchmarkSetupGate is what the gate adds to a SETUP on the normal
// (uncontended) path: one acquire and one release. Compare with
// BenchmarkSetupRoundTrip, a reader's SETUP of two medias through the proxy.
func BenchmarkSetupGate(b *testing.B) {
	var gs setupGates
	st, sc := &gortsplib.ServerStream{}, &gortsplib.ServerConn{}
	for b.Loop() {
		if !gs.acquire(sc, st, true, time.Second, time.Minute, nil) {
			b.Fatal("gate busy")
		}
		gs.release(sc)
	}
}

// BenchmarkSetupRoundTrip: a client's SETUP of two medias over TCP on
// loopback against a bare gortsplib server (no proxy), the baseline for
// BenchmarkSetupGate.
func BenchmarkSetupRoundTrip(b *testing.B) {
	var st *gortsplib.ServerStream
	srv := &gortsplib.Server{Handler: &playonly.Handler{Lookup: func(string) *gortsplib.ServerStream { return st }},
		RTSPAddress: "127.0.0.1:0"}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	video := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}
	audio := &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}}}
	st = &gortsplib.ServerStream{Server: srv, Desc: &description.Session{Medias: []*description.Media{video, audio}}}
	if err := st.Initialize(); err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	u, err := base.ParseURL("rtsp://" + srv.NetListener().Addr().String() + "/cam")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer() // the two SETUPs only
		proto := gortsplib.ProtocolTCP
		cl := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto}
		if err := cl.Start(); err != nil {
			b.Fatal(err)
		}
		desc, _, err := cl.Describe(u)
		if err == nil {
			b.StartTimer()
			err = cl.SetupAll(desc.BaseURL, desc.Medias)
			b.StopTimer()
		}
		cl.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// logBuf collects a proxy's log (to check what it never says) and echoes it
// to the test output.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return l.out.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLog(t *testing.T) (*slog.Logger, *logBuf) {
	lb := &logBuf{out: t.Output()}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// startCamsim serves simulated cameras on loopback and returns their URLs by name.
func startCamsim(t *testing.T, names ...string) *camsim.Server {
	t.Helper()
	s := &camsim.Server{Addr: "127.0.0.1:0"}
	for _, n := range names {
		s.Cameras = append(s.Cameras, camsim.Camera{Name: n, Codec: "h264", FPS: 25})
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// testConfig is a config bound to loopback ephemeral ports, UDP off,
// anonymous readers (a test that sets Readers clears AllowAnonymous).
func testConfig(cams ...Camera) Config {
	return Config{
		Listen:         Listen{RTSP: "127.0.0.1:0", Admin: "127.0.0.1:0", UDPRTP: "off", UDPRTCP: "off"},
		AllowAnonymous: true,
		Cameras:        cams,
		Timeouts: Timeouts{
			Camera: 3 * time.Second, BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second,
			AuthFailureDelay: 20 * time.Millisecond, OnDemandClose: 500 * time.Millisecond,
		},
	}
}

// withUDP picks a free even/odd UDP port pair on loopback.
func withUDP(t testing.TB, cfg Config) Config {
	t.Helper()
	for range 50 {
		port := 20000 + 2*rand.IntN(15000)
		a, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		b, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		cfg.Listen.UDPRTP = fmt.Sprintf("127.0.0.1:%d", port)
		cfg.Listen.UDPRTCP = fmt.Sprintf("127.0.0.1:%d", port+1)
		return cfg
	}
	t.Fatal("no free UDP port pair")
	return cfg
}

func startProxy(t *testing.T, cfg Config, log *slog.Logger) *Proxy {
	t.Helper()
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func readerURL(p *Proxy, cam string) string {
	return fmt.Sprintf("rtsp://%s/%s", p.RTSPAddr(), cam)
}

// rtspReader is an in-process reader that counts packets and records the time
// of each.
type rtspReader struct {
	cl      *gortsplib.Client
	desc    *description.Session
	packets atomic.Int64
	mu      sync.Mutex
	times   []time.Time
	first   []*rtp.Packet
	bytes   atomic.Int64 // RTP bytes received
	srs     atomic.Int64 // RTCP sender reports received
	ntpOK   atomic.Int64 // RTP packets the client could map to wall-clock time (needs an SR)
}

func (r *rtspReader) gaps() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m time.Duration
	for i := 1; i < len(r.times); i++ {
		m = max(m, r.times[i].Sub(r.times[i-1]))
	}
	return m
}

// waitReader dials a TCP reader of rawURL until it plays (the camera may
// still be connecting), failing the test with what after timeout.
func waitReader(t *testing.T, what string, timeout time.Duration, rawURL string) *rtspReader {
	t.Helper()
	var r *rtspReader
	waitFor(t, what, timeout, func() bool {
		var err error
		r, err = dialReader(t, rawURL, gortsplib.ProtocolTCP)
		return err == nil
	})
	return r
}

func dialReader(t *testing.T, rawURL string, proto gortsplib.Protocol) (*rtspReader, error) {
	t.Helper()
	r, err := dialReaderNoCleanup(rawURL, proto)
	if err != nil {
		return nil, err
	}
	t.Cleanup(r.cl.Close)
	return r, nil
}

func dialReaderNoCleanup(rawURL string, proto gortsplib.Protocol) (*rtspReader, error) {
	u, err := base.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	r := &rtspReader{cl: &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto, ReadTimeout: 10 * time.Second}}
	if err := r.cl.Start(); err != nil {
		return nil, err
	}
	desc, _, err := r.cl.Describe(u)
	if err != nil {
		r.cl.Close()
		return nil, err
	}
	r.desc = desc
	if err := r.cl.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		r.cl.Close()
		return nil, err
	}
	r.cl.OnPacketRTCPAny(func(_ *description.Media, pkt rtcp.Packet) {
		if _, ok := pkt.(*rtcp.SenderReport); ok {
			r.srs.Add(1)
		}
	})
	r.cl.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		r.packets.Add(1)
		r.bytes.Add(int64(pkt.MarshalSize()))
		if _, ok := r.cl.PacketNTP(m, pkt); ok {
			r.ntpOK.Add(1)
		}
		r.mu.Lock()
		r.times = append(r.times, time.Now())
		if len(r.first) < 8 {
			r.first = append(r.first, pkt)
		}
		r.mu.Unlock()
	})
	if _, err := r.cl.Play(nil); err != nil {
		r.cl.Close()
		return nil, err
	}
	return r, nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	return string(b)
}

func TestFanOutTCPAndUDP(t *testing.T) {
	sim := startCamsim(t, "cam1")
	log, _ := newLog(t)
	cfg := withUDP(t, testConfig(Camera{Name: "lobby", URL: MustParseSecretURL(sim.URL("cam1"))}))
	p := startProxy(t, cfg, log)
	url := readerURL(p, "lobby")

	var readers []*rtspReader
	for _, proto := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP, gortsplib.ProtocolTCP} {
		var r *rtspReader
		waitFor(t, "camera up", 10*time.Second, func() bool {
			var err error
			r, err = dialReader(t, url, proto)
			return err == nil
		})
		readers = append(readers, r)
	}
	for i, r := range readers {
		waitFor(t, fmt.Sprintf("reader %d packets", i), 5*time.Second, func() bool { return r.packets.Load() > 50 })
	}
	// A new reader starts on a keyframe: its first video packet carries an SPS or IDR.
	r := readers[2]
	r.mu.Lock()
	first := r.first[0]
	r.mu.Unlock()
	// Every random-access unit the cleaner sends starts with the parameter
	// sets, alone or first in a STAP-A (after an AUD when aud is on).
	if !startsWithSPS(first.Payload) {
		t.Errorf("first packet of a new reader is not a keyframe start (payload %x)", first.Payload[:min(8, len(first.Payload))])
	}
	st := p.Status()
	if len(st) != 1 || st[0].State != stateUp || len(st[0].Readers) != 3 {
		t.Fatalf("status = %+v", st)
	}
	batched := 0
	for _, rs := range st[0].Readers {
		if rs.BatchedWrites {
			batched++
		}
	}
	if batched != 3 {
		t.Errorf("%d readers use batched writes, want 3 (TCP frames, UDP sendmmsg)", batched)
	}
	// Batched readers get RTCP sender reports too: they can map RTP time to
	// wall-clock time.
	for i, r := range readers {
		if r.srs.Load() == 0 || r.ntpOK.Load() == 0 {
			t.Errorf("reader %d: %d sender reports, %d packets with NTP time; want both > 0", i, r.srs.Load(), r.ntpOK.Load())
		}
	}
}

func TestContextDone(t *testing.T) {
	sim := startCamsim(t, "cam1")
	log, _ := newLog(t)
	p, err := New(testConfig(Camera{Name: "a", URL: MustParseSecretURL(sim.URL("cam1"))}), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	_ = strings.Contains
}

// startsWithSPS reports whether an H.264 RTP payload is an SPS, or a STAP-A
// whose first NAL unit is an SPS or whose second is after an AUD.
func startsWithSPS(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch p[0] & 0x1f {
	case 7:
		return true
	case 24:
		for i, b := 0, p[1:]; i < 2 && len(b) > 2; i++ {
			n := int(b[0])<<8 | int(b[1])
			if n < 1 || 2+n > len(b) {
				return false
			}
			switch b[2] & 0x1f {
			case 7:
				return true
			case 9: // AUD: look at the next one
			default:
				return false
			}
			b = b[2+n:]
		}
	}
	return false
}

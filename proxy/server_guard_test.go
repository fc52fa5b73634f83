package proxy

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// rtspConn is a raw RTSP client connection: one request at a time, its
// response read back (interleaved frames before it are skipped).
type rtspConn struct {
	t    *testing.T
	c    net.Conn
	br   *bufio.Reader
	cseq int
}

func dialRTSP(t *testing.T, addr string) *rtspConn {
	t.Helper()
	return dialRTSPFrom(t, addr, nil)
}

// dialRTSPFrom dials addr from local (nil: any).
func dialRTSPFrom(t *testing.T, addr string, local net.Addr) *rtspConn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rtspConn{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends a request and returns its response (nil and the error when the
// connection fails).
func (rc *rtspConn) do(method base.Method, url string, h base.Header) (*base.Response, error) {
	rc.t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.cseq++
	hh := base.Header{"CSeq": base.HeaderValue{fmt.Sprint(rc.cseq)}}
	for k, v := range h {
		hh[k] = v
	}
	b, _ := (&base.Request{Method: method, URL: u, Header: hh}).Marshal()
	rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		return nil, err
	}
	for {
		if p, err := rc.br.Peek(1); err != nil {
			return nil, err
		} else if p[0] == '$' {
			var f base.InterleavedFrame
			if err := f.Unmarshal(rc.br); err != nil {
				return nil, err
			}
			continue
		}
		var res base.Response
		if err := res.Unmarshal(rc.br); err != nil {
			return nil, err
		}
		return &res, nil
	}
}

// status is do's status code, 0 when the connection failed.
func (rc *rtspConn) status(method base.Method, url string, h base.Header) base.StatusCode {
	rc.t.Helper()
	res, err := rc.do(method, url, h)
	if err != nil {
		return 0
	}
	return res.StatusCode
}

func basicAuth(user, pass string) base.HeaderValue {
	return base.HeaderValue{"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// setupSession DESCRIBEs and SETUPs the first track of cam over TCP and
// returns the session ID.
func (rc *rtspConn) setupSession(url string, auth base.HeaderValue) string {
	rc.t.Helper()
	h := base.Header{}
	if auth != nil {
		h["Authorization"] = auth
	}
	if res, err := rc.do(base.Describe, url, h); err != nil || res.StatusCode != base.StatusOK {
		rc.t.Fatalf("DESCRIBE: %v %v", res, err)
	}
	h["Transport"] = base.HeaderValue{"RTP/AVP/TCP;unicast;interleaved=0-1"}
	res, err := rc.do(base.Setup, url+"/trackID=0", h)
	if err != nil || res.StatusCode != base.StatusOK {
		rc.t.Fatalf("SETUP: %v %v", res, err)
	}
	var sx headers.Session
	if err := sx.Unmarshal(res.Header["Session"]); err != nil {
		rc.t.Fatal(err)
	}
	return sx.Session
}

// A session belongs to the connection that created it: another connection
// (here unauthenticated, from the same address) naming it gets 454 for
// every method, and the owner's session is not disturbed.
func TestSessionBoundToConnection(t *testing.T) {
	sim := startCamsim(t, "a")
	log, _ := newLog(t)
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL(sim.URL("a"))})
	cfg.Readers = []Reader{{User: "nvr", Password: "good", Cameras: []string{"*"}, Networks: []string{"127.0.0.1/32"}}}
	cfg.AllowAnonymous = false
	p := startProxy(t, cfg, log)
	p.sleep = func(time.Duration) {}
	url := readerURL(p, "a")
	addr := p.RTSPAddr().String()
	waitFor(t, "camera up", 10*time.Second, func() bool { return p.Status()[0].State == stateUp })

	owner := dialRTSP(t, addr)
	id := owner.setupSession(url, basicAuth("nvr", "good"))

	for _, m := range []base.Method{base.Play, base.Pause, base.GetParameter, base.SetParameter, base.Options, base.Setup, base.Teardown} {
		thief := dialRTSP(t, addr)
		h := base.Header{"Session": base.HeaderValue{id}}
		u := url
		if m == base.Setup {
			u += "/trackID=0"
			h["Transport"] = base.HeaderValue{"RTP/AVP/TCP;unicast;interleaved=2-3"}
		}
		want := base.StatusSessionNotFound
		if m == base.Pause {
			want = base.StatusNotImplemented // the proxy has no PAUSE
		}
		if got := thief.status(m, u, h); got != want {
			t.Errorf("%s with another connection's session: %d, want %d", m, got, want)
		}
	}
	if got := owner.status(base.Play, url, base.Header{"Session": base.HeaderValue{id}, "Authorization": basicAuth("nvr", "good")}); got != base.StatusOK {
		t.Fatalf("owner's PLAY: %d", got)
	}
	// The owner receives media.
	owner.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f base.InterleavedFrame
	if err := f.Unmarshal(owner.br); err != nil {
		t.Fatalf("owner receives no media: %v", err)
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	if !strings.Contains(metrics, `cordon_reader_refused_total{reason="session"} 7`) {
		t.Errorf("/metrics does not count the 7 refused requests:\n%s", grepLines(metrics, "refused"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// sndbufListener shrinks the send buffer of every accepted connection, so
// that readers that never read reach the proxy's own queues at once.
type sndbufListener struct{ net.Listener }

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// Readers that never read cannot make the proxy buffer more than
// limits.output_buffer_bytes all together: the reader holding the most is
// disconnected (counted, logged), and a reader that keeps up keeps playing.
func TestNeverReadingReadersStayWithinBudget(t *testing.T) {
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "a", Codec: "h264", FPS: 25, Bitrate: 4_000_000}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	log, lb := newLog(t)
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL(sim.URL("a")), MaxReaders: -1})
	const budget = 2 << 20
	cfg.Limits = Limits{OutputBufferBytes: budget, ReaderQueueBytes: 256 << 10}
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p.listen = func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		return sndbufListener{ln}, err
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	url := readerURL(p, "a")
	good := waitReader(t, "good reader", 10*time.Second, url)

	const n = 50
	small := &net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	for i := range n {
		c, err := small.Dial("tcp", p.RTSPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rc := &rtspConn{t: t, c: c, br: bufio.NewReader(c)}
		id := rc.setupSession(url, nil)
		if got := rc.status(base.Play, url, base.Header{"Session": base.HeaderValue{id}}); got != base.StatusOK {
			t.Fatalf("silent reader %d: PLAY %d", i, got)
		}
		// ...and never reads again.
	}
	waitFor(t, "readers evicted", 20*time.Second, func() bool { return p.outBudget.evicted.Load() >= 5 })
	before := good.packets.Load()
	time.Sleep(time.Second)
	if good.packets.Load() == before {
		t.Error("the good reader stopped receiving")
	}
	if pk := p.outBudget.peak.Load(); pk > budget {
		t.Errorf("output buffers peaked at %d bytes, over the %d budget", pk, budget)
	}
	var queued int64
	p.outBudget.mu.Lock()
	for w := range p.outBudget.writers {
		queued += w.pending.Load()
	}
	p.outBudget.mu.Unlock()
	if queued > budget {
		t.Errorf("readers hold %d bytes, over the %d budget", queued, budget)
	}
	t.Logf("peak %d bytes, %d readers evicted", p.outBudget.peak.Load(), p.outBudget.evicted.Load())
	if !strings.Contains(lb.String(), "output buffers are full") {
		t.Error("evictions were not logged")
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	if !strings.Contains(metrics, `cordon_reader_disconnected_total{reason="output_budget"}`) {
		t.Error("/metrics lacks cordon_reader_disconnected_total")
	}
}

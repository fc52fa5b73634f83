package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
)

// flakyListener fails Accept with errs[i] for the first len(errs) calls,
// then accepts from the real listener.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// Accept errors such as EMFILE do not end the listener: Accept retries with
// a doubling delay, the failure is visible (stats, /healthz) while it lasts,
// and the next connection is accepted.
func TestGuardedListenerRetriesAcceptErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	fl := &flakyListener{Listener: inner, errs: []error{emfile, emfile, emfile, syscall.ECONNABORTED}}
	st := &listenerStats{}
	gl := newGuardedListener(fl, "rtsp", slog.New(slog.DiscardHandler), time.Second, Limits{MaxConnections: 10, MaxConnectionsPerSource: 10}, st)
	defer gl.Close()
	var delays []time.Duration
	var failingSeen []bool
	gl.after = func(d time.Duration) <-chan time.Time {
		delays = append(delays, d)
		failingSeen = append(failingSeen, st.failing.Load() != nil)
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	go func() {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := gl.Accept()
	if err != nil {
		t.Fatalf("Accept gave up: %v", err)
	}
	c.Close()
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	if fmt.Sprint(delays) != fmt.Sprint(want) {
		t.Errorf("retry delays %v, want %v", delays, want)
	}
	for i, f := range failingSeen {
		if !f {
			t.Errorf("retry %d: listener not reported as failing", i)
		}
	}
	if n := st.acceptErrors.Load(); n != 4 {
		t.Errorf("%d accept errors counted, want 4", n)
	}
	if st.failing.Load() != nil {
		t.Error("still reported as failing after a successful Accept")
	}
	if st.open.Load() != 0 {
		t.Errorf("%d connections open after Close, want 0", st.open.Load())
	}
	// Closing ends Accept, even in the middle of a retry delay.
	fl.mu.Lock()
	fl.errs = []error{emfile}
	fl.mu.Unlock()
	gl.after = func(time.Duration) <-chan time.Time { return nil } // never fires
	go func() { time.Sleep(50 * time.Millisecond); gl.Close() }()
	if _, err := gl.Accept(); err == nil {
		t.Fatal("Accept on a closed listener succeeded")
	}
}

// isClosedByPeer reports whether the server closed c within d (a read
// returns EOF or a reset), not merely stayed silent.
func isClosedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 512))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// A connection that sends less than a request is closed after
// timeouts.reader, and connections are capped per source address (the
// excess closed at once) while other sources still connect.
func TestSilentConnectionsAndPerSourceCap(t *testing.T) {
	log, _ := newLog(t)
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL("rtsp://127.0.0.1:1/a"), OnDemand: true})
	cfg.Timeouts.Reader = 300 * time.Millisecond
	cfg.Limits = Limits{MaxConnectionsPerSource: 3}
	p := startProxy(t, cfg, log)
	addr := p.RTSPAddr().String()

	var silent []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i == 0 {
			c.Write([]byte("OP")) // fewer than the 4 bytes gortsplib waits for
		}
		silent = append(silent, c)
	}
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if !isClosedByPeer(over, 2*time.Second) {
		t.Error("a 4th connection from the same source was not closed")
	}
	// Another source address (127.0.0.2 is loopback too) still gets in.
	other := dialRTSPFrom(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if got := other.status(base.Options, "rtsp://"+addr+"/a", nil); got != base.StatusOK {
		t.Errorf("OPTIONS from another source: %d", got)
	}
	for i, c := range silent {
		if !isClosedByPeer(c, 3*time.Second) {
			t.Errorf("silent connection %d still open after 3 s (timeouts.reader is 300 ms)", i)
		}
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	if want := `cordon_reader_connections_refused_total{limit="max_connections_per_source",listener="rtsp"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q:\n%s", want, grepLines(metrics, "cordon_reader_conn"))
	}
}

// The real thing: with file descriptors exhausted, Accept fails with
// EMFILE; the listener must survive it, /healthz must say so meanwhile,
// and readers must connect again once descriptors are free. It runs in a
// child process (the test binary again) with a low RLIMIT_NOFILE.
func TestFDExhaustionKeepsListener(t *testing.T) {
	if os.Getenv("CORDON_FD_CHILD") == "1" {
		fdExhaustionChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFDExhaustionKeepsListener$", "-test.v")
	cmd.Env = append(os.Environ(), "CORDON_FD_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fd-child-ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

func fdExhaustionChild(t *testing.T) {
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL("rtsp://127.0.0.1:1/a"), OnDemand: true})
	cfg.Timeouts.Reader = time.Minute // silent connections stay
	cfg.Limits = Limits{MaxConnections: 1000, MaxConnectionsPerSource: 1000}
	p := startProxy(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	addr := p.RTSPAddr().String()
	// A health check connection opened before the limit bites.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 1}}
	healthz := func() (int, string) {
		res, err := hc.Get(fmt.Sprintf("http://%s/healthz", p.AdminAddr()))
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := healthz(); code != 200 {
		t.Fatalf("healthz before: %d %s", code, body)
	}
	limit := uint64(openFDs(t) + 40)
	var old syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	// Silent clients until the process runs out of descriptors (each
	// connection costs one on each side).
	var conns []net.Conn
	for range 200 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	waitFor(t, "accept errors", 5*time.Second, func() bool { return len(p.listenerProblems()) > 0 })
	t.Logf("%d silent connections; problems: %v", len(conns), p.listenerProblems())
	for _, c := range conns {
		c.Close()
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	waitFor(t, "the listener to accept again", 5*time.Second, func() bool { return len(p.listenerProblems()) == 0 })
	rc := dialRTSP(t, addr)
	if got := rc.status(base.Options, "rtsp://"+addr+"/a", nil); got != base.StatusOK {
		t.Fatalf("OPTIONS after the descriptors came back: %d", got)
	}
	if code, body := healthz(); code != 200 {
		t.Fatalf("healthz after: %d %s", code, body)
	}
	if n := p.listeners[0].stats.acceptErrors.Load(); n == 0 {
		t.Fatal("no accept error was counted")
	}
	fmt.Println("fd-child-ok")
}

// /healthz is 503 with the reason while a reader listener cannot accept.
func TestHealthzReportsDeadListener(t *testing.T) {
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL("rtsp://127.0.0.1:1/a"), OnDemand: true})
	p := startProxy(t, cfg, nil)
	url := fmt.Sprintf("http://%s/healthz", p.AdminAddr())
	if body := httpGet(t, url); body != "ok\n" {
		t.Fatalf("healthz: %q", body)
	}
	// The RTSP server stops (as gortsplib's does on an Accept error it is
	// given): the watcher records it.
	p.servers[0].Close()
	waitFor(t, "listener reported stopped", 5*time.Second, func() bool { return len(p.listenerProblems()) > 0 })
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "rtsp listener stopped") {
		t.Fatalf("healthz with a stopped listener: %d %q", res.StatusCode, b)
	}
}

func TestLimitsDefaults(t *testing.T) {
	c := Config{Cameras: []Camera{{Name: "a"}, {Name: "b", MaxReaders: -1}, {Name: "c", MaxReaders: 3}}}.withDefaults()
	want := Limits{MaxConnections: 1024, MaxConnectionsPerSource: 64, OutputBufferBytes: 256 << 20, ReaderQueueBytes: 8 << 20}
	if c.Limits != want {
		t.Errorf("limits %+v, want %+v", c.Limits, want)
	}
	for i, mr := range []int{32, -1, 3} {
		if got := c.Cameras[i].MaxReaders; got != mr {
			t.Errorf("camera %d: max_readers %d, want %d", i, got, mr)
		}
	}
	small := Config{Limits: Limits{MaxConnections: 10, OutputBufferBytes: 1 << 20}}.withDefaults().Limits
	if small.MaxConnectionsPerSource != 10 || small.ReaderQueueBytes != 1<<20 {
		t.Errorf("defaults not capped by the configured totals: %+v", small)
	}
}

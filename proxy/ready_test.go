package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestReadyz: /readyz is ready only between Start and Close and while the
// reader listeners accept; /healthz looks at the listeners only.
func TestReadyz(t *testing.T) {
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL("rtsp://127.0.0.1:1/a"), OnDemand: true})
	p, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.notReady(); got != "starting" {
		t.Errorf("before Start: %q, want starting", got)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get("http://" + p.AdminAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz after Start: %d %q", code, body)
	}
	msg := "stopped: accept tcp: use of closed network connection"
	p.listeners[0].stats.stopped.Store(&msg)
	for _, path := range []string{"/readyz", "/healthz"} {
		if code, body := get(path); code != http.StatusServiceUnavailable || !strings.Contains(body, "rtsp listener "+msg) {
			t.Errorf("%s with a stopped listener: %d %q", path, code, body)
		}
	}
	p.listeners[0].stats.stopped.Store(nil)
	p.Close()
	if got := p.notReady(); got != "stopping" {
		t.Errorf("after Close: %q, want stopping", got)
	}
}

package metricsrv

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "cordon_test_total", Help: "A test counter."})
	c.Add(3)
	reg.MustRegister(c)
	addr, stop, err := Serve("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	res, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "cordon_test_total 3") {
		t.Fatalf("metrics:\n%s", b)
	}
	if _, _, err := Serve(addr.String(), reg, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a second listener on the same address started")
	}
}

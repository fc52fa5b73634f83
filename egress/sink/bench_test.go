package sink

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSend measures what Send costs the engine per alert: the webhook
// spools each alert durably (write, fsync, rename) before returning; the
// JSON-lines file sink, measured in the same run, is the baseline.
//
//	go test ./egress/sink -run '^$' -bench Send
func BenchmarkSend(b *testing.B) {
	ctx := context.Background()
	a := testAlert(1)
	b.Run("file", func(b *testing.B) {
		f, err := openFile(filepath.Join(b.TempDir(), "alerts.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for b.Loop() {
			if err := f.Send(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, fsync := range []bool{false, true} {
		name := "webhook-spool"
		if fsync {
			name += "-fsync"
		}
		b.Run(name, func(b *testing.B) {
			// The receiver is down (every attempt fails): Send only spools.
			tr := roundTripFunc(func(*http.Request) (*http.Response, error) { return answer(503), nil })
			w, err := newWebhook(WebhookConfig{URL: "http://soc.invalid/", SpoolDir: b.TempDir(), MinBackoff: time.Hour, Fsync: fsync,
				MaxSpoolAlerts: 1 << 30, MaxSpoolBytes: 1 << 40, CloseTimeout: time.Millisecond, transport: tr}, nil)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := w.Send(ctx, a); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			w.Close()
			os.RemoveAll(w.cfg.SpoolDir)
		})
	}
}

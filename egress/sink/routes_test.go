package sink

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/egress"
)

func TestRoutesAndFailOn(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.DiscardHandler)
	fan, err := Routes{}.Open(&out, log)
	if err != nil || len(fan.Sinks) != 1 {
		t.Fatalf("no routes: %d sinks, %v (want stdout only)", len(fan.Sinks), err)
	}
	fan.FailOn = egress.KindBeacon
	_ = fan.Send(context.Background(), egress.Alert{Kind: egress.KindVolume})
	if fan.Failed() {
		t.Error("a volume alert reached --fail-on beacon")
	}
	_ = fan.Send(context.Background(), egress.Alert{Kind: egress.KindBeacon})
	if !fan.Failed() || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("failed %v, output %q", fan.Failed(), out.String())
	}
	fan.Close()

	no := false
	file := filepath.Join(t.TempDir(), "alerts.jsonl")
	fan, err = Routes{Stdout: &no, File: file}.Open(&out, log)
	if err != nil || len(fan.Sinks) != 1 {
		t.Fatalf("file only: %d sinks, %v", len(fan.Sinks), err)
	}
	fan.Close()

	_, err = Routes{Webhook: &WebhookConfig{}}.Open(&out, log)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "alerts.webhook") {
		t.Errorf("a webhook without a URL: %v, want a ConfigError naming alerts.webhook", err)
	}
}

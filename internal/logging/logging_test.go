package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, Options{Level: "warn", Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "camera", "lobby")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"camera":"lobby"`) {
		t.Fatalf("output %q", out)
	}
	for _, o := range []Options{{Level: "verbose"}, {Format: "xml"}} {
		if _, err := New(&buf, o); err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("New(%+v) = %v, want an error naming the choices", o, err)
		}
	}
}

package egress

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenBaselinePaths(t *testing.T) {
	dir := t.TempDir()
	p := &Policy{}
	if b, err := p.OpenBaseline(dir, "", false); b != nil || err != nil {
		t.Fatalf("no baseline configured: %v %v", b, err)
	}
	if _, err := p.OpenBaseline(dir, "", true); !errors.Is(err, ErrNoBaseline) {
		t.Fatalf("reset without a baseline: %v", err)
	}
	// A relative baseline.file is relative to the policy's folder; reset
	// removes it.
	p.Baseline.File = "base.json"
	path := filepath.Join(dir, "base.json")
	if err := os.WriteFile(path, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.OpenBaseline(dir, "", false); err == nil {
		t.Fatal("a broken baseline file was read")
	}
	if b, err := p.OpenBaseline(dir, "", true); err != nil || b == nil || b.Len() != 0 {
		t.Fatalf("reset: %v %v", b, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("reset left the file: %v", err)
	}
	// --baseline overrides, as given.
	other := filepath.Join(t.TempDir(), "other.json")
	if b, err := p.OpenBaseline(dir, other, false); err != nil || b == nil || b.path != other {
		t.Fatalf("override: %+v %v", b, err)
	}
}

func TestLoadWatchlistRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cam.yml"), []byte("entries:\n  - {domain: phone-home.example, vendor: Test, note: planted}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Policy{Watchlists: []string{"cam.yml"}}
	wl, err := p.LoadWatchlist(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := wl.MatchDomain("a.phone-home.example"); !ok {
		t.Error("the policy-relative watch-list was not merged")
	}
	if _, err := p.LoadWatchlist(t.TempDir()); err == nil {
		t.Error("a missing watch-list file was not an error")
	}
}

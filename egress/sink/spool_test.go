package sink

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpoolSegments: appends roll over into new segments, delivered
// segments are deleted, and a reopened spool resumes at its cursor.
func TestSpoolSegments(t *testing.T) {
	dir := t.TempDir()
	sp, _, err := openSpool(dir, false, 1<<20, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	body := func(i int) []byte { return fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, strings.Repeat("x", 500)) }
	const n = 5000 // ≈ 2.6 MB: three segments
	for i := range n {
		if _, err := sp.append(body(i)); err != nil {
			t.Fatal(err)
		}
	}
	segs := func() int { m, _ := filepath.Glob(filepath.Join(dir, "*.log")); return len(m) }
	if segs() != 3 {
		t.Fatalf("%d segments", segs())
	}
	consume := func(sp *spool, from, count int) {
		t.Helper()
		for i := from; i < from+count; i++ {
			e, ok := sp.head()
			if !ok {
				t.Fatalf("spool empty at %d", i)
			}
			b, err := sp.read(e)
			if err != nil || !bytes.Equal(b, body(i)) {
				t.Fatalf("entry %d: %.40q, %v", i, b, err)
			}
			sp.done(e)
		}
	}
	consume(sp, 0, 2500)
	if segs() != 2 {
		t.Errorf("%d segments after delivering the first half", segs())
	}
	sp.close()
	sp, dropped, err := openSpool(dir, false, 1<<20, 1<<40)
	if err != nil || dropped != 0 {
		t.Fatal(err, dropped)
	}
	if sp.len() != 2500 {
		t.Fatalf("reopened with %d pending, want 2500", sp.len())
	}
	consume(sp, 2500, 2500)
	if _, ok := sp.head(); ok || segs() != 1 {
		t.Errorf("after delivering all: pending %d, %d segments", sp.len(), segs())
	}
	// Sequence numbers go on after a restart.
	sp.close()
	sp, _, _ = openSpool(dir, false, 1<<20, 1<<40)
	sp.append(body(n))
	e, _ := sp.head()
	if e.seq != n+1 {
		t.Errorf("next seq %d, want %d", e.seq, n+1)
	}
	sp.close()
}

// TestSpoolBounds: over MaxSpoolBytes or MaxSpoolAlerts the oldest pending
// alerts go, also when a larger bound was used before a restart.
func TestSpoolBounds(t *testing.T) {
	dir := t.TempDir()
	sp, _, err := openSpool(dir, true, 10, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range 25 {
		d, err := sp.append(fmt.Appendf(nil, `{"n":%d}`, i))
		if err != nil {
			t.Fatal(err)
		}
		total += d
	}
	if total != 15 || sp.len() != 10 {
		t.Fatalf("dropped %d, pending %d", total, sp.len())
	}
	e, _ := sp.head()
	if b, _ := sp.read(e); string(b) != `{"n":15}` {
		t.Errorf("oldest kept %s", b)
	}
	sp.close()
	sp, dropped, err := openSpool(dir, false, 4, 1<<40)
	if err != nil || dropped != 6 || sp.len() != 4 {
		t.Fatalf("reopen with a smaller bound: dropped %d, pending %d, %v", dropped, sp.len(), err)
	}
	sp.close()
	sp, dropped, _ = openSpool(dir, false, 100, 20) // bytes: two 8-byte alerts fit
	if dropped != 2 || sp.len() != 2 {
		t.Errorf("byte bound: dropped %d, pending %d", dropped, sp.len())
	}
	sp.close()
}

// FuzzSpoolLoad: whatever a damaged spool holds (segment, cursor), opening
// it does not fail or panic, every pending entry reads back within its
// segment, and appending goes on.
func FuzzSpoolLoad(f *testing.F) {
	f.Add([]byte("1 {\"a\":1}\n2 {\"b\":2}\n"), []byte("00000000000000000002"))
	f.Add([]byte("1 {\"a\":1}\n2 {\"b\""), []byte(""))
	f.Add([]byte("\n\n 3\nx y\n18446744073709551615 {}\n"), []byte("garbage"))
	f.Add([]byte("5 {}\n1 {}\n"), []byte("00000000000000000000"))
	f.Fuzz(func(t *testing.T, seg, cursor []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cursor"), cursor, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, _, err := openSpool(dir, false, 1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.close()
		for {
			e, ok := sp.head()
			if !ok {
				break
			}
			b, err := sp.read(e)
			if err != nil || len(b) != e.size {
				t.Fatalf("entry %+v: %v", e, err)
			}
			sp.done(e)
		}
		if _, err := sp.append([]byte(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		e, ok := sp.head()
		if b, err := sp.read(e); !ok || err != nil || string(b) != `{"x":1}` {
			t.Fatalf("after append: %q %v", b, err)
		}
	})
}

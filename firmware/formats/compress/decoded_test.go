package compress

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/klauspost/compress/gzip"
)

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDecodedOnce: Identify keeps the output of a stream it decoded to its
// end, Extract takes it (the kept output is what decoding gives), and a
// chunk with other bytes of the same size is decoded on its own.
func TestDecodedOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	plain := make([]byte, 200000)
	for i := range plain {
		plain[i] = "camera firmware "[i%16] + byte(rng.IntN(2))
	}
	a := gzipOf(t, plain)
	plainB := bytes.Clone(plain)
	plainB[1000] ^= 1
	b := gzipOf(t, plainB)
	if len(a) != len(b) {
		// Same size, other bytes: flip a bit in the stored mtime instead.
		b = bytes.Clone(a)
		b[4] ^= 1
		plainB = plain
	}
	c, err := GZIP.Identify(bytes.NewReader(a), 0, int64(len(a)))
	if err != nil {
		t.Fatal(err)
	}
	key := keptKey{format: "gzip", size: int64(len(a))}
	key.sum, _ = sumOf(bytes.NewReader(a), 0, int64(len(a)))
	if !keptStreams.has(key) {
		t.Fatal("Identify kept nothing")
	}
	// Other bytes, same size: not the kept stream.
	sink := &firmwaretest.MemSink{}
	if err := GZIP.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))), c, sink); err != nil {
		t.Fatal(err)
	}
	if len(sink.Entries) != 1 || !bytes.Equal(sink.Entries[0].Data, plainB) {
		t.Fatal("the other stream's content is wrong")
	}
	if !keptStreams.has(key) {
		t.Fatal("the kept stream was taken for other bytes")
	}
	sink = &firmwaretest.MemSink{}
	if err := GZIP.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(a), 0, int64(len(a))), c, sink); err != nil {
		t.Fatal(err)
	}
	if len(sink.Entries) != 1 || !bytes.Equal(sink.Entries[0].Data, plain) {
		t.Fatal("kept content is wrong")
	}
	if keptStreams.has(key) {
		t.Fatal("Extract did not release the kept stream")
	}
}

// TestKeptStoreBounds: a stream over keepMaxStream is not kept, the oldest
// go first past keepMaxTotal, and entries expire after keepTTL.
func TestKeptStoreBounds(t *testing.T) {
	now := time.Unix(1700000000, 0)
	s := &keptStore{now: func() time.Time { return now }}
	src := func(i byte) *bytes.Reader { return bytes.NewReader([]byte{i, i, i}) }
	s.keep("gzip", src(0), 0, 3, make([]byte, keepMaxStream+1))
	if n, _ := s.len(); n != 0 {
		t.Fatal("a stream over keepMaxStream was kept")
	}
	per := keepMaxTotal / 4
	for i := range byte(5) {
		s.keep("gzip", src(i), 0, 3, make([]byte, per))
	}
	if n, size := s.len(); n != 4 || size != keepMaxTotal {
		t.Fatalf("%d entries, %d bytes", n, size)
	}
	if _, ok := s.take("gzip", io.NewSectionReader(src(0), 0, 3)); ok {
		t.Fatal("the oldest entry was not dropped")
	}
	if _, ok := s.take("xz", io.NewSectionReader(src(4), 0, 3)); ok {
		t.Fatal("taken under another format")
	}
	if _, ok := s.take("gzip", io.NewSectionReader(src(4), 0, 3)); !ok {
		t.Fatal("the newest entry is missing")
	}
	now = now.Add(keepTTL + time.Second)
	if _, ok := s.take("gzip", io.NewSectionReader(src(3), 0, 3)); ok {
		t.Fatal("an expired entry was taken")
	}
	if n, size := s.len(); n != 0 || size != 0 || len(s.sizes) != 0 {
		t.Fatalf("%d entries, %d bytes, %d sizes left", n, size, len(s.sizes))
	}
}

// len reports the entries and bytes kept (tests).
func (s *keptStore) len() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.list), s.bytes
}

// has reports whether key is kept (tests).
func (s *keptStore) has(key keptKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.list {
		if e.key == key {
			return true
		}
	}
	return false
}

// TestDecodedOnceFormats: every format that keeps its output keeps the
// fixture's at Identify and hands it over at Extract, the same content
// decoding gives.
func TestDecodedOnceFormats(t *testing.T) {
	ref := want(t)
	for _, f := range []*firmware.Format{GZIP, Zlib, Bzip2, XZ, LZMA} {
		data := firmwaretest.ReadFixture(t, fixtures[f])
		c, err := f.Identify(bytes.NewReader(data), 0, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		key := keptKey{format: f.Name, size: c.Size}
		key.sum, _ = sumOf(bytes.NewReader(data), 0, c.Size)
		if !keptStreams.has(key) {
			t.Errorf("%s: Identify kept nothing", f.Name)
			continue
		}
		sink := &firmwaretest.MemSink{}
		if err := f.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(data), 0, c.Size), c, sink); err != nil {
			t.Fatal(err)
		}
		if keptStreams.has(key) {
			t.Errorf("%s: Extract did not take the kept output", f.Name)
		}
		if len(sink.Entries) != 1 || !bytes.Equal(sink.Entries[0].Data, ref) {
			t.Errorf("%s: content differs", f.Name)
		}
	}
}

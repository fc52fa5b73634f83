// Package firmwaretest has helpers for testing firmware formats: an in-memory
// Sink and a bounded Identify+Extract runner that format fuzz targets share.
package firmwaretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
)

// MemEntry is one entry a MemSink received.
type MemEntry struct {
	Header firmware.Header
	Data   []byte // content of a TypeFile entry
	Err    error  // error returned by the content reader, if any
}

// MemSink is a firmware.Sink that keeps everything in memory, within limits,
// so format tests and fuzz targets can run Extract without touching the disk.
type MemSink struct {
	// MaxBytes bounds the total content kept. It defaults to 64 MiB.
	MaxBytes int64
	// MaxFiles bounds the number of entries. It defaults to 100000.
	MaxFiles int

	mu       sync.Mutex
	Entries  []MemEntry
	Warnings []string
	total    int64
}

var _ firmware.Sink = (*MemSink)(nil)

func (s *MemSink) maxBytes() int64 {
	if s.MaxBytes <= 0 {
		return 64 << 20
	}
	return s.MaxBytes
}

func (s *MemSink) maxFiles() int {
	if s.MaxFiles <= 0 {
		return 100000
	}
	return s.MaxFiles
}

// Add records h and, for a file, reads its content up to the byte limit. It
// returns an error wrapping firmware.ErrLimit when a limit is reached and the
// reader's error when the content cannot be read.
func (s *MemSink) Add(h *firmware.Header, r io.Reader) error {
	if h == nil {
		return errors.New("firmwaretest: nil header")
	}
	s.mu.Lock()
	if len(s.Entries) >= s.maxFiles() {
		s.mu.Unlock()
		return fmt.Errorf("firmwaretest: %d entries: %w", len(s.Entries), firmware.ErrLimit)
	}
	left := s.maxBytes() - s.total
	s.mu.Unlock()

	e := MemEntry{Header: *h}
	var err error
	if h.Type == firmware.TypeFile && r != nil {
		var buf bytes.Buffer
		n, cerr := io.Copy(&buf, io.LimitReader(r, left+1))
		if n > left {
			n = left
			err = fmt.Errorf("firmwaretest: %s: more than %d bytes: %w", h.Name, s.maxBytes(), firmware.ErrLimit)
		} else if cerr != nil {
			err = cerr
			e.Err = cerr
		}
		e.Data = buf.Bytes()[:n]
	}
	s.mu.Lock()
	s.total += int64(len(e.Data))
	s.Entries = append(s.Entries, e)
	s.mu.Unlock()
	return err
}

// Warn records msg.
func (s *MemSink) Warn(msg string) {
	s.mu.Lock()
	s.Warnings = append(s.Warnings, msg)
	s.mu.Unlock()
}

// File returns the content of the last file entry named name.
func (s *MemSink) File(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.Entries) - 1; i >= 0; i-- {
		e := s.Entries[i]
		if e.Header.Name == name && e.Header.Type == firmware.TypeFile {
			return e.Data, true
		}
	}
	return nil, false
}

// Entry returns the last entry named name.
func (s *MemSink) Entry(name string) (MemEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.Entries) - 1; i >= 0; i-- {
		if s.Entries[i].Header.Name == name {
			return s.Entries[i], true
		}
	}
	return MemEntry{}, false
}

// Names returns the names of all entries, sorted.
func (s *MemSink) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.Entries))
	for _, e := range s.Entries {
		names = append(names, e.Header.Name)
	}
	slices.Sort(names)
	return names
}

// Result is what Run found.
type Result struct {
	Chunk       *firmware.Chunk // nil when Identify rejected the data
	IdentifyErr error
	ExtractErr  error
	Sink        *MemSink
}

// Run identifies data at off as format f and, when it is one and f can
// extract, extracts the chunk into a MemSink with a time limit. It checks the
// contract every format must keep and returns an error when it is broken: the
// chunk must lie inside data and start at off, and a rejection must wrap
// firmware.ErrNotFormat (or ErrTruncated). A fuzz target calls it with
// arbitrary bytes and fails on the returned error:
//
//	f.Fuzz(func(t *testing.T, data []byte) {
//		if _, err := firmwaretest.Run(gzip.Format, data, 0); err != nil {
//			t.Fatal(err)
//		}
//	})
func Run(f *firmware.Format, data []byte, off int64) (*Result, error) {
	res := &Result{Sink: &MemSink{MaxBytes: 16 << 20, MaxFiles: 10000}}
	r := bytes.NewReader(data)
	size := int64(len(data))
	c, err := f.Identify(r, off, size)
	if err != nil {
		res.IdentifyErr = err
		if !errors.Is(err, firmware.ErrNotFormat) && !errors.Is(err, firmware.ErrTruncated) {
			return res, fmt.Errorf("%s: Identify error does not wrap ErrNotFormat or ErrTruncated: %v", f.Name, err)
		}
		return res, nil
	}
	if c == nil {
		return res, fmt.Errorf("%s: Identify returned nil chunk and nil error", f.Name)
	}
	res.Chunk = c
	if c.Offset != off || c.Size <= 0 || c.Offset+c.Size > size || c.Offset+c.Size < c.Offset {
		return res, fmt.Errorf("%s: Identify returned chunk [%#x, +%#x) outside the data [%#x, %#x)", f.Name, c.Offset, c.Size, off, size)
	}
	if c.Format != "" && c.Format != f.Name {
		return res, fmt.Errorf("%s: Identify returned chunk of format %q", f.Name, c.Format)
	}
	if f.Extract == nil {
		return res, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res.ExtractErr = f.Extract(ctx, io.NewSectionReader(r, c.Offset, c.Size), c, res.Sink)
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s: Extract took longer than 10s", f.Name)
	}
	return res, nil
}

// MustRun is Run for data that f must take: it fails the test unless the
// contract holds, Identify accepts the data at off and Extract succeeds.
func MustRun(t testing.TB, f *firmware.Format, data []byte, off int64) *Result {
	t.Helper()
	res, err := Run(f, data, off)
	if err != nil || res.IdentifyErr != nil || res.ExtractErr != nil {
		t.Fatalf("%s: %v; identify: %v; extract: %v", f.Name, err, res.IdentifyErr, res.ExtractErr)
	}
	return res
}

// Listing renders what the sink received, one line per entry, sorted: name,
// type, mode, owner, and the size and sha256 of files, link targets or device
// numbers. Two extractions of the same tree give the same listing.
func (s *MemSink) Listing() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.Entries {
		h := e.Header
		line := fmt.Sprintf("%s type=%d mode=%v uid=%d gid=%d", h.Name, h.Type, h.Mode, h.UID, h.GID)
		switch h.Type {
		case firmware.TypeFile:
			line += fmt.Sprintf(" size=%d sha256=%x", len(e.Data), sha256.Sum256(e.Data))
		case firmware.TypeSymlink, firmware.TypeHardlink:
			line += " -> " + h.Linkname
		case firmware.TypeCharDevice, firmware.TypeBlockDevice:
			line += fmt.Sprintf(" dev=%d,%d", h.Devmajor, h.Devminor)
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// Fuzz is the fuzz target every format shares: seeded with seeds, each
// input is identified and extracted by Run within its bounds; a panic, a
// hang past Run's time limit or an error Run reports (an extractor that
// broke its contract) fails it.
func Fuzz(f *testing.F, format *firmware.Format, seeds ...[]byte) {
	f.Helper()
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Run(format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// Fixtures returns the testdata files that match the patterns (file names
// or globs such as "*.cpio"), in pattern then name order, each cut to at
// most max bytes when max > 0 (seeds small enough for the fuzzer to
// mutate). A pattern that matches nothing fails tb.
func Fixtures(tb testing.TB, max int, patterns ...string) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, p := range patterns {
		names, err := filepath.Glob(filepath.Join("testdata", p))
		if err != nil || len(names) == 0 {
			tb.Fatalf("no fixture matches testdata/%s", p)
		}
		for _, n := range names {
			b := ReadFixture(tb, filepath.Base(n))
			if max > 0 && len(b) > max {
				b = b[:max]
			}
			out = append(out, b)
		}
	}
	return out
}

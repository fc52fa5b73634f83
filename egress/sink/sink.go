// Package sink delivers egress alerts: JSON lines to a writer or a file
// (reopened on demand for log rotation), RFC 5424 syslog over UDP, TCP or TLS,
// and webhooks (JSON POST) with retries, exponential backoff and an on-disk
// spool so that no alert is lost while the receiver is down or cordon
// restarts.
//
// Each sink is an egress.AlertSink; its configuration struct is what the
// policy file's alerts section decodes into (strict YAML, see
// internal/config).
package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cordon-vms/cordon/egress"
)

// jsonLines writes one JSON object per line.
type jsonLines struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// newJSONLines returns a sink that writes each alert to w as one JSON object
// per line (so the output pipes into jq). Close does not close w.
func newJSONLines(w io.Writer) egress.AlertSink { return &jsonLines{w: w} }

var _ egress.AlertSink = (*jsonLines)(nil)

func (s *jsonLines) Send(_ context.Context, a egress.Alert) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("sink: json: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(append(s.buf[:0], b...), '\n')
	if _, err := s.w.Write(s.buf); err != nil {
		return fmt.Errorf("sink: json: write: %w", err)
	}
	return nil
}

func (s *jsonLines) Close() error { return nil }

// File is a JSON-lines sink writing to a file opened for appending. Reopen
// (wire it to SIGHUP) closes and reopens the path, so logrotate can move the
// file away.
type File struct {
	path string
	mu   sync.Mutex
	f    *os.File
	buf  []byte
}

var _ egress.AlertSink = (*File)(nil)

// openFile opens (creating it with mode 0640 if needed) the JSON-lines file
// at path for appending.
func openFile(path string) (*File, error) {
	s := &File{path: path}
	if err := s.Reopen(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reopen closes the file and opens path again (for log rotation).
func (s *File) Reopen() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("sink: file: %w", err)
	}
	s.mu.Lock()
	old := s.f
	s.f = f
	s.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Send appends a to the file as one line. A line is written with one write
// call, so concurrent writers to the same file (O_APPEND) do not interleave.
func (s *File) Send(_ context.Context, a egress.Alert) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("sink: file %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return fmt.Errorf("sink: file %s: closed", s.path)
	}
	s.buf = append(append(s.buf[:0], b...), '\n')
	if _, err := s.f.Write(s.buf); err != nil {
		return fmt.Errorf("sink: file %s: %w", s.path, err)
	}
	return nil
}

// Close closes the file.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

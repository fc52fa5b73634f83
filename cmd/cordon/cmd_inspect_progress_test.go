package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgress: on a terminal the progress line is rewritten in place
// (carriage return, erase line) and cleared at the end; on anything else
// (a pipe, a buffer) nothing is written.
func TestProgress(t *testing.T) {
	var silent bytes.Buffer
	p := newProgress(&silent, "/x/cam.bin")
	p.phase("unpacking")
	p.files(10, 4096)
	p.done()
	if silent.Len() != 0 {
		t.Errorf("progress written to a non-terminal: %q", silent.String())
	}

	var tty bytes.Buffer
	p = &progress{w: &tty, target: "cam.bin"}
	p.phase("inspecting")
	p.files(1, 10) // within 250 ms of the phase line: skipped
	p.last = p.last.Add(-time.Second)
	p.files(1234, 5<<20)
	p.done()
	want := "\r\033[Kinspecting cam.bin…\r\033[Kinspecting cam.bin: 1234 files, 5.0 MiB\r\033[K"
	if got := tty.String(); got != want {
		t.Errorf("progress = %q\nwant       %q", got, want)
	}
	if strings.Count(tty.String(), "\n") != 0 {
		t.Error("progress wrote a newline")
	}
}

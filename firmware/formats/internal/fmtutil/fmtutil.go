// Package fmtutil holds small pieces that several firmware format packages
// share: a content reader that remembers its error, and the end-of-archive
// zero padding scan.
package fmtutil

import "io"

// ReadErr wraps an entry's content reader and remembers its first error
// other than io.EOF, so an extractor can tell a broken entry (bad CRC,
// corrupt stream) from the Sink refusing a write.
type ReadErr struct {
	R   io.Reader
	Err error
}

func (r *ReadErr) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	if err != nil && err != io.EOF && r.Err == nil {
		r.Err = err
	}
	return n, err
}

// ZeroPadEnd extends end over zero bytes up to the next multiple of block
// (any block size, such as tar's 20-record default), or returns end when
// those bytes are missing or not all zero.
func ZeroPadEnd(r io.ReaderAt, end, block int64) int64 {
	next := (end + block - 1) / block * block
	if next == end {
		return end
	}
	b := make([]byte, next-end)
	if n, _ := r.ReadAt(b, end); n != len(b) {
		return end
	}
	for _, x := range b {
		if x != 0 {
			return end
		}
	}
	return next
}

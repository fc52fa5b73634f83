// Package fmtutil holds small pieces that several firmware format packages
// share: a content reader that remembers its error, a byte-sum reader, the
// Unix file type bits and the end-of-archive zero padding scan.
package fmtutil

import (
	"io"
)

// Unix file type bits of a mode (stat.h's S_IFMT and its values), as cpio,
// ext, JFFS2, UBIFS, cramfs and YAFFS2 store them.
const (
	IFMT   = 0o170000 // mask of the type bits
	IFSOCK = 0o140000
	IFLNK  = 0o120000
	IFREG  = 0o100000
	IFBLK  = 0o060000
	IFDIR  = 0o040000
	IFCHR  = 0o020000
	IFIFO  = 0o010000
)

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

// ByteSum wraps an entry's content reader and adds up the bytes read through
// it, the 32-bit additive checksum of cpio's crc format and Hikvision's file
// table. N counts the bytes, so a caller can tell whether the whole entry was
// read before comparing Sum.
type ByteSum struct {
	R   io.Reader
	Sum uint32
	N   int64
}

func (s *ByteSum) Read(p []byte) (int, error) {
	n, err := s.R.Read(p)
	for _, b := range p[:n] {
		s.Sum += uint32(b)
	}
	s.N += int64(n)
	return n, err
}

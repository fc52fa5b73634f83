package compress

import (
	"bytes"
	"crypto/sha256"
	"io"
	"slices"
	"sync"
	"time"
)

// Decoding each stream once. Identify decodes a stream to its end to find
// its length; Extract used to decode it all over again. Identify now keeps
// the output of a stream that decoded cleanly (within keepMaxStream bytes),
// and Extract hands it to the Sink when the chunk it is given holds exactly
// the bytes Identify decoded. An entry is found by format, compressed size
// and the SHA-256 of the compressed bytes, so it cannot stand in for
// another stream (another image, another offset with other bytes): the
// same bytes decode to the same output. Entries go when Extract takes them,
// when newer ones need the room (oldest first, keepMaxTotal in all), and
// keepTTL after they were kept (a scan never extracts).
const (
	keepMaxStream = 16 << 20
	keepMaxTotal  = 32 << 20
	keepTTL       = 2 * time.Minute
)

type keptKey struct {
	format string
	size   int64 // compressed
	sum    [sha256.Size]byte
}

// sizeKey finds out, without hashing, whether anything may be kept for a chunk.
type sizeKey struct {
	format string
	size   int64
}

type keptStream struct {
	key  keptKey
	data []byte
	at   time.Time
}

// keptStreams is the process-wide store of decoded streams.
var keptStreams = &keptStore{}

type keptStore struct {
	mu    sync.Mutex
	list  []*keptStream    // oldest first
	bytes int64            // cap() of the kept data
	sizes map[sizeKey]int  // entries by format and compressed size
	now   func() time.Time // test hook; time.Now when nil
}

func (s *keptStore) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// sumOf hashes the size bytes at off in r, or returns false when they
// cannot be read.
func sumOf(r io.ReaderAt, off, size int64) ([sha256.Size]byte, bool) {
	h := sha256.New()
	b := measureBufs.Get().(*[32 << 10]byte)
	defer measureBufs.Put(b)
	if _, err := io.CopyBuffer(h, io.NewSectionReader(r, off, size), b[:]); err != nil {
		return [sha256.Size]byte{}, false
	}
	return [sha256.Size]byte(h.Sum(nil)), true
}

// keep stores data, the whole output of the format's stream of size bytes
// at off in r.
func (s *keptStore) keep(format string, r io.ReaderAt, off, size int64, data []byte) {
	if data == nil || cap(data) > keepMaxStream {
		return
	}
	sum, ok := sumOf(r, off, size)
	if !ok {
		return
	}
	e := &keptStream{key: keptKey{format, size, sum}, data: data}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.at = s.clock()
	s.expire(e.at)
	for i, o := range s.list {
		if o.key == e.key { // the same bytes identified again
			s.drop(i)
			break
		}
	}
	for len(s.list) > 0 && s.bytes+int64(cap(data)) > keepMaxTotal {
		s.drop(0)
	}
	s.list = append(s.list, e)
	s.bytes += int64(cap(data))
	if s.sizes == nil {
		s.sizes = map[sizeKey]int{}
	}
	s.sizes[sizeKey{format, size}]++
}

// drop removes entry i; s.mu is held.
func (s *keptStore) drop(i int) {
	e := s.list[i]
	s.list = slices.Delete(s.list, i, i+1)
	s.bytes -= int64(cap(e.data))
	k := sizeKey{e.key.format, e.key.size}
	if s.sizes[k]--; s.sizes[k] == 0 {
		delete(s.sizes, k)
	}
}

// expire drops the entries kept keepTTL before now; s.mu is held.
func (s *keptStore) expire(now time.Time) {
	for len(s.list) > 0 && now.Sub(s.list[0].at) > keepTTL {
		s.drop(0)
	}
}

// take returns, and forgets, the output kept for the format's stream that
// src holds, if any.
func (s *keptStore) take(format string, src *io.SectionReader) (io.Reader, bool) {
	size := src.Size()
	s.mu.Lock()
	s.expire(s.clock())
	n := s.sizes[sizeKey{format, size}]
	s.mu.Unlock()
	if n == 0 { // nothing of that size: no need to hash
		return nil, false
	}
	sum, ok := sumOf(src, 0, size)
	if !ok {
		return nil, false
	}
	key := keptKey{format, size, sum}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.list {
		if e.key == key {
			s.drop(i)
			return bytes.NewReader(e.data), true
		}
	}
	return nil, false
}

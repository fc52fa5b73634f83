package sink

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// spool is the webhook's on-disk queue: an append-only log of segments
// ("%020d.log", named by their first sequence number), one line per alert
// ("SEQ JSON\n"), and a cursor file holding the sequence number of the
// oldest undelivered alert. Appending is one write to an open file (no file
// creation per alert); a segment is deleted once every alert in it is
// delivered or dropped. An in-memory index locates the pending alerts.
type spool struct {
	dir       string
	fsync     bool
	maxAlerts int
	maxBytes  int64

	mu       sync.Mutex
	entries  []spoolEntry // pending, in sequence order
	bytes    int64
	nextSeq  uint64
	segs     []uint64 // segment names (first seq), ascending; the last is cur
	cur      *os.File
	curSize  int64
	cursor   *os.File
	inflight int // entries at the head being delivered
	buf      []byte
}

type spoolEntry struct {
	seq  uint64
	seg  uint64 // segment holding it
	off  int64  // of the JSON in the segment
	size int
}

// segmentSize is the size after which appends go to a new segment.
const segmentSize = 1 << 20

// maxSegmentRead bounds what is read of one segment at start (they are
// about segmentSize; a larger file is damage, and its tail is ignored).
const maxSegmentRead = 16 << 20

func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

func segName(seq uint64) string { return fmt.Sprintf("%020d.log", seq) }

// openSpool loads the spool in dir, creating it if needed. It returns the
// alerts dropped to respect the bounds.
func openSpool(dir string, fsync bool, maxAlerts int, maxBytes int64) (*spool, int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, err
	}
	s := &spool{dir: dir, fsync: fsync, maxAlerts: maxAlerts, maxBytes: maxBytes}
	var err error
	if s.cursor, err = os.OpenFile(filepath.Join(dir, "cursor"), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, 0, err
	}
	var cb [20]byte
	n, _ := s.cursor.ReadAt(cb[:], 0)
	cursor, _ := strconv.ParseUint(string(cb[:n]), 10, 64) // missing or torn: 0, deliver everything again
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.cursor.Close()
		return nil, 0, err
	}
	maxSeq := uint64(0)
	for _, e := range ents {
		num, ok := strings.CutSuffix(e.Name(), ".log")
		seq, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil || !e.Type().IsRegular() {
			continue
		}
		s.segs = append(s.segs, seq)
	}
	slices.Sort(s.segs)
	for i, seg := range s.segs {
		path := filepath.Join(dir, segName(seg))
		data, err := readAtMost(path, maxSegmentRead)
		if err != nil {
			s.cursor.Close()
			return nil, 0, err
		}
		off := 0
		for off < len(data) {
			nl := bytes.IndexByte(data[off:], '\n')
			if nl < 0 {
				// A write cut short by a crash: never acknowledged.
				if i == len(s.segs)-1 {
					_ = os.Truncate(path, int64(off))
				}
				break
			}
			line := data[off : off+nl]
			sp := bytes.IndexByte(line, ' ')
			seq, err := strconv.ParseUint(string(line[:max(sp, 0)]), 10, 64)
			if sp > 0 && err == nil && seq < 1<<62 { // larger: damage (and would wrap nextSeq)
				maxSeq = max(maxSeq, seq)
				if seq >= cursor {
					s.entries = append(s.entries, spoolEntry{seq: seq, seg: seg, off: int64(off + sp + 1), size: nl - sp - 1})
					s.bytes += int64(nl - sp - 1)
				}
			}
			off += nl + 1
		}
	}
	slices.SortFunc(s.entries, func(a, b spoolEntry) int { return cmp.Compare(a.seq, b.seq) })
	s.nextSeq = max(maxSeq+1, cursor, 1)
	dropped := 0
	for len(s.entries) > 0 && (len(s.entries) > maxAlerts || s.bytes > maxBytes) {
		s.bytes -= int64(s.entries[0].size)
		s.entries = s.entries[1:]
		dropped++
	}
	if err := s.openSegment(); err != nil {
		s.cursor.Close()
		return nil, 0, err
	}
	s.persist()
	return s, dropped, nil
}

// openSegment starts the segment that new alerts are appended to.
func (s *spool) openSegment() error {
	if s.cur != nil {
		s.cur.Close()
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segName(s.nextSeq)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.cur, s.curSize = f, info.Size()
	if len(s.segs) == 0 || s.segs[len(s.segs)-1] != s.nextSeq {
		s.segs = append(s.segs, s.nextSeq)
	}
	return nil
}

// persist writes the cursor (the oldest pending seq) and deletes the
// segments that hold nothing pending.
func (s *spool) persist() {
	c := s.nextSeq
	if len(s.entries) > 0 {
		c = s.entries[0].seq
	}
	_, _ = s.cursor.WriteAt(fmt.Appendf(nil, "%020d", c), 0)
	if s.fsync {
		_ = s.cursor.Sync()
	}
	// Segment i holds seqs below segs[i+1]; the last one is being written.
	for len(s.segs) > 1 && s.segs[1] <= c {
		os.Remove(filepath.Join(s.dir, segName(s.segs[0])))
		s.segs = s.segs[1:]
	}
}

// append adds an alert; it returns how many of the oldest pending alerts
// were dropped to make room.
func (s *spool) append(body []byte) (dropped int, err error) {
	if bytes.IndexByte(body, '\n') >= 0 {
		return 0, errors.New("alert JSON contains a newline")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	size := int64(len(body))
	for len(s.entries) > 0 && (len(s.entries)+1 > s.maxAlerts || s.bytes+size > s.maxBytes) {
		i := s.inflight // the oldest not being delivered
		if i >= len(s.entries) {
			break
		}
		s.bytes -= int64(s.entries[i].size)
		s.entries = slices.Delete(s.entries, i, i+1)
		dropped++
	}
	if s.curSize >= segmentSize {
		if err := s.openSegment(); err != nil {
			return dropped, err
		}
	}
	seq := s.nextSeq
	s.buf = strconv.AppendUint(s.buf[:0], seq, 10)
	s.buf = append(s.buf, ' ')
	off := s.curSize + int64(len(s.buf))
	s.buf = append(append(s.buf, body...), '\n')
	if _, err := s.cur.Write(s.buf); err != nil {
		return dropped, err
	}
	if s.fsync {
		if err := s.cur.Sync(); err != nil {
			return dropped, err
		}
	}
	s.curSize += int64(len(s.buf))
	s.nextSeq++
	s.entries = append(s.entries, spoolEntry{seq: seq, seg: s.segs[len(s.segs)-1], off: off, size: len(body)})
	s.bytes += size
	if dropped > 0 {
		s.persist()
	}
	return dropped, nil
}

// head returns the oldest pending alert and marks it in flight.
func (s *spool) head() (spoolEntry, bool) {
	es := s.headN(1)
	if len(es) == 0 {
		return spoolEntry{}, false
	}
	return es[0], true
}

// headN returns up to n of the oldest pending alerts and marks them in
// flight (the drop policy leaves them alone).
func (s *spool) headN(n int) []spoolEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, len(s.entries))
	s.inflight = n
	return slices.Clone(s.entries[:n])
}

// read returns an alert's JSON.
func (s *spool) read(e spoolEntry) ([]byte, error) {
	f, err := os.Open(filepath.Join(s.dir, segName(e.seg)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, e.size)
	if _, err := f.ReadAt(b, e.off); err != nil {
		return nil, err
	}
	return b, nil
}

// done removes e (delivered, rejected or unreadable) from the queue.
func (s *spool) done(e spoolEntry) { s.doneN([]spoolEntry{e}) }

// doneN removes es from the queue and persists the cursor.
func (s *spool) doneN(es []spoolEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		if i := slices.IndexFunc(s.entries, func(x spoolEntry) bool { return x.seq == e.seq }); i >= 0 {
			s.bytes -= int64(s.entries[i].size)
			s.entries = slices.Delete(s.entries, i, i+1)
		}
	}
	s.inflight = 0
	s.persist()
}

func (s *spool) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.cur.Close()
	if cerr := s.cursor.Close(); err == nil {
		err = cerr
	}
	return err
}

package egress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// pcapReader reads classic pcap records without copying them: a record
// that fits the bufio.Reader's buffer is returned as a slice of it (valid
// until the next read), a larger one (up to the snap length) is read into
// a buffer of its own. n counts the bytes consumed, for TruncatedError.
type pcapReader struct {
	br      recordBuffer
	order   binary.ByteOrder
	nanos   bool
	snaplen uint32
	lt      layers.LinkType
	n       int64
	big     []byte
	mem     *memReader // br, when it is one (nextMem)
	be      bool       // order is big-endian (u32)
}

// u32 is order.Uint32 without the interface call, for nextMem.
func (r *pcapReader) u32(b []byte) uint32 {
	if r.be {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

const pcapHeaderLen, pcapRecordLen = 24, 16

// recordBuffer is what pcapReader reads from: a *bufio.Reader over a
// stream, or a memReader over a file mapped into memory (no read system
// calls, no copy: the records are slices of the page cache).
type recordBuffer interface {
	io.Reader
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Size() int
}

// memReader is a recordBuffer over bytes in memory. When release is set
// it is called on each chunk of bytes read (a mapped file's pages, which
// the kernel may then drop: the process's resident size stays small).
type memReader struct {
	b        []byte
	off      int
	released int // b[:released] was handed to release
	release  func([]byte)
	chunk    int // a multiple of the page size
	// ahead is the start of the record lead records after the one at
	// off: touchAhead prefetches the records' first bytes before they
	// are read.
	ahead, lead int
}

// lookAhead is how many records ahead of the one being read touchAhead
// prefetches.
const lookAhead = 8

const releaseChunk = 32 << 20

// Peek returns the next n bytes, or those left with io.EOF.
func (m *memReader) Peek(n int) ([]byte, error) {
	if rest := m.b[m.off:]; n > len(rest) {
		return rest, io.EOF
	}
	return m.b[m.off : m.off+n], nil
}

func (m *memReader) Discard(n int) (int, error) {
	// Bytes before off were returned by earlier reads, which are no
	// longer valid: they may go.
	if m.release != nil && m.off-m.released >= m.chunk {
		end := m.released + m.chunk
		m.release(m.b[m.released:end])
		m.released = end
	}
	n = min(n, len(m.b)-m.off)
	m.off += n
	return n, nil
}

func (m *memReader) Read(p []byte) (int, error) {
	if m.off == len(m.b) {
		return 0, io.EOF
	}
	n := copy(p, m.b[m.off:])
	m.off += n
	return n, nil
}

// Size is the whole buffer: every record is returned in place.
func (m *memReader) Size() int { return len(m.b) }

// newPcapReader reads the file header. Magic numbers: a1b2c3d4
// (microseconds) and a1b23c4d (nanoseconds), in either byte order.
func newPcapReader(br recordBuffer) (*pcapReader, error) {
	h, err := br.Peek(pcapHeaderLen)
	if err != nil {
		return nil, fmt.Errorf("file header: %w", io.ErrUnexpectedEOF)
	}
	r := &pcapReader{br: br}
	switch string(h[:4]) {
	case "\xa1\xb2\xc3\xd4":
		r.order = binary.BigEndian
	case "\xd4\xc3\xb2\xa1":
		r.order = binary.LittleEndian
	case "\xa1\xb2\x3c\x4d":
		r.order, r.nanos = binary.BigEndian, true
	case "\x4d\x3c\xb2\xa1":
		r.order, r.nanos = binary.LittleEndian, true
	default:
		return nil, fmt.Errorf("unknown magic %x", h[:4])
	}
	r.be = r.order == binary.ByteOrder(binary.BigEndian)
	r.snaplen = r.order.Uint32(h[16:])
	r.lt = layers.LinkType(r.order.Uint32(h[20:]) & 0xffff)
	_, _ = br.Discard(pcapHeaderLen)
	r.n = pcapHeaderLen
	if m, ok := br.(*memReader); ok {
		r.mem = m
	}
	return r, nil
}

// errCaplen is a record longer than the file's snap length.
var errCaplen = errors.New("capture length exceeds snap length")

// next returns the next record; io.EOF at the end of the file,
// io.ErrUnexpectedEOF when it ends inside a record.
func (r *pcapReader) next() ([]byte, gopacket.CaptureInfo, error) {
	var ci gopacket.CaptureInfo
	h, err := r.br.Peek(pcapRecordLen)
	if err != nil {
		if len(h) == 0 && errors.Is(err, io.EOF) {
			return nil, ci, io.EOF
		}
		r.n += int64(len(h))
		return nil, ci, io.ErrUnexpectedEOF
	}
	sec, frac := int64(r.order.Uint32(h[0:])), int64(r.order.Uint32(h[4:]))
	caplen, length := r.order.Uint32(h[8:]), r.order.Uint32(h[12:])
	if caplen > r.snaplen && r.snaplen != 0 || caplen > maxSnaplen { // 0: a writer that did not say
		return nil, ci, fmt.Errorf("%w: %d > %d", errCaplen, caplen, r.snaplen)
	}
	if !r.nanos {
		frac *= 1000
	}
	ci.Timestamp = time.Unix(sec, frac).UTC()
	ci.CaptureLength, ci.Length = int(caplen), int(length)
	total := pcapRecordLen + int(caplen)
	if total <= r.br.Size() {
		b, err := r.br.Peek(total)
		if err != nil {
			r.n += int64(len(b))
			return nil, ci, io.ErrUnexpectedEOF
		}
		_, _ = r.br.Discard(total)
		r.n += int64(total)
		return b[pcapRecordLen:], ci, nil
	}
	_, _ = r.br.Discard(pcapRecordLen)
	r.n += pcapRecordLen
	if cap(r.big) < int(caplen) {
		r.big = make([]byte, caplen)
	}
	b := r.big[:caplen]
	m, err := io.ReadFull(r.br, b)
	r.n += int64(m)
	if err != nil {
		return nil, ci, io.ErrUnexpectedEOF
	}
	return b, ci, nil
}

// nextMem is next for a memReader: the record is a slice of its bytes.
func (r *pcapReader) nextMem() ([]byte, gopacket.CaptureInfo, error) {
	var ci gopacket.CaptureInfo
	data, ts, caplen, length, err := r.recordMem()
	if ts >= 0 {
		ci.Timestamp = time.Unix(0, ts).UTC()
		ci.CaptureLength, ci.Length = int(caplen), int(length)
	}
	return data, ci, err
}

// recordMem reads the next record of a memReader: its bytes (a slice of
// the memReader's), its time in Unix nanoseconds (-1 when its header could
// not be read) and its captured and original lengths.
func (r *pcapReader) recordMem() (data []byte, ts int64, caplen, length uint32, err error) {
	m := r.mem
	r.touchAhead(m)
	rest := m.b[m.off:]
	if len(rest) < pcapRecordLen {
		if len(rest) == 0 {
			return nil, -1, 0, 0, io.EOF
		}
		r.n += int64(len(rest))
		return nil, -1, 0, 0, io.ErrUnexpectedEOF
	}
	sec, frac := int64(r.u32(rest[0:])), int64(r.u32(rest[4:]))
	caplen, length = r.u32(rest[8:]), r.u32(rest[12:])
	if caplen > r.snaplen && r.snaplen != 0 || caplen > maxSnaplen { // 0: a writer that did not say
		return nil, -1, 0, 0, fmt.Errorf("%w: %d > %d", errCaplen, caplen, r.snaplen)
	}
	if !r.nanos {
		frac *= 1000
	}
	ts = sec*int64(time.Second) + frac // both below 2³², so no overflow
	total := pcapRecordLen + int(caplen)
	if total > len(rest) {
		r.n += int64(len(rest))
		return nil, ts, caplen, length, io.ErrUnexpectedEOF
	}
	_, _ = m.Discard(total)
	r.n += int64(total)
	return rest[pcapRecordLen:total:total], ts, caplen, length, nil
}

// touchAhead keeps the record headers up to lookAhead records past the
// record being read prefetched (its first two cache lines: its header and
// the packet's headers; four measured slower, 1.03-1.07x), so
// the cache misses are taken while this and the next packets are handled,
// not when the record is read. It reads one header per call, prefetched
// a call before (two while it catches up): reading a header just
// prefetched would wait for it, as would a plain load instead of the
// prefetch (the CPU cannot retire past a load that misses). A header it
// cannot read stops it (nextMem reports what is wrong when it gets there).
func (r *pcapReader) touchAhead(m *memReader) {
	if m.lead == 0 {
		m.ahead = m.off
	}
	b := m.b
	for i := 0; i < 2 && m.lead < lookAhead && m.ahead <= len(b)-pcapRecordLen; i++ {
		caplen := r.u32(b[m.ahead+8:])
		if caplen > maxSnaplen {
			break
		}
		size := pcapRecordLen + int(caplen)
		m.ahead += size
		m.lead++
		if m.ahead < len(b) {
			// The record after is likely as long as this one (a
			// stream's packets): its header too, a call earlier.
			guess := m.ahead
			if size <= len(b)-m.ahead-1 {
				guess += size
			}
			prefetch(&b[m.ahead], &b[guess])
		}
	}
	if m.lead > 0 {
		m.lead-- // the record at off is read now
	}
}

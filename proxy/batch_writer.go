package proxy

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Frame-batched output for TCP readers.
//
// gortsplib writes every RTP packet to every reader with its own write
// system call; for RTSP→RTSP that call dominates the CPU. For plain-TCP
// (interleaved) readers the proxy instead appends each packet, framed
// ("$", channel, length), to a per-reader batch and hands the batch to the
// reader's writer goroutine at the end of each access unit: one write per
// frame instead of one per packet. RTSPS, UDP and tunnelled readers keep
// gortsplib's per-packet path.
//
// When nothing is queued for the writer goroutine, the camera goroutine
// first tries the write itself, without blocking (one non-blocking write
// system call; see rawWriter): a reader that keeps up, the usual case, then
// costs no goroutine wake-up and no thread hand-off per frame. Whatever the
// socket does not take at once goes to the writer goroutine, so a slow
// reader still never stalls the camera.

// maxBatch flushes a batch early (a frame larger than this is sent in
// several writes).
const maxBatch = 256 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// putBatch empties b and returns it to the pool.
func putBatch(b *[]byte) {
	*b = (*b)[:0]
	batchPool.Put(b)
}

// batchWriter is one TCP reader's batched output.
type batchWriter struct {
	conn       batchConn
	timeout    time.Duration
	maxPending int64 // bytes (limits.reader_queue_bytes)
	budget     *outputBudget
	remote     string // for the log
	ch         chan queuedBatch
	pending    atomic.Int64 // bytes handed over, not yet written
	evicted    atomic.Bool
	done       chan struct{}
	stopped    atomic.Bool // done is closed (read per frame without a channel operation)
	stopOnce   sync.Once

	qmu     sync.Mutex // orders hand-overs with release
	closed  bool       // released: nothing more is queued
	ready   <-chan struct{}
	onErr   func(error)
	packets *atomic.Uint64 // the reader's counters, added to when a batch is handed over
	bytes   *atomic.Uint64
	delay   func(time.Duration) // observes each frame's delay in the proxy; nil: none

	// camera side, guarded by the camera's mutex
	arrival time.Time   // when the camera packet being added arrived
	started bool        // ready was closed: the PLAY response is out
	sr      []srChannel // per RTP channel, a few at most
	cur     *[]byte
	curPkts uint64
	curTS   uint32
	curHas  bool
}

func newBatchWriter(conn batchConn, timeout time.Duration, maxPending int64, budget *outputBudget, packets, bytes *atomic.Uint64, onErr func(error)) *batchWriter {
	return &batchWriter{
		packets: packets, bytes: bytes,
		conn: conn, timeout: timeout, maxPending: maxPending, budget: budget,
		ch:    make(chan queuedBatch, 512),
		done:  make(chan struct{}),
		ready: conn.armPlay(),
		onErr: onErr,
	}
}

// queuedBatch is a batch handed to the writer goroutine, with the arrival
// time of the camera packet that completed it, as a monotonic offset from
// queueEpoch (0: none): 16 bytes a slot, of the 512 every reader's queue
// holds, instead of 32.
type queuedBatch struct {
	b       *[]byte
	arrival time.Duration
}

var queueEpoch = time.Now()

// queuedArrival is arrival as a queuedBatch keeps it.
func queuedArrival(arrival time.Time) time.Duration {
	if arrival.IsZero() {
		return 0
	}
	return max(arrival.Sub(queueEpoch), 1)
}

// observe records the delay of a frame (batch) written now.
func (w *batchWriter) observe(arrival time.Time) {
	if w.delay != nil && !arrival.IsZero() {
		w.delay(time.Since(arrival))
	}
}

func (w *batchWriter) stop() {
	w.stopOnce.Do(func() {
		w.stopped.Store(true)
		close(w.done)
	})
}

// playing reports whether the PLAY response is out (media may follow it).
func (w *batchWriter) playing() bool {
	if !w.started {
		select {
		case <-w.ready:
			w.started = true
		default:
		}
	}
	return w.started
}

func (w *batchWriter) run() {
	w.budget.add(w)
	defer w.release()
	select {
	case <-w.ready:
	case <-w.done:
		return
	}
	for {
		select {
		case <-w.done:
			return
		case q := <-w.ch:
			b := q.b
			err := w.conn.writeBatch(*b, w.timeout)
			if err == nil {
				if q.arrival != 0 {
					w.observe(queueEpoch.Add(q.arrival))
				}
			}
			w.pending.Add(-int64(len(*b)))
			w.budget.free(int64(len(*b)))
			putBatch(b)
			if err != nil {
				w.onErr(err)
				return
			}
		}
	}
}

// release ends the writer's hand-overs and gives back the budget of what
// is still queued.
func (w *batchWriter) release() {
	w.qmu.Lock()
	w.closed = true
	w.qmu.Unlock()
	for {
		select {
		case q := <-w.ch:
			n := int64(len(*q.b))
			w.pending.Add(-n)
			w.budget.free(n)
			putBatch(q.b)
		default:
			w.budget.remove(w)
			return
		}
	}
}

var errBatchTooBig = errors.New("proxy: RTP packet larger than an interleaved frame")

// add appends pkt (with the reader's SSRC) framed for channel ch; ntp is
// the wall-clock time of its RTP timestamp (timeline.go). A video
// packet with a new timestamp first flushes the previous access unit;
// flushAfter flushes once pkt is in (end of an access unit, or audio). It
// returns false when a flush failed because the reader is too slow: that
// batch is dropped and dropped holds its packet count.
func (w *batchWriter) add(pkt *rtp.Packet, ch uint8, ssrc uint32, ntp time.Time, video, flushAfter bool) (ok bool, dropped uint64, err error) {
	if video && w.curHas && pkt.Timestamp != w.curTS {
		if ok, dropped = w.flush(); !ok {
			return false, dropped, nil
		}
	}
	cp := *pkt
	cp.SSRC = ssrc
	size := cp.MarshalSize()
	if size > 0xffff {
		return true, 0, errBatchTooBig
	}
	if w.cur == nil {
		w.cur = batchPool.Get().(*[]byte)
	}
	b := slices.Grow(*w.cur, 4+size)
	off := len(b)
	b = append(b, '$', ch, byte(size>>8), byte(size))
	b = b[:off+4+size]
	if _, err := cp.MarshalTo(b[off+4:]); err != nil {
		*w.cur = b[:off]
		return true, 0, err
	}
	*w.cur = b
	w.curPkts++
	if video {
		w.curTS, w.curHas = pkt.Timestamp, true
	}
	st := w.srFor(ch)
	st.packets++
	st.octets += uint32(len(pkt.Payload))
	if flushAfter {
		// End of an access unit: time for an RTCP sender report (the
		// mapping of this RTP timestamp to wall-clock time that recorders
		// use to align audio and video)? It states the packet's own
		// wall-clock time, not the present: a packet replayed from the
		// GOP cache maps to when it was live, on the same line as every
		// later report.
		if now := time.Now(); now.Sub(st.last) >= srInterval {
			st.last = now
			w.appendSR(ch+1, ssrc, pkt.Timestamp, ntp, st)
		}
	}
	if flushAfter || len(*w.cur) >= maxBatch {
		ok, dropped = w.flush()
		return ok, dropped, nil
	}
	return true, 0, nil
}

// srInterval is how often a batched reader gets an RTCP sender report per media.
const srInterval = 5 * time.Second

type srState struct {
	last            time.Time
	packets, octets uint32
}

// srChannel is the sender-report state of one RTP channel.
type srChannel struct {
	ch uint8
	st *srState
}

// srFor returns the sender-report state of RTP channel ch (a short slice
// searched in order: a reader has one channel per media it set up).
func (w *batchWriter) srFor(ch uint8) *srState {
	for _, c := range w.sr {
		if c.ch == ch {
			return c.st
		}
	}
	st := &srState{}
	w.sr = append(w.sr, srChannel{ch, st})
	return st
}

// appendSR appends an RTCP sender report for one media, framed for the
// RTCP channel.
func (w *batchWriter) appendSR(ch uint8, ssrc, rtpTime uint32, ntp time.Time, st *srState) {
	sr := rtcp.SenderReport{SSRC: ssrc, NTPTime: ntpTime(ntp), RTPTime: rtpTime, PacketCount: st.packets, OctetCount: st.octets}
	raw, err := sr.Marshal()
	if err != nil || len(raw) > 0xffff {
		return
	}
	b := append(*w.cur, '$', ch, byte(len(raw)>>8), byte(len(raw)))
	*w.cur = append(b, raw...)
}

// ntpTime converts t to the 64-bit NTP format (seconds since 1900, 32.32 fixed point).
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800 // seconds from 1900 to 1970
	s := uint64(t.Unix()) + ntpEpochOffset
	f := uint64(t.Nanosecond()) << 32 / 1e9
	return s<<32 | f
}

// flush hands the batch to the writer goroutine.
func (w *batchWriter) flush() (bool, uint64) {
	if w.cur == nil || len(*w.cur) == 0 {
		return true, 0
	}
	b, n := w.cur, w.curPkts
	w.cur, w.curPkts, w.curHas = nil, 0, false
	if w.stopped.Load() {
		// Stopped (the reader left, or a write failed and its session is
		// closing): nothing more is sent.
		putBatch(b)
		return true, 0
	}
	if w.pending.Load() == 0 && w.playing() {
		// Nothing queued, so nothing can be overtaken: write it from here.
		written, ok, err := w.conn.tryWriteBatch(*b, w.timeout)
		if ok && err != nil {
			putBatch(b)
			w.stop()
			w.onErr(err)   // closes the session (without waiting for it)
			return true, 0 // not the reader being slow
		}
		if ok && written == len(*b) {
			w.observe(w.arrival)
			w.packets.Add(n)
			w.bytes.Add(uint64(written))
			putBatch(b)
			return true, 0
		}
		if written > 0 {
			// The socket took part of it: the writer goroutine sends the rest.
			w.bytes.Add(uint64(written))
			*b = (*b)[:copy(*b, (*b)[written:])]
		}
	}
	size := int64(len(*b))
	if w.pending.Load()+size > w.maxPending {
		putBatch(b)
		return false, n
	}
	if !w.budget.reserve(size) && (!w.budget.evictLargest() || !w.budget.reserve(size)) {
		// The budget is full even after disconnecting the reader holding
		// the most (its queue is freed as its writer ends): this reader
		// skips to the next keyframe.
		putBatch(b)
		return false, n
	}
	w.qmu.Lock()
	defer w.qmu.Unlock()
	if w.closed || w.evicted.Load() {
		// Released, or this very reader was the one evicted: its session
		// is closing.
		w.budget.free(size)
		putBatch(b)
		return true, 0
	}
	w.pending.Add(size)
	select {
	case w.ch <- queuedBatch{b, queuedArrival(w.arrival)}:
		w.packets.Add(n)
		w.bytes.Add(uint64(size))
		return true, 0
	default:
		w.pending.Add(-size)
		w.budget.free(size)
		putBatch(b)
		return false, n
	}
}

package proxy

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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

// trackedListener wraps the core-side RTSP listener so that each connection
// is a trackedConn.
type trackedListener struct{ net.Listener }

func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newTrackedConn(c), nil
}

func newTrackedConn(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c}
	if rc := fastRawConn(c); rc != nil {
		tc.raw = newRawWriter(rc)
	}
	return tc
}

// trackedConn serialises gortsplib's writes (responses, RTCP) with batched
// media writes, and tells a reader's writer when its PLAY response is out.
type trackedConn struct {
	net.Conn
	mu       sync.Mutex
	armed    bool
	playSent chan struct{}

	raw *rawWriter // nil: no non-blocking fast path
}

// rawWriter makes non-blocking writes on one socket (see sock_linux.go)
// without allocating per write. Its user serialises calls.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // w.write, bound once
	b   []byte
	n   int
	err error
}

func newRawWriter(rc syscall.RawConn) *rawWriter {
	w := &rawWriter{rc: rc}
	w.fn = w.write
	return w
}

func (w *rawWriter) write(fd uintptr) bool {
	w.n, w.err = writeNonBlocking(fd, w.b)
	return true // never wait for writability here
}

// tryWrite writes what the socket takes of b at once. A full socket buffer
// is not an error: it took 0 bytes.
func (w *rawWriter) tryWrite(b []byte) (int, error) {
	w.b = b
	err := w.rc.Write(w.fn)
	w.b = nil
	switch {
	case err != nil:
		return 0, err
	case w.err == syscall.EAGAIN:
		return 0, nil
	case w.err != nil:
		return 0, w.err
	}
	return w.n, nil
}

// Write is gortsplib's path: responses and interleaved RTCP.
func (c *trackedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.Conn.Write(b)
	if c.armed {
		// The conn goroutine is answering PLAY: this write was that answer.
		c.armed = false
		close(c.playSent)
	}
	return n, err
}

// armPlay returns a channel closed after gortsplib's next write on this
// connection, which is the PLAY response being prepared.
func (c *trackedConn) armPlay() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.playSent = make(chan struct{})
	c.armed = true
	return c.playSent
}

// tryWriteBatch writes as much of b as the socket takes at once, without
// blocking. It returns ok false, and writes nothing, when the connection is
// busy (gortsplib is writing) or has no non-blocking path.
func (c *trackedConn) tryWriteBatch(b []byte, timeout time.Duration) (n int, ok bool, err error) {
	if c.raw == nil || !c.mu.TryLock() {
		return 0, false, nil
	}
	defer c.mu.Unlock()
	n, err = c.raw.tryWrite(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A deadline left by an earlier write (gortsplib sets one before
		// each response) has passed. This write cannot block, so any future
		// deadline does; writes that can block set their own.
		c.Conn.SetWriteDeadline(time.Now().Add(timeout))
		n, err = c.raw.tryWrite(b)
	}
	return n, true, err
}

func (c *trackedConn) writeBatch(b []byte, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.Conn.Write(b)
	return err
}

// maxBatch flushes a batch early (a frame larger than this is sent in
// several writes).
const maxBatch = 256 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// putBatch empties b and returns it to the pool.
func putBatch(b *[]byte) {
	*b = (*b)[:0]
	batchPool.Put(b)
}

// outputBudget is the memory all batched readers' queues may hold
// together (limits.output_buffer_bytes). When a frame does not fit, the
// reader holding the most is disconnected: one reader that stopped reading
// costs at most its own queue, and many cannot add up past the budget.
type outputBudget struct {
	limit   int64
	used    atomic.Int64
	peak    atomic.Int64  // highest used, for tests and the log
	evicted atomic.Uint64 // readers disconnected because the budget was full
	log     *slog.Logger

	mu      sync.Mutex
	writers map[*batchWriter]struct{}
}

func newOutputBudget(limit int64, log *slog.Logger) *outputBudget {
	return &outputBudget{limit: limit, log: log, writers: map[*batchWriter]struct{}{}}
}

// reserve takes n bytes from the budget, or reports false when they do not fit.
func (b *outputBudget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			for {
				pk := b.peak.Load()
				if u+n <= pk || b.peak.CompareAndSwap(pk, u+n) {
					return true
				}
			}
		}
	}
}

func (b *outputBudget) free(n int64) { b.used.Add(-n) }

func (b *outputBudget) add(w *batchWriter) {
	b.mu.Lock()
	b.writers[w] = struct{}{}
	b.mu.Unlock()
}

func (b *outputBudget) remove(w *batchWriter) {
	b.mu.Lock()
	delete(b.writers, w)
	b.mu.Unlock()
}

// errOverBudget closes the session of the reader evicted to free the budget.
var errOverBudget = errors.New("proxy: the readers' output buffers are full (limits.output_buffer_bytes) and this reader holds the most")

// evictLargest disconnects the reader with the most bytes queued (not
// already evicted). It reports whether it found one.
func (b *outputBudget) evictLargest() bool {
	b.mu.Lock()
	var worst *batchWriter
	var most int64
	for w := range b.writers {
		if p := w.pending.Load(); p > most && !w.evicted.Load() {
			worst, most = w, p
		}
	}
	if worst != nil {
		worst.evicted.Store(true)
	}
	b.mu.Unlock()
	if worst == nil {
		return false
	}
	b.evicted.Add(1)
	b.log.Warn("reader disconnected: the readers' output buffers are full; it held the most",
		"remote", worst.remote, "queued_bytes", most, "output_buffer_bytes", b.limit)
	worst.stop()
	worst.onErr(errOverBudget)
	return true
}

// batchWriter is one TCP reader's batched output.
type batchWriter struct {
	conn       *trackedConn
	timeout    time.Duration
	maxPending int64 // bytes (limits.reader_queue_bytes)
	budget     *outputBudget
	remote     string // for the log
	ch         chan queuedBatch
	pending    atomic.Int64 // bytes handed over, not yet written
	evicted    atomic.Bool
	done       chan struct{}
	stopOnce   sync.Once

	qmu     sync.Mutex // orders hand-overs with release
	closed  bool       // released: nothing more is queued
	ready   <-chan struct{}
	onErr   func(error)
	packets *atomic.Uint64 // the reader's counters, added to when a batch is handed over
	bytes   *atomic.Uint64
	delay   func(time.Duration) // observes each frame's delay in the proxy; nil: none

	// camera side, guarded by the camera's mutex
	arrival time.Time          // when the camera packet being added arrived
	started bool               // ready was closed: the PLAY response is out
	sr      map[uint8]*srState // per RTP channel
	cur     *[]byte
	curPkts uint64
	curTS   uint32
	curHas  bool
}

func newBatchWriter(conn *trackedConn, timeout time.Duration, maxPending int64, budget *outputBudget, packets, bytes *atomic.Uint64, onErr func(error)) *batchWriter {
	return &batchWriter{
		packets: packets, bytes: bytes,
		conn: conn, timeout: timeout, maxPending: maxPending, budget: budget,
		ch:    make(chan queuedBatch, 512),
		sr:    map[uint8]*srState{},
		done:  make(chan struct{}),
		ready: conn.armPlay(),
		onErr: onErr,
	}
}

// queuedBatch is a batch handed to the writer goroutine, with the arrival
// time of the camera packet that completed it.
type queuedBatch struct {
	b       *[]byte
	arrival time.Time
}

// observe records the delay of a frame (batch) written now.
func (w *batchWriter) observe(arrival time.Time) {
	if w.delay != nil && !arrival.IsZero() {
		w.delay(time.Since(arrival))
	}
}

func (w *batchWriter) stop() { w.stopOnce.Do(func() { close(w.done) }) }

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
				w.observe(q.arrival)
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

// add appends pkt (with the reader's SSRC) framed for channel ch. A video
// packet with a new timestamp first flushes the previous access unit;
// flushAfter flushes once pkt is in (end of an access unit, or audio). It
// returns false when a flush failed because the reader is too slow: that
// batch is dropped and dropped holds its packet count.
func (w *batchWriter) add(pkt *rtp.Packet, ch uint8, ssrc uint32, video, flushAfter bool) (ok bool, dropped uint64, err error) {
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
	st := w.sr[ch]
	if st == nil {
		st = &srState{}
		w.sr[ch] = st
	}
	st.packets++
	st.octets += uint32(len(pkt.Payload))
	if flushAfter {
		// End of an access unit: time for an RTCP sender report (the
		// mapping of this RTP timestamp to wall-clock time that recorders
		// use to align audio and video)?
		if now := time.Now(); now.Sub(st.last) >= srInterval {
			st.last = now
			w.appendSR(ch+1, ssrc, pkt.Timestamp, now, st)
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

// appendSR appends an RTCP sender report for one media, framed for the
// RTCP channel.
func (w *batchWriter) appendSR(ch uint8, ssrc, rtpTime uint32, now time.Time, st *srState) {
	sr := rtcp.SenderReport{SSRC: ssrc, NTPTime: ntpTime(now), RTPTime: rtpTime, PacketCount: st.packets, OctetCount: st.octets}
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
	select {
	case <-w.done:
		// Stopped (the reader left, or a write failed and its session is
		// closing): nothing more is sent.
		putBatch(b)
		return true, 0
	default:
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
	case w.ch <- queuedBatch{b, w.arrival}:
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

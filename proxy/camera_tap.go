package proxy

import (
	"bytes"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/pion/rtp"
)

// The camera tap: RTP over the camera's RTSP connection read without
// gortsplib's per-packet path.
//
// Once a camera plays over TCP, gortsplib's client reads every interleaved
// frame into a buffer of its own, then decodes and counts the RTP packet in
// it: about four allocations and a copy per packet, and with them most of
// the proxy's garbage collection. The camera connection is already ours
// (readAheadConn, dialled by the source), so after PLAY it takes the
// frames of the RTP channels the camera granted out of the byte stream
// itself, a whole read at a time: one copy of the run of frames into a
// slab, one slab of packets, each packet decoded in place and handed to the
// source. gortsplib sees everything else (RTSP messages, RTCP, frames of
// other channels or payload types) unchanged, and, so that its read
// time-out still measures the camera, a four-byte empty frame on a channel
// nobody set up at most once a second while the camera sends.
//
// Frames are only taken at message boundaries, which the tap follows from
// the connection's first byte (RTSP messages by their headers and
// Content-Length, frames by their length). When it cannot (an RTSP header
// larger than the read buffer, a malformed length), it stops taking frames
// for the rest of the connection and gortsplib reads everything, as
// without the tap.

// tapKeepAlive is how often gortsplib is shown a frame while the tap takes
// all of them (gortsplib closes a TCP session that shows it nothing for its
// read time-out).
const tapKeepAlive = time.Second

// cameraTap is the tap of one camera connection. Its tracks are set before
// armed; the rest belongs to the goroutine reading the connection.
type cameraTap struct {
	armed  atomic.Bool
	tracks [256]*tapTrack // by RTP channel
	idle   uint8          // a channel no track uses (for the keep-alive frame)

	slabs    tapChunks[byte]       // the chunks slabs are cut from
	pslabs   tapChunks[rtp.Packet] // likewise for packets
	broken   bool                  // lost the message boundaries: take nothing more
	pass     int                   // bytes of the current message still to hand to gortsplib
	lastShow time.Time             // when gortsplib last got bytes
	recycles int                   // how often the slabs were made reusable
	onError  func(error)
}

// tapTrack is one RTP channel taken by the tap.
type tapTrack struct {
	pt      uint8
	deliver func(pkt *rtp.Packet, arrival time.Time)
	lost    func(uint64)
	// holds reports whether what deliver was given before still refers to
	// packets it returned from (nil: never); see tapChunks.
	holds   func() bool
	seq     uint16
	started bool
}

// interleavedRTPChannel returns the RTP channel a SETUP answer granted over
// TCP, if any.
func interleavedRTPChannel(res *base.Response) (int, bool) {
	if res == nil {
		return 0, false
	}
	var th headers.Transport
	if err := th.Unmarshal(res.Header["Transport"]); err != nil {
		return 0, false
	}
	if th.Protocol != headers.TransportProtocolTCP || th.InterleavedIDs == nil {
		return 0, false
	}
	ch := th.InterleavedIDs[0]
	if ch < 0 || ch > 255 || th.InterleavedIDs[1] != ch+1 {
		return 0, false
	}
	return ch, true
}

// add takes the RTP packets of payload type pt on channel ch once armed.
// It is called before arm, by the session goroutine.
// holds (may be nil) is the track's tapTrack.holds.
func (t *cameraTap) add(ch int, pt uint8, deliver func(*rtp.Packet, time.Time), lost func(uint64), holds func() bool) {
	t.tracks[ch] = &tapTrack{pt: pt, deliver: deliver, lost: lost, holds: holds}
}

// arm starts taking frames (after the PLAY answer). It reports whether it
// did: not without a track to take (a session over UDP: gortsplib would
// refuse the keep-alive frame there), nor without a channel free for the
// keep-alive frame.
func (t *cameraTap) arm() bool {
	if !slices.ContainsFunc(t.tracks[:], func(tr *tapTrack) bool { return tr != nil }) {
		return false
	}
	for c := 255; c >= 0; c-- {
		if t.tracks[c] == nil && (c == 0 || t.tracks[c-1] == nil) {
			t.idle = uint8(c)
			t.armed.Store(true)
			return true
		}
	}
	return false
}

// message returns the size of the message starting at b[0] when it can
// tell it from b: an interleaved frame's header, or an RTSP message's
// headers with its Content-Length. more is set when b is too short to
// tell; bad when the stream cannot be followed.
func (t *cameraTap) message(b []byte) (size int, more, bad bool) {
	if len(b) == 0 {
		return 0, true, false
	}
	if b[0] == base.InterleavedFrameMagicByte {
		if len(b) < 4 {
			return 0, true, false
		}
		return 4 + (int(b[2])<<8 | int(b[3])), false, false
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, true, false
	}
	head := b[:end+2]
	n, seen := 0, 0
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		line := head[:i]
		head = head[i+2:]
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			continue
		}
		l, err := strconv.Atoi(string(bytes.TrimSpace(v)))
		if err != nil || l < 0 || l > 1<<24 {
			return 0, false, true
		}
		n = l
		seen++
	}
	if seen != 1 {
		n = 0 // gortsplib reads no body then
	}
	return end + 4 + n, false, false
}

// take decodes and delivers the run of taken frames at the start of b
// (which is complete up to len(b)), and returns how many bytes it used.
// A frame gortsplib must see, or one not whole in b, ends the run.
func (t *cameraTap) take(b []byte) int {
	run, frames := 0, 0
	for {
		f := b[run:]
		if len(f) < 4 || f[0] != base.InterleavedFrameMagicByte || len(f) < 4+(int(f[2])<<8|int(f[3])) {
			break
		}
		tr := t.tracks[f[1]]
		size := int(f[2])<<8 | int(f[3])
		if tr == nil || size < 12 || f[5]&0x7f != tr.pt {
			break // not ours, or too short to be RTP: gortsplib's
		}
		run += 4 + size
		frames++
	}
	if frames == 0 {
		return 0
	}
	slab := t.slabs.cut(run)
	copy(slab, b[:run])
	pkts := t.pslabs.cut(frames)
	now := time.Now() // when the read that brought them returned
	for i, off := 0, 0; i < frames; i++ {
		tr := t.tracks[slab[off+1]]
		size := int(slab[off+2])<<8 | int(slab[off+3])
		pkt := &pkts[i]
		*pkt = rtp.Packet{} // (a reused one: nothing of the last packet)
		raw := slab[off+4 : off+4+size : off+4+size]
		off += 4 + size
		if err := pkt.Unmarshal(raw); err != nil {
			if t.onError != nil {
				t.onError(err)
			}
			continue
		}
		if tr.started {
			if gap := pkt.SequenceNumber - tr.seq - 1; gap != 0 && gap < 0x8000 {
				tr.lost(uint64(gap))
			}
		}
		tr.seq, tr.started = pkt.SequenceNumber, true
		tr.deliver(pkt, now)
	}
	t.settle()
	return run
}

// settle makes the slabs cut so far reusable when no track holds what it
// was given (see tapChunks).
func (t *cameraTap) settle() {
	for _, tr := range t.tracks {
		if tr != nil && tr.holds != nil && tr.holds() {
			return
		}
	}
	t.slabs.recycle()
	t.pslabs.recycle()
	t.recycles++
}

// wholeFrameNeeded reports whether the message at b[0], of size bytes, is
// a frame of a taken channel that is not whole in b yet but will fit in the
// read buffer: the tap waits for the rest rather than hand it to gortsplib.
func (t *cameraTap) wholeFrameNeeded(b []byte, size int) bool {
	return b[0] == base.InterleavedFrameMagicByte && t.tracks[b[1]] != nil &&
		len(b) < size && size >= 4+12 && size <= readAheadSize
}

// partial reports whether b (not empty, at a message boundary) starts with
// a frame of a taken channel that has not all arrived: the tap reads on.
func (t *cameraTap) partial(b []byte) bool {
	if b[0] != base.InterleavedFrameMagicByte {
		return false
	}
	if len(b) < 4 {
		return true
	}
	return t.wholeFrameNeeded(b, 4+(int(b[2])<<8|int(b[3])))
}

// Taken frames are copied into slabs cut from larger chunks, and their
// packets likewise: no allocation per read. The chunks are reused once
// nothing reads what was cut from them, which is when delivery of a run of
// frames has returned and no track holds anything of it:
//
//   - everything that keeps a packet after the stream's dispatch returns
//     copies it first: the GOP cache (into its arena, gop_arena.go), batched
//     and trunk outputs (framed into their queues), gortsplib's per-packet
//     outputs (marshalled before WritePacketRTP returns), and, with a copy
//     of their own (detach), the UDP readers' paced queue, WebRTC previews'
//     queue, and a reader's packets held until its answer to PLAY is out;
//   - the cleaner (rebuild) refers to the payloads of an access unit in
//     progress, or of an MJPEG frame, across packets: its tapTrack.holds
//     (rebuild.Track.HoldsInput) says so, and the chunks wait.
//
// A chunk that waits too long (a camera that never ends an access unit) is
// left to the garbage collector rather than reused. tapPoison (tests)
// overwrites what is recycled, so that an early reuse shows as corruption.
//
// The chunks a tap keeps are live heap, which the collector's goal
// (GOGC=100) doubles in RSS: so they are 16 KiB (a 2 Mbit/s frame read at
// once fits; 8 KiB did not, and allocated again), and one is kept free. A
// run larger than a chunk gets one of its own, not kept; a packet chunk
// holds 8 packets. (32 KiB, eight kept free: +8-17 MiB RSS at 100 cameras.)
const (
	tapChunkBytes   = 16 << 10
	tapChunkPackets = 8
	// tapChunksFree bounds the free chunks a tap keeps (beyond, the
	// garbage collector's: a keyframe's chunks are allocated again once a
	// GOP), tapChunksWaiting those it may reuse later.
	tapChunksFree    = 1
	tapChunksWaiting = 64
)

// tapPoison makes recycled chunks unreadable (tests set it).
var (
	tapPoison        bool
	tapPoisonPayload = []byte{0xA5, 0xA5}
)

// tapChunks is where one tap cuts slabs of T from: the current chunk,
// those filled since the last recycle (waiting), and free ones.
type tapChunks[T any] struct {
	cur     []T // the current chunk, whole
	used    int // of cur
	waiting [][]T
	free    [][]T
}

// cut returns n elements nothing else uses.
func (c *tapChunks[T]) cut(n int) []T {
	if c.used+n > len(c.cur) {
		if len(c.cur) > 0 && len(c.waiting) < tapChunksWaiting {
			c.waiting = append(c.waiting, c.cur)
		}
		c.cur, c.used = c.next(n), 0
	}
	s := c.cur[c.used : c.used+n : c.used+n]
	c.used += n
	return s
}

// next returns a free chunk of at least n elements, or a new one.
func (c *tapChunks[T]) next(n int) []T {
	if k := len(c.free) - 1; k >= 0 && n <= len(c.free[k]) {
		f := c.free[k]
		c.free[k] = nil
		c.free = c.free[:k]
		return f
	}
	return make([]T, max(n, c.per()))
}

// per is the size of a chunk (larger ones are cut for larger runs, and
// not kept).
func (c *tapChunks[T]) per() int {
	var zero T
	if _, ok := any(zero).(byte); ok {
		return tapChunkBytes
	}
	return tapChunkPackets
}

// recycle makes every chunk reusable: nothing refers to what was cut.
func (c *tapChunks[T]) recycle() {
	if tapPoison {
		c.poison(c.cur[:c.used])
	}
	c.used = 0
	if len(c.cur) != c.per() {
		c.cur = nil // a large run's: not kept
	}
	for _, w := range c.waiting {
		if tapPoison {
			c.poison(w)
		}
		if len(c.free) < tapChunksFree && len(w) == c.per() {
			c.free = append(c.free, w)
		}
	}
	clear(c.waiting)
	c.waiting = c.waiting[:0]
}

// poison overwrites s: bytes with 0xA5, packets with an empty packet.
func (c *tapChunks[T]) poison(s []T) {
	switch s := any(s).(type) {
	case []byte:
		for i := range s {
			s[i] = 0xA5
		}
	case []rtp.Packet:
		for i := range s {
			s[i] = rtp.Packet{Header: rtp.Header{SequenceNumber: 0xA5A5}, Payload: tapPoisonPayload}
		}
	}
}

package proxy

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// reader is one reader of a camera's stream, whatever carries its packets:
// the stream keeps its delivery state here and writes through out. The
// RTSP server builds readers (server_session.go); each kind of output is
// one reader_*.go.
type reader struct {
	user   string // the account, or "anonymous"
	remote string
	since  time.Time
	// transport is how the reader is served (set before it is added to a
	// stream, not changed afterwards).
	transport string
	out       output // set before the reader is added to a stream
	close     func() // ends the reader's session

	bytes, packets, dropped atomic.Uint64
	// skipped counts the packets a new reader did not get while it waited
	// for its first keyframe (no cached GOP to start from).
	skipped atomic.Uint64
	// reportedLost, when set, returns the packets the reader said (in its
	// RTCP receiver reports) it never received: lost on the network or in
	// its socket buffer, after the proxy sent them.
	reportedLost func() uint64

	// guarded by the stream's mutex
	active bool
	start  []gopEntry // before active: the packets it starts with (stream.sendLocked)
	// startStore holds start's cached packets (gop_arena.go); nil: none
	startStore *gopStore
	waitKey    bool // skip packets up to the next keyframe
	slow       bool // waitKey because the reader's queue overflowed (count the skipped packets)
}

// dropStart forgets the packets the reader was to start with, releasing
// the cached GOP among them. The stream's mutex is held.
func (r *reader) dropStart() {
	clear(r.start)
	r.start = r.start[:0]
	if r.startStore != nil {
		r.startStore.release()
		r.startStore = nil
	}
}

// output is how the stream writes to one reader.
type output interface {
	// playing reports whether the reader may get media now.
	playing() bool
	// write sends pkt of track t, which reached the proxy at arrival; ntp
	// is the wall-clock time of its RTP timestamp, for the reader's RTCP
	// sender reports (timeline.go).
	// full means the reader's queue is full: dropped packets were lost
	// (err says how) and the reader skips to the next keyframe. Otherwise
	// a non-nil err is a packet not sent for another reason, dropped
	// counting what it cost. write must not keep pkt or its payload once
	// it returns: the payload may be a cached GOP's (gop_arena.go) or the
	// camera tap's (camera_tap.go), both reused after dispatch, so an
	// output that queues a packet queues a copy (detach).
	write(t *rebuild.Track, pkt *rtp.Packet, arrival, ntp time.Time) (full bool, dropped uint64, err error)
	// stop releases what the output holds once the reader has left.
	stop()
	// batched reports whether the reader gets one write per frame.
	batched() bool
}

// errQueueFull is a batched reader's full queue.
var errQueueFull = errors.New("write queue is full")

// status is the reader's line in /v1/cameras.
func (r *reader) status() ReaderStatus {
	return ReaderStatus{
		User: r.user, Remote: r.remote, Since: r.since, Transport: r.transport,
		BytesOut: r.bytes.Load(), PacketsOut: r.packets.Load(), DroppedPackets: r.dropped.Load(),
		SkippedPackets: r.skipped.Load(), ReportedLostPackets: r.lost(),
		BatchedWrites: r.out != nil && r.out.batched(),
	}
}

// lost is the reader's own count of packets it did not receive (0 when it
// sends no receiver reports).
func (r *reader) lost() uint64 {
	if r.reportedLost == nil {
		return 0
	}
	return r.reportedLost()
}

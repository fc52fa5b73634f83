package proxy

import (
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// Readers' timelines.
//
// A reader turns RTP timestamps into presentation times with the RTCP
// sender reports it gets for each track: each report maps one RTP time of
// that track to wall-clock (NTP) time, and recorders such as ffmpeg take
// the latest one as the truth, for lip sync between tracks and for the
// recording's clock. The mapping must therefore be the same line from the
// first packet a reader gets to the last.
//
// The GOP cache breaks the naive mapping ("this packet's RTP time is now"
// when it is written): a new reader first gets the cached GOP, packets up
// to several seconds old, in a burst, and a report written then maps an
// old RTP time to the present; the next report, on a live packet, maps a
// new RTP time to the present too, and the reader's timestamps jump back
// by the cached GOP's age (ffmpeg: "Non-monotonous DTS", frames 1/90000 s
// apart). So the stream keeps one line per track from RTP time to wall-clock
// time (trackTimeline), and every packet written to a reader, live or
// replayed, is stamped with the wall-clock time of its own RTP timestamp
// on that line (trackTimeline.stamp, when it is written); both reader
// paths build their sender reports from that stamp (gortsplib's from
// WritePacketRTPWithNTP, the batched one in batchWriter.add), so a
// replayed packet states the same mapping as a live one.
//
// The line follows the earliest arrivals: a packet is never stamped later
// than it arrived, the lowest latency seen being the best estimate of the
// camera's own timing. It is anchored at the arrival of a track's first
// packet, and re-anchored on any packet that arrives before the line: the
// next ones of a burst (a camera or an edge proxy that sends its own cached
// GOP on PLAY) do, so the line ends on the newest, and otherwise these are
// steps of a millisecond or less (jitter). Packets after the line pull it
// later slowly (clockSlew, at most clockMaxSlew), so that a camera clock
// drifting against the proxy's is followed without a step a reader would
// see. A packet more than clockResync after the line re-anchors it too:
// the camera restarted its timestamps, jumped, or came back after a gap;
// readers then get reports with the new mapping, which is what lets them
// follow it.
//
// The camera's own sender reports are not used: many cameras' clocks are
// wrong or absent, and they only start after a few seconds.

// clockResync is how far a packet may be off its track's line before the
// line is re-anchored on it.
const clockResync = 2 * time.Second

// clockSlew is the share of a late packet's offset from the line that
// moves the line later (a time constant of seconds at camera packet rates)
// ...
const clockSlew = 1024

// ... and clockMaxSlew the most it moves per second of RTP time (1000 ppm:
// ten times a cheap crystal's drift, and 5 ms between two sender reports,
// well under a frame).
const clockMaxSlew = 1000

// trackTimeline is one track's mapping of RTP time to wall-clock time, and
// the sequence number of its last packet (for RTP-Info). Its user (the
// stream) serialises calls.
type trackTimeline struct {
	clock   int64     // RTP clock rate, Hz (0: unknown, no mapping)
	set     bool      // base and baseTS hold an anchor
	baseTS  uint32    // an RTP time on the line ...
	base    time.Time // ... and its wall-clock time
	lastSeq uint16
	resyncs uint64 // re-anchors on a packet over clockResync off the line
}

// ntp returns the wall-clock time of RTP time ts for a packet that arrived
// at arrival, and moves the line towards it.
func (tl *trackTimeline) ntp(ts uint32, arrival time.Time) time.Time {
	if tl.clock <= 0 {
		return arrival
	}
	if !tl.set {
		tl.set, tl.baseTS, tl.base = true, ts, arrival
		return arrival
	}
	at := tl.at(ts)
	off := arrival.Sub(at)
	if off.Abs() > clockResync {
		tl.resyncs++
	}
	if off < 0 || off > clockResync {
		tl.baseTS, tl.base = ts, arrival
		return arrival
	}
	step := min(off/clockSlew, at.Sub(tl.base).Abs()/clockMaxSlew)
	// Re-base on this packet's RTP time so that the offsets stay short
	// (no overflow however long the camera runs).
	tl.baseTS, tl.base = ts, at.Add(step)
	return tl.base
}

// stamp is the wall-clock time of RTP time ts on the line as it is now,
// for a packet written to a reader (the present when the track has no
// line).
func (tl *trackTimeline) stamp(ts uint32) time.Time {
	if tl.clock <= 0 || !tl.set {
		return time.Now()
	}
	return tl.at(ts)
}

// at is the wall-clock time of RTP time ts on the line (RTP times within
// half the 32-bit range either side of the anchor).
func (tl *trackTimeline) at(ts uint32) time.Time {
	d := int64(int32(ts - tl.baseTS))
	return tl.base.Add(time.Duration(d * int64(time.Second) / tl.clock))
}

// rtpAt is the RTP time at wall-clock time t on the line; ok is false
// while the track has no line.
func (tl *trackTimeline) rtpAt(t time.Time) (uint32, bool) {
	if tl.clock <= 0 || !tl.set {
		return 0, false
	}
	d := int64(t.Sub(tl.base)) * tl.clock / int64(time.Second)
	return tl.baseTS + uint32(d), true
}

// timelineLocked returns track t's line (the stream's mutex held).
func (s *stream) timelineLocked(t *rebuild.Track) *trackTimeline {
	tl := s.timelines[t]
	if tl == nil {
		tl = &trackTimeline{clock: int64(t.Media().Formats[0].ClockRate())}
		if s.timelines == nil {
			s.timelines = map[*rebuild.Track]*trackTimeline{}
		}
		s.timelines[t] = tl
	}
	return tl
}

// rtpStart is where a reader starts on one track, as RTP-Info states it.
type rtpStart struct {
	seq uint16
	ts  uint32
	ok  bool // false: not known (the track has had no packet yet)
}

// rtpInfoLead is how long before a reader's first packet the RTP times in
// its RTP-Info are: the start of its range, as gortsplib's own ServerStream
// states it (a tenth of a second early). A player then puts the first
// packet a little after zero: ffmpeg over UDP gives a first, unstamped
// packet the time zero and would otherwise see the first frame go back
// ("Non-monotonous DTS"), and a stream with B-frames, whose first decoding
// time comes before its first presentation time, keeps both positive.
const rtpInfoLead = 100 * time.Millisecond

// rtpInfo returns where reader r, just added, starts on each of medias (the
// medias it set up, in its order), as its answer to PLAY states it in
// RTP-Info: the sequence number of the first packet it gets of each, and the
// RTP time of one instant on every track's line, rtpInfoLead before its
// first packet (the first of the cached GOP it starts with, or the present
// when it waits for the next keyframe). The sequence numbers are exact for
// the tracks that GOP holds; for the others the first packet is still to
// come and gets the track's next number (a reader that waits for the next
// keyframe gets its first video packet later than stated). A track that
// has had no packet yet gets neither.
func (s *stream) rtpInfo(r *reader, medias []*description.Media) []rtpStart {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]rtpStart, len(medias))
	startAt := time.Now()
	if len(r.start) > 0 {
		startAt = r.start[0].tl.stamp(r.start[0].pkt.Timestamp)
	}
	for i, m := range medias {
		var tl *trackTimeline
		for t, o := range s.timelines {
			if t.Media() == m {
				tl = o
			}
		}
		if tl == nil {
			continue
		}
		ts, ok := tl.rtpAt(startAt.Add(-rtpInfoLead))
		if !ok {
			continue
		}
		out[i] = rtpStart{seq: tl.lastSeq + 1, ts: ts, ok: true}
		for _, e := range r.start {
			if e.t.Media() == m {
				out[i].seq = e.pkt.SequenceNumber
				break
			}
		}
	}
	return out
}

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
// apart). So every packet carries the wall-clock time of its own RTP
// timestamp, computed once when it reaches the stream (trackTimeline.ntp)
// and kept with it in the GOP cache; both reader paths build their sender
// reports from that time (gortsplib's from WritePacketRTPWithNTP, the
// batched one in batchWriter.add), so a replayed packet states the same
// mapping it would have stated live.
//
// The line is anchored at the arrival of a track's first packet and then
// follows the arrival times slowly (clockSlew), so that a camera clock
// drifting against the proxy's moves the line by microseconds per packet
// instead of jumping; network jitter and B-frame reordering average out.
// A packet off the line by more than clockResync (the camera restarted
// its timestamps, or jumped) re-anchors it: readers then get one report
// with the new mapping, which is also what lets them follow the jump.
// The camera's own sender reports are not used: many cameras' clocks are
// wrong or absent, and they only start after a few seconds.

// clockResync is how far a packet may be off its track's line before the
// line is re-anchored on it.
const clockResync = 2 * time.Second

// clockSlew is the share of each packet's offset from the line that moves
// the line (a time constant of a few seconds at camera packet rates).
const clockSlew = 1024

// trackTimeline is one track's mapping of RTP time to wall-clock time, and
// the sequence number of its last packet (for RTP-Info). Its user (the
// stream) serialises calls.
type trackTimeline struct {
	clock   int64     // RTP clock rate, Hz (0: unknown, no mapping)
	set     bool      // base and baseTS hold an anchor
	baseTS  uint32    // an RTP time on the line ...
	base    time.Time // ... and its wall-clock time
	lastSeq uint16
	resyncs uint64 // re-anchors after the first
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
	if off > clockResync || off < -clockResync {
		tl.baseTS, tl.base = ts, arrival
		tl.resyncs++
		return arrival
	}
	// Re-base on this packet's RTP time so that the offsets stay short
	// (no overflow however long the camera runs).
	tl.baseTS, tl.base = ts, at.Add(off/clockSlew)
	return tl.base
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
		startAt = r.start[0].ntp
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

package proxy

import (
	"sync/atomic"

	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// gopCache keeps a camera's packets since its last video keyframe, so that
// a new reader starts with a picture at once instead of waiting for the
// next keyframe. Its user (the stream) serialises calls.
type gopCache struct {
	max     int // gop_cache_max_packets; negative: no cache
	entries []gopEntry
	valid   bool          // entries start at a keyframe
	bytes   int64         // RTP bytes (headers as sent) of the entries
	total   *atomic.Int64 // all cameras' cache bytes (cordon_gop_cache_bytes); nil: not counted
}

// gopEntry is one packet for a reader: its track, and the track's line
// that stamps it with the wall-clock time of its RTP timestamp when it is
// written (see timeline.go).
type gopEntry struct {
	t   *rebuild.Track
	pkt *rtp.Packet
	tl  *trackTimeline
}

// add caches e; videoKey starts a new GOP.
func (g *gopCache) add(e gopEntry, videoKey bool) {
	if g.max < 0 {
		return
	}
	if videoKey {
		clear(g.entries)
		g.entries = g.entries[:0]
		g.valid = true
		g.count(-g.bytes)
	}
	if !g.valid {
		return
	}
	if len(g.entries) >= g.max {
		// A GOP this long would not fit in a reader's queue anyway: new
		// readers wait for the next keyframe instead.
		g.reset()
		return
	}
	g.entries = append(g.entries, e)
	g.count(int64(12 + len(e.pkt.Payload)))
}

// count adds n to the cache's bytes (and to the total).
func (g *gopCache) count(n int64) {
	g.bytes += n
	if g.total != nil {
		g.total.Add(n)
	}
}

// packets returns the cached GOP, or nil when there is none.
func (g *gopCache) packets() []gopEntry {
	if !g.valid {
		return nil
	}
	return g.entries
}

// reset forgets the cache (a new plan, or readers closed).
func (g *gopCache) reset() {
	g.entries, g.valid = nil, false
	g.count(-g.bytes)
}

package proxy

import (
	"sync/atomic"

	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// gopCache keeps a camera's packets since its last video keyframe, so that
// a new reader starts with a picture at once instead of waiting for the
// next keyframe. Its user (the stream) serialises calls. The packets are
// copies kept in a gopStore (gop_arena.go), off the garbage-collected heap.
type gopCache struct {
	max     int // gop_cache_max_packets; negative: no cache
	entries []gopEntry
	store   *gopStore     // the entries' memory; nil when there are none
	valid   bool          // entries start at a keyframe
	bytes   int64         // RTP bytes (headers as sent) of the entries
	total   *atomic.Int64 // all cameras' cache bytes (cordon_gop_cache_bytes); nil: not counted
	arena   *arena        // nil: gopArena
}

// gopEntry is one packet for a reader: its track, and the track's line
// that stamps it with the wall-clock time of its RTP timestamp when it is
// written (see timeline.go).
type gopEntry struct {
	t   *rebuild.Track
	pkt *rtp.Packet
	tl  *trackTimeline
	// cached: pkt's payload is in a gopStore, valid while the store is
	// referenced (see gop_arena.go)
	cached bool
}

// add caches a copy of e; videoKey starts a new GOP.
func (g *gopCache) add(e gopEntry, videoKey bool) {
	if g.max < 0 {
		return
	}
	if videoKey {
		g.drop()
		g.valid = true
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
	if g.store == nil {
		a := g.arena
		if a == nil {
			a = gopArena
		}
		g.store = &gopStore{arena: a, refs: 1}
	}
	e.pkt, e.cached = g.store.keep(e.pkt), true
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

// share returns the cached GOP for a new reader and the store it holds a
// reference to (nil when there is none); the reader releases it once it
// has written or dropped those packets.
func (g *gopCache) share() ([]gopEntry, *gopStore) {
	p := g.packets()
	if len(p) == 0 {
		return nil, nil
	}
	g.store.refs++
	return append([]gopEntry(nil), p...), g.store
}

// drop forgets the cached packets, keeping the cache's state.
func (g *gopCache) drop() {
	clear(g.entries)
	g.entries = g.entries[:0]
	if g.store != nil {
		g.store.release()
		g.store = nil
	}
	g.count(-g.bytes)
}

// reset forgets the cache (a new plan, or readers closed).
func (g *gopCache) reset() {
	g.drop()
	g.entries, g.valid = nil, false
}

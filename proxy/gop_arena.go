package proxy

import (
	"slices"
	"sync"

	"github.com/pion/rtp"
)

// The GOP caches' packets are kept off the garbage-collected heap.
//
// A cached GOP is most of what a camera costs in memory (a 2 Mbit/s camera
// with a 2 s GOP caches up to about 600 KB), and on the heap the garbage
// collector's goal (GOGC=100) doubles it: the process grows to twice the
// live heap before each collection. The caches' payloads are therefore
// copied, as they are cached, into fixed-size chunks of anonymous memory
// mapped outside the heap (gop_arena_linux.go), which a GOP gives back when
// nothing uses it any more. The packets' structs stay on the heap (a
// tenth of the bytes). Without mmap (another system, or a failed mapping)
// chunks are plain heap slices: the same code, without the saving.
//
// Who may read a cached packet's payload, and until when: the stream's
// mutex guards every gopStore and its reference count; the cache holds one
// reference while the GOP is current, and a reader whose start (stream.add)
// holds the GOP holds another until it has written or dropped it. Outputs
// are given the cached packet itself: one that keeps a packet past write
// queues a copy on the heap (detach; output.write in reader.go). Chunks
// are never unmapped, only given back to the kernel (madvise): a stale read
// would see zeros or another GOP's bytes, never fault.

const (
	arenaChunkSize = 32 << 10 // bytes per chunk: a few packets' slack per camera
	arenaSlabSize  = 2 << 20  // bytes mapped at once
	// arenaKeepMin is how many free chunks stay resident, at least, for
	// the next GOPs (beyond it, and beyond an eighth of the chunks in use,
	// a freed chunk's pages go back to the kernel).
	arenaKeepMin = 64
)

// arenaChunk is one chunk: mapped memory, or a heap slice (fallback).
type arenaChunk struct {
	b      []byte
	mapped bool
}

// arena is the pool of chunks all GOP caches share.
type arena struct {
	mu       sync.Mutex
	free     []*arenaChunk // resident, most recently freed last
	released []*arenaChunk // mapped, pages given back to the kernel
	inUse    int
	noMmap   bool // a mapping failed: heap chunks from now on

	// mapSlab and release are the system's (gop_arena_linux.go), or nil.
	mapSlab func(n int) ([]byte, error)
	release func(b []byte)
}

var gopArena = newArena()

// get returns a chunk for a GOP: a resident free one, else a released
// one, else a new mapping's, else a heap slice.
func (a *arena) get() *arenaChunk {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inUse++
	if n := len(a.free); n > 0 {
		c := a.free[n-1]
		a.free[n-1] = nil
		a.free = a.free[:n-1]
		return c
	}
	if n := len(a.released); n > 0 {
		c := a.released[n-1]
		a.released[n-1] = nil
		a.released = a.released[:n-1]
		return c
	}
	if a.mapSlab != nil && !a.noMmap {
		slab, err := a.mapSlab(arenaSlabSize)
		if err == nil && len(slab) >= arenaChunkSize {
			for off := arenaChunkSize; off+arenaChunkSize <= len(slab); off += arenaChunkSize {
				// Untouched pages are not resident yet.
				a.released = append(a.released, &arenaChunk{b: slab[off : off+arenaChunkSize : off+arenaChunkSize], mapped: true})
			}
			return &arenaChunk{b: slab[:arenaChunkSize:arenaChunkSize], mapped: true}
		}
		a.noMmap = true
	}
	return &arenaChunk{b: make([]byte, arenaChunkSize)}
}

// put takes back a chunk nothing uses any more.
func (a *arena) put(c *arenaChunk) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inUse--
	if len(a.free) < max(arenaKeepMin, a.inUse/8) {
		a.free = append(a.free, c)
		return
	}
	if !c.mapped {
		return // the garbage collector's
	}
	if a.release != nil {
		a.release(c.b)
	}
	a.released = append(a.released, c)
}

// memory is the bytes of the chunks in use and of the free ones kept
// resident (cordon_gop_cache_memory_bytes).
func (a *arena) memory() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int64(a.inUse+len(a.free)) * arenaChunkSize
}

// gopStore holds one cached GOP's packets: their payloads in arena chunks,
// their structs in slices of the heap. Its user (the stream) serialises
// every call, and refs, under its mutex.
type gopStore struct {
	arena  *arena
	refs   int // the cache while the GOP is current, and readers starting from it
	chunks []*arenaChunk
	room   []byte       // what is left of the last chunk
	pkts   []rtp.Packet // what is left of the last slice of structs
}

// gopStorePackets is how many packet structs are allocated at once.
const gopStorePackets = 64

// keep returns a copy of p whose payload is in the store (its CSRC list
// and extensions, rare and small, on the heap): nothing of p's own memory
// is kept.
func (s *gopStore) keep(p *rtp.Packet) *rtp.Packet {
	n := len(p.Payload)
	var pay []byte
	if n > arenaChunkSize {
		pay = slices.Clone(p.Payload) // larger than a chunk: on the heap
	} else {
		if n > len(s.room) {
			c := s.arena.get()
			s.chunks = append(s.chunks, c)
			s.room = c.b
		}
		pay = s.room[:n:n]
		copy(pay, p.Payload)
		s.room = s.room[n:]
	}
	if len(s.pkts) == 0 {
		s.pkts = make([]rtp.Packet, gopStorePackets)
	}
	cp := &s.pkts[0]
	s.pkts = s.pkts[1:]
	*cp = rtp.Packet{Header: p.Header, Payload: pay, PaddingSize: p.PaddingSize}
	if len(p.CSRC) > 0 || len(p.Extensions) > 0 { // rare: copy them
		cp.Header = p.Header.Clone()
	} else {
		cp.CSRC, cp.Extensions = nil, nil
	}
	return cp
}

// release drops one reference; the last gives the chunks back.
func (s *gopStore) release() {
	s.refs--
	if s.refs > 0 {
		return
	}
	for _, c := range s.chunks {
		s.arena.put(c)
	}
	clear(s.chunks)
	s.chunks, s.room, s.pkts = nil, nil, nil
}

// detach returns a copy of a cached packet on the heap, for an output that
// keeps packets after write returns.
func detach(p *rtp.Packet) *rtp.Packet {
	cp := *p
	cp.Payload = slices.Clone(p.Payload)
	return &cp
}

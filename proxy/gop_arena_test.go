package proxy

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/pion/rtp"
)

// gopPacket is a packet whose payload says which GOP and packet it is,
// repeated to size bytes (at least 8).
func gopPacket(gop, seq uint32, size int) *rtp.Packet {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(seq), Timestamp: gop}}
	p.Payload = make([]byte, max(size, 8))
	for i := 0; i+8 <= len(p.Payload); i += 8 {
		binary.BigEndian.PutUint32(p.Payload[i:], gop)
		binary.BigEndian.PutUint32(p.Payload[i+4:], seq)
	}
	return p
}

// checkGOPPacket reports whether p still holds what gopPacket wrote.
func checkGOPPacket(p *rtp.Packet) bool {
	gop, seq := p.Timestamp, uint32(p.SequenceNumber)
	for i := 0; i+8 <= len(p.Payload); i += 8 {
		if binary.BigEndian.Uint32(p.Payload[i:]) != gop || uint32(uint16(binary.BigEndian.Uint32(p.Payload[i+4:]))) != seq&0xffff {
			return false
		}
	}
	return true
}

// A cached packet is a copy: payload in the store, header lists cloned;
// the camera's packet can be reused at once.
func TestGOPStoreKeepsCopies(t *testing.T) {
	a := newArena()
	g := gopCache{max: 100, arena: a}
	in := gopPacket(1, 1, 1200)
	in.CSRC = []uint32{7}
	if err := in.SetExtension(1, []byte{9, 9}); err != nil {
		t.Fatal(err)
	}
	g.add(gopEntry{pkt: in}, true)
	big := gopPacket(1, 2, arenaChunkSize+100) // larger than a chunk: on the heap
	g.add(gopEntry{pkt: big}, false)
	clear(in.Payload)
	in.CSRC[0] = 0
	in.Extensions[0] = rtp.Extension{}
	clear(big.Payload)
	got := g.packets()
	if len(got) != 2 || !got[0].cached || !checkGOPPacket(got[0].pkt) || !checkGOPPacket(got[1].pkt) {
		t.Fatalf("cached packets changed with the camera's")
	}
	if got[0].pkt.CSRC[0] != 7 || string(got[0].pkt.GetExtension(1)) != "\x09\x09" {
		t.Fatalf("header lists not copied: %v %v", got[0].pkt.CSRC, got[0].pkt.GetExtension(1))
	}
	if a.inUse != 1 || a.memory() != arenaChunkSize {
		t.Fatalf("%d chunks in use, memory %d; want 1, one chunk", a.inUse, a.memory())
	}
	d := detach(got[0].pkt)
	g.reset()
	if a.inUse != 0 || !checkGOPPacket(d) {
		t.Fatalf("after reset: %d chunks in use; detached copy intact: %v", a.inUse, checkGOPPacket(d))
	}
	if a.memory() != arenaChunkSize { // kept for the next GOP
		t.Fatalf("after reset: memory %d, want one chunk", a.memory())
	}
}

// A GOP shared with a reader keeps its chunks until the reader releases
// it, across keyframes; the arena keeps some free chunks resident and
// gives the rest back.
func TestGOPStoreShared(t *testing.T) {
	a := newArena()
	released := 0
	rel := a.release
	a.release = func(b []byte) {
		released++
		if rel != nil {
			rel(b)
		}
	}
	g := gopCache{max: 10000, arena: a}
	for i := range 100 {
		g.add(gopEntry{pkt: gopPacket(1, uint32(i), 1000)}, i == 0)
	}
	start, st := g.share()
	n := a.inUse
	if len(start) != 100 || st == nil || st.refs != 2 || n < 3 {
		t.Fatalf("shared %d packets, refs %d, %d chunks", len(start), st.refs, n)
	}
	for i := range 1000 { // new GOPs, larger than the free pool
		g.add(gopEntry{pkt: gopPacket(2+uint32(i/100), uint32(i), 1000)}, i%100 == 0)
		g.add(gopEntry{pkt: gopPacket(2+uint32(i/100), uint32(i), 30000)}, false)
	}
	for _, e := range start {
		if !checkGOPPacket(e.pkt) || e.pkt.Timestamp != 1 {
			t.Fatalf("shared packet %d overwritten", e.pkt.SequenceNumber)
		}
	}
	st.release()
	g.reset()
	if a.inUse != 0 || st.refs != 0 {
		t.Fatalf("after release: %d chunks in use, refs %d", a.inUse, st.refs)
	}
	if len(a.free) > max(arenaKeepMin, 0) || (a.mapSlab != nil && released == 0) {
		t.Fatalf("%d free chunks resident, %d released", len(a.free), released)
	}
}

// Cameras add packets while readers join, hold the GOP they started from
// across later packets (as a reader's start waits for its PLAY answer),
// then read it: no cached payload is overwritten while a reader holds it,
// and every chunk comes back. Run with -race.
func TestGOPStoreStress(t *testing.T) {
	a := newArena()
	const cameras, readers, packets = 4, 3, 3000
	var wg sync.WaitGroup
	for c := range cameras {
		var mu sync.Mutex // the stream's
		g := &gopCache{max: 400, arena: a}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for i := range packets {
				mu.Lock()
				g.add(gopEntry{pkt: gopPacket(uint32(c<<24|i/50), uint32(i), 8+rng.IntN(1400))}, i%50 == 0)
				mu.Unlock()
			}
			mu.Lock()
			g.reset()
			mu.Unlock()
		})
		for r := range readers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(c), uint64(r)+2))
				for range 200 {
					mu.Lock()
					start, st := g.share()
					mu.Unlock()
					for range rng.IntN(5) {
						runtime.Gosched() // packets arrive meanwhile
					}
					mu.Lock()
					for _, e := range start {
						if !checkGOPPacket(e.pkt) {
							t.Errorf("camera %d: cached packet %d overwritten while shared", c, e.pkt.SequenceNumber)
						}
					}
					if st != nil {
						st.release()
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if a.inUse != 0 {
		t.Fatalf("%d chunks still in use", a.inUse)
	}
}

// fuzzArena is FuzzGOPStore's (an arena's mappings are never unmapped:
// one per input would add up).
var fuzzArena = newArena()

// FuzzGOPStore drives one cache and its readers with random operations
// and checks every shared packet and the chunk count against a model.
func FuzzGOPStore(f *testing.F) {
	f.Add([]byte{0x80, 0x10, 0x01, 0x42, 0x02, 0x83, 0x03, 0x04})
	f.Add([]byte{0xff, 0xff, 0x7f, 0x01, 0x01, 0x80, 0x02, 0x02, 0x00, 0x03})
	f.Fuzz(func(t *testing.T, ops []byte) {
		a := fuzzArena
		g := gopCache{max: 64, arena: a}
		type held struct {
			start []gopEntry
			st    *gopStore
		}
		var readers []held
		gop := uint32(0)
		for i, op := range ops {
			switch op % 4 {
			case 0, 1: // a packet; the top bit makes it a keyframe
				if op&0x80 != 0 {
					gop++
				}
				g.add(gopEntry{pkt: gopPacket(gop, uint32(i), int(op)*300)}, op&0x80 != 0)
			case 2:
				start, st := g.share()
				readers = append(readers, held{start, st})
			case 3:
				if len(readers) > 0 {
					k := int(op>>2) % len(readers)
					if readers[k].st != nil {
						readers[k].st.release()
					}
					readers = append(readers[:k], readers[k+1:]...)
				}
			}
			for _, r := range readers {
				for _, e := range r.start {
					if !checkGOPPacket(e.pkt) {
						t.Fatalf("op %d: shared packet %d overwritten", i, e.pkt.SequenceNumber)
					}
				}
			}
		}
		for _, r := range readers {
			if r.st != nil {
				r.st.release()
			}
		}
		g.reset()
		if a.inUse != 0 {
			t.Fatalf("%d chunks still in use", a.inUse)
		}
	})
}

package proxy

import (
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
)

// The GOP cache counts the bytes it holds, and the total of all caches
// follows each one through keyframes, overflow and reset.
func TestGOPCacheBytes(t *testing.T) {
	var total atomic.Int64
	a := gopCache{max: 4, total: &total}
	b := gopCache{max: 100, total: &total}
	pkt := func(n int) *rtp.Packet { return &rtp.Packet{Payload: make([]byte, n)} }

	a.add(gopEntry{pkt: pkt(100)}, false) // before a keyframe: not cached
	if a.bytes != 0 || total.Load() != 0 {
		t.Fatalf("before a keyframe: %d bytes, total %d", a.bytes, total.Load())
	}
	a.add(gopEntry{pkt: pkt(100)}, true)
	a.add(gopEntry{pkt: pkt(50)}, false)
	b.add(gopEntry{pkt: pkt(1000)}, true)
	if a.bytes != 12+100+12+50 || total.Load() != a.bytes+12+1000 {
		t.Fatalf("a holds %d bytes, total %d", a.bytes, total.Load())
	}
	a.add(gopEntry{pkt: pkt(10)}, true) // a new GOP
	if a.bytes != 22 || total.Load() != 22+1012 {
		t.Fatalf("after a keyframe: a holds %d bytes, total %d", a.bytes, total.Load())
	}
	for range 4 { // over max: the cache drops its GOP
		a.add(gopEntry{pkt: pkt(10)}, false)
	}
	if a.bytes != 0 || a.packets() != nil || total.Load() != 1012 {
		t.Fatalf("after overflow: a holds %d bytes, total %d", a.bytes, total.Load())
	}
	b.reset()
	if total.Load() != 0 {
		t.Fatalf("after reset: total %d", total.Load())
	}
}

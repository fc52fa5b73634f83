package egress

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestFlowTableAgainstMap inserts, looks up and removes random flows (few
// distinct keys, so probe chains collide and wrap) and checks the table
// against a map after every step: backward-shift deletion keeps every
// remaining flow reachable, and the cap evicts the least recently seen.
func TestFlowTableAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tb := newFlowTable(1500)
	ref := map[FlowKey]*flow{}
	key := func() FlowKey {
		a := netip.AddrFrom4([4]byte{192, 168, 50, byte(r.IntN(40))})
		return FlowKey{Proto: 17, Src: netip.AddrPortFrom(a, uint16(r.IntN(60))), Dst: ap(proxy, 5000)}
	}
	for i := range 200_000 {
		k := key()
		switch f := tb.get(k); {
		case f != ref[k]:
			t.Fatalf("step %d: get(%v) = %p, want %p", i, k, f, ref[k])
		case f == nil:
			f = &flow{key: k}
			if ev := tb.insert(f); ev != nil {
				delete(ref, ev.key)
			}
			ref[k] = f
		case r.IntN(3) == 0:
			tb.remove(f)
			delete(ref, k)
		}
		if tb.len() != len(ref) || tb.len() > 1500 {
			t.Fatalf("step %d: %d flows, want %d", i, tb.len(), len(ref))
		}
	}
	for k, f := range ref {
		if tb.peek(k) != f {
			t.Fatalf("%v lost", k)
		}
	}
	n := 0
	tb.each(func(*flow) { n++ })
	if n != len(ref) {
		t.Fatalf("each saw %d flows, want %d", n, len(ref))
	}
}

package egress

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"github.com/cordon-vms/cordon/egress/quicinitial"
)

// flow is one bidirectional flow between a camera and a peer, oriented from
// its initiator (the side that sent the SYN or the first datagram) to its
// responder.
type flow struct {
	key        FlowKey // canonical map key (lower endpoint first)
	init, resp netip.AddrPort
	hash       uint64 // t.hash(&key): its place in the table
	prev, next *flow  // LRU list, most recent at the head

	first, last int64     // packet time, Unix nanoseconds
	lastCamOut  int64     // last time the camera sent on this flow
	pkts, bytes [2]uint64 // [0] initiator → responder, [1] responder → initiator

	cam   netip.Addr // the camera of this flow
	peer  netip.Addr // the other side
	port  uint16     // service port: the responder's port
	proto uint8
	// ICMP: the type and code of the flow's first packet, for its
	// Community ID (icmpSeen: a packet, not a flow record, opened it;
	// icmpRev: the responder sent it).
	icmpType, icmpCode uint8
	icmpSeen, icmpRev  bool
	outbound           bool // the camera initiated the flow
	allowed            bool // an allow rule matches
	local              bool // multicast/broadcast peer: stays on the camera network
	lateral            bool // to a management port of another camera or a core host
	watched            bool // a watch-list signature already matched this flow
	synOnly            bool // TCP: only SYNs from the initiator so far (retries are not contacts)
	rolled             bool // one of a scan or flood: counted in the camera's scan alert
	// solicited names the camera's multicast discovery query (SSDP
	// M-SEARCH, mDNS, WS-Discovery) whose unicast reply opened the flow.
	solicited string

	inspected uint8 // camera payload packets inspected for SNI/signatures
	inspDone  bool
	synSeen   bool                   // TCP: the camera's SYN was seen, isn is its sequence number
	isn       uint32                 //
	flight    *tcpFlight             // TCP: the camera's first bytes, reassembled (rare)
	quic      *quicinitial.Assembler // QUIC Initial reassembly (rare)
	dns       *dnsStream             // TCP to port 53: the camera's DNS messages (rare)
	agg       *pending               // open unexpected-destination alert, to add bytes to
	vol       *volumeWindow          // the camera's volume window when the flow last counted (unless gone)
}

// flowTable is a hash table of flows with a hard cap and an LRU list: a
// new flow beyond the cap evicts the least recently seen one, and idle
// flows expire. The table is open-addressed (linear probing, backward-shift
// deletion) with each slot holding the key's hash beside the flow, so a
// lookup touches one slot and the flow it finds: Go's map of 72-byte keys
// touched a control word, a slot and then the flow, one cache miss more
// per packet on a table of tens of thousands of flows.
type flowTable struct {
	slots []flowSlot // len is a power of two, at least twice n
	n     int
	head  flow // sentinel: head.next is the most recent, head.prev the oldest
	max   int
	seed  uint64 // random: the hash of a key cannot be chosen from outside
}

// flowSlot is one table entry; f is nil when the slot is empty.
type flowSlot struct {
	h uint64
	f *flow
}

const minFlowSlots = 1 << 10

func newFlowTable(max int) *flowTable {
	t := &flowTable{slots: make([]flowSlot, minFlowSlots), max: max, seed: rand.Uint64()}
	t.head.next, t.head.prev = &t.head, &t.head
	return t
}

// hash mixes the table's seed with the key's addresses, ports and protocol
// (the zone of an IPv6 address is left out: equal keys still hash alike).
// Two IPv4 addresses are read as 32-bit values: As16 wrote each address
// to memory in halves and read it back whole, a stalled store forward.
func (t *flowTable) hash(k *FlowKey) uint64 {
	sa, da := k.Src.Addr(), k.Dst.Addr()
	ports := uint64(k.Src.Port())<<24 | uint64(k.Dst.Port())<<8 | uint64(k.Proto)
	if sa.Is4() && da.Is4() {
		a, b := sa.As4(), da.As4()
		v := uint64(binary.LittleEndian.Uint32(a[:]))<<32 | uint64(binary.LittleEndian.Uint32(b[:]))
		return mix64(mix64(v^t.seed)^ports^t.seed<<1) | 1 // never 0
	}
	a, b := sa.As16(), da.As16()
	x := t.seed ^ ports
	x = mix64(x ^ binary.LittleEndian.Uint64(a[:8]))
	x = mix64(x ^ binary.LittleEndian.Uint64(a[8:]) ^ t.seed)
	x = mix64(x ^ binary.LittleEndian.Uint64(b[:8]))
	return mix64(x^binary.LittleEndian.Uint64(b[8:])^t.seed) | 1 // never 0
}

// mix64 is MurmurHash3's 64-bit finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// find returns the flow with key k, nil if there is none, without
// touching the LRU list.
func (t *flowTable) find(k *FlowKey, h uint64) *flow {
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.f == nil {
			return nil
		}
		if s.h == h && s.f.key == *k {
			return s.f
		}
	}
}

// peek returns the flow with key k, nil if there is none (LRU unchanged).
func (t *flowTable) peek(k FlowKey) *flow { return t.find(&k, t.hash(&k)) }

func (t *flowTable) get(k FlowKey) *flow {
	f := t.find(&k, t.hash(&k))
	if f != nil && t.head.next != f {
		t.unlink(f)
		t.pushFront(f)
	}
	return f
}

// insert adds f and returns the flow evicted to make room, if any.
func (t *flowTable) insert(f *flow) (evicted *flow) {
	if t.n >= t.max {
		evicted = t.oldest()
		t.remove(evicted)
	}
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	f.hash = t.hash(&f.key)
	t.place(flowSlot{f.hash, f})
	t.n++
	t.pushFront(f)
	return evicted
}

func (t *flowTable) place(s flowSlot) {
	mask := uint64(len(t.slots) - 1)
	i := s.h & mask
	for t.slots[i].f != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

func (t *flowTable) grow() {
	old := t.slots
	t.slots = make([]flowSlot, 2*len(old))
	for _, s := range old {
		if s.f != nil {
			t.place(s)
		}
	}
}

func (t *flowTable) oldest() *flow {
	if t.head.prev == &t.head {
		return nil
	}
	return t.head.prev
}

// remove deletes f, shifting back the entries that probed past its slot.
func (t *flowTable) remove(f *flow) {
	mask := uint64(len(t.slots) - 1)
	i := f.hash & mask
	for t.slots[i].f != f {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; t.slots[j].f != nil; j = (j + 1) & mask {
		// The entry at j may move to i unless its home slot lies
		// cyclically in (i, j].
		if home := t.slots[j].h & mask; (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = flowSlot{}
	t.n--
	t.unlink(f)
}

// each calls fn for every flow, in no order.
func (t *flowTable) each(fn func(*flow)) {
	for _, s := range t.slots {
		if s.f != nil {
			fn(s.f)
		}
	}
}

func (t *flowTable) unlink(f *flow) {
	f.prev.next = f.next
	f.next.prev = f.prev
	f.prev, f.next = nil, nil
}

func (t *flowTable) pushFront(f *flow) {
	f.prev = &t.head
	f.next = t.head.next
	t.head.next.prev = f
	t.head.next = f
}

func (t *flowTable) len() int { return t.n }

// canonical orders the endpoints so both directions share one key.
func canonical(proto uint8, a, b netip.AddrPort) FlowKey {
	if c := a.Addr().Compare(b.Addr()); c > 0 || (c == 0 && a.Port() > b.Port()) {
		return FlowKey{Proto: proto, Src: b, Dst: a}
	}
	return FlowKey{Proto: proto, Src: a, Dst: b}
}

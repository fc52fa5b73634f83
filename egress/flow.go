package egress

import (
	"net/netip"

	"github.com/cordon-vms/cordon/egress/quicinitial"
)

// flow is one bidirectional flow between a camera and a peer, oriented from
// its initiator (the side that sent the SYN or the first datagram) to its
// responder.
type flow struct {
	key        FlowKey // canonical map key (lower endpoint first)
	init, resp netip.AddrPort
	prev, next *flow // LRU list, most recent at the head

	first, last int64     // packet time, Unix nanoseconds
	lastCamOut  int64     // last time the camera sent on this flow
	pkts, bytes [2]uint64 // [0] initiator → responder, [1] responder → initiator

	cam      netip.Addr // the camera of this flow
	peer     netip.Addr // the other side
	port     uint16     // service port: the responder's port
	proto    uint8
	outbound bool // the camera initiated the flow
	allowed  bool // an allow rule matches
	local    bool // multicast/broadcast peer: stays on the camera network
	lateral  bool // to a management port of another camera or a core host
	watched  bool // a watch-list signature already matched this flow
	synOnly  bool // TCP: only SYNs from the initiator so far (retries are not contacts)
	rolled   bool // one of a scan or flood: counted in the camera's scan alert
	// solicited names the camera's multicast discovery query (SSDP
	// M-SEARCH, mDNS, WS-Discovery) whose unicast reply opened the flow.
	solicited string

	inspected uint8 // camera payload packets inspected for SNI/signatures
	inspDone  bool
	synSeen   bool                   // TCP: the camera's SYN was seen, isn is its sequence number
	isn       uint32                 //
	flight    *tcpFlight             // TCP: the camera's first bytes, reassembled (rare)
	quic      *quicinitial.Assembler // QUIC Initial reassembly (rare)
	agg       *pending               // open unexpected-destination alert, to add bytes to
}

// flowTable is a map of flows with a hard cap and an LRU list: a new flow
// beyond the cap evicts the least recently seen one, and idle flows expire.
type flowTable struct {
	m    map[FlowKey]*flow
	head flow // sentinel: head.next is the most recent, head.prev the oldest
	max  int
}

func newFlowTable(max int) *flowTable {
	t := &flowTable{m: make(map[FlowKey]*flow, min(max, 1<<16)), max: max}
	t.head.next, t.head.prev = &t.head, &t.head
	return t
}

func (t *flowTable) get(k FlowKey) *flow {
	f := t.m[k]
	if f != nil && t.head.next != f {
		t.unlink(f)
		t.pushFront(f)
	}
	return f
}

// insert adds f and returns the flow evicted to make room, if any.
func (t *flowTable) insert(f *flow) (evicted *flow) {
	if len(t.m) >= t.max {
		evicted = t.oldest()
		t.remove(evicted)
	}
	t.m[f.key] = f
	t.pushFront(f)
	return evicted
}

func (t *flowTable) oldest() *flow {
	if t.head.prev == &t.head {
		return nil
	}
	return t.head.prev
}

func (t *flowTable) remove(f *flow) {
	delete(t.m, f.key)
	t.unlink(f)
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

func (t *flowTable) len() int { return len(t.m) }

// canonical orders the endpoints so both directions share one key.
func canonical(proto uint8, a, b netip.AddrPort) FlowKey {
	if c := a.Addr().Compare(b.Addr()); c > 0 || (c == 0 && a.Port() > b.Port()) {
		return FlowKey{Proto: proto, Src: b, Dst: a}
	}
	return FlowKey{Proto: proto, Src: a, Dst: b}
}

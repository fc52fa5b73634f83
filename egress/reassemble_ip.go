package egress

import (
	"net/netip"
	"time"
)

// Bounds of IP fragment reassembly. A datagram whose fragments do not all
// arrive within fragTimeout of its first one, or that is pushed out to make
// room, is given up and counted (Metrics.FragmentsLost).
const (
	maxFragDatagrams = 1024             // datagrams being reassembled at once
	maxFragBytes     = 4 << 20          // bytes buffered for them together
	maxFragments     = 128              // fragments of one datagram
	maxDatagram      = 65535            // largest reassembled payload
	fragTimeout      = 30 * time.Second // as Linux's ipfrag_time
)

// fragKey identifies a datagram being reassembled: source, destination,
// protocol and identification (RFC 791; RFC 8200 section 4.5).
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
	v6       bool
}

// fragDatagram is one datagram being reassembled.
type fragDatagram struct {
	key        fragKey
	first      int64  // packet time of its first fragment, Unix ns
	buf        []byte // payload bytes, up to the highest end seen
	have       []span // byte ranges received, sorted and merged
	total      int    // payload length once the last fragment arrived, else -1
	frags      int
	prev, next *fragDatagram // arrival order, oldest at head.next
}

type span struct{ start, end int }

// reassembler puts IPv4 and IPv6 fragments back together. Overlapping
// fragments keep the bytes that arrived first (as Suricata's default
// policy); a fragment that contradicts the datagram's length is ignored.
type reassembler struct {
	m     map[fragKey]*fragDatagram
	head  fragDatagram // sentinel of the arrival list
	bytes int          // capacity of the buffers held
	met   *Metrics
}

func newReassembler(m *Metrics) *reassembler {
	r := &reassembler{m: map[fragKey]*fragDatagram{}, met: m}
	r.head.next, r.head.prev = &r.head, &r.head
	return r
}

// add files the fragment of datagram k at byte offset off (more: more
// fragments follow) received at ts. It returns the whole payload and
// decoded when this fragment completed the datagram (the slice is valid
// until the next call), dropFragment while it is incomplete, or
// dropMalformed for a fragment that cannot belong to any datagram.
func (r *reassembler) add(k fragKey, off int, more bool, data []byte, ts int64) ([]byte, dropReason) {
	end := off + len(data)
	if end > maxDatagram || (more && len(data) == 0) {
		return nil, dropMalformed
	}
	dg := r.m[k]
	if dg == nil {
		if len(r.m) >= maxFragDatagrams {
			r.drop(r.head.next)
		}
		dg = &fragDatagram{key: k, first: ts, total: -1}
		r.m[k] = dg
		dg.prev, dg.next = r.head.prev, &r.head
		r.head.prev.next = dg
		r.head.prev = dg
	}
	dg.frags++
	if dg.frags > maxFragments {
		r.drop(dg)
		return nil, dropMalformed
	}
	if !more {
		if dg.total >= 0 && dg.total != end {
			return nil, dropFragment // a second, different last fragment: the first wins
		}
		dg.total = end
	}
	if dg.total >= 0 && end > dg.total {
		return nil, dropFragment // bytes past the end the last fragment set
	}
	if end > cap(dg.buf) {
		newCap := min(max(end, 2*cap(dg.buf), 512), maxDatagram)
		grow := newCap - cap(dg.buf)
		for r.bytes+grow > maxFragBytes && r.head.next != dg {
			r.drop(r.head.next)
		}
		if r.bytes+grow > maxFragBytes {
			r.drop(dg)
			return nil, dropFragment
		}
		nb := make([]byte, end, newCap)
		copy(nb, dg.buf)
		dg.buf = nb
		r.bytes += grow
	} else if end > len(dg.buf) {
		dg.buf = dg.buf[:end]
	}
	dg.fill(off, data)
	if dg.total >= 0 && len(dg.have) == 1 && dg.have[0] == (span{0, dg.total}) {
		r.remove(dg)
		r.met.Reassembled.Add(1)
		return dg.buf[:dg.total], decoded
	}
	return nil, dropFragment
}

// fill copies the bytes of data (at off) that no earlier fragment gave,
// and records the range as received.
func (dg *fragDatagram) fill(off int, data []byte) { dg.have = fillFirst(dg.buf, dg.have, off, data) }

// fillFirst copies into buf the bytes of data (at offset off) that no range
// of have covers yet — the first copy of a byte wins — and returns have
// with [off, off+len(data)) merged in. buf must hold off+len(data) bytes.
func fillFirst(buf []byte, have []span, off int, data []byte) []span {
	end := off + len(data)
	pos := off
	for _, h := range have {
		if h.end <= pos {
			continue
		}
		if h.start >= end {
			break
		}
		if h.start > pos {
			copy(buf[pos:h.start], data[pos-off:])
		}
		pos = max(pos, h.end)
		if pos >= end {
			break
		}
	}
	if pos < end {
		copy(buf[pos:end], data[pos-off:])
	}
	out := make([]span, 0, len(have)+1)
	ns := span{off, end}
	placed := false
	for _, h := range have {
		switch {
		case h.end < ns.start:
			out = append(out, h)
		case h.start > ns.end:
			if !placed {
				out = append(out, ns)
				placed = true
			}
			out = append(out, h)
		default:
			ns.start, ns.end = min(ns.start, h.start), max(ns.end, h.end)
		}
	}
	if !placed {
		out = append(out, ns)
	}
	return out
}

// expire gives up the datagrams whose first fragment is older than
// fragTimeout before now.
func (r *reassembler) expire(now int64) {
	limit := now - int64(fragTimeout)
	for dg := r.head.next; dg != &r.head && dg.first < limit; dg = r.head.next {
		r.drop(dg)
	}
}

// drop gives dg up and counts it lost.
func (r *reassembler) drop(dg *fragDatagram) {
	r.remove(dg)
	r.met.FragmentsLost.Add(1)
}

func (r *reassembler) remove(dg *fragDatagram) {
	delete(r.m, dg.key)
	dg.prev.next = dg.next
	dg.next.prev = dg.prev
	dg.prev, dg.next = nil, nil
	r.bytes -= cap(dg.buf)
}

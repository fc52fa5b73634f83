package proxy

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/klauspost/reedsolomon"
)

// Forward error correction of datagram cameras (fec in the play request
// and its answer; trunk_fec_config.go). The edge cuts what it writes at
// once (an access unit, or the few queued behind it) into datagrams as
// without FEC, groups them by up to Data, and sends after each group
// ceil(n*Parity/Data) repair datagrams (Reed-Solomon over GF(2^8),
// github.com/klauspost/reedsolomon): the core rebuilds a group's lost
// datagrams from any n of its n+r. Every datagram of a camera with FEC is
//
//	id      uint32  the camera's datagram id
//	group   uint32  the group's number on this id, from 0
//	index   uint8   the shard's index: 0..n-1 data, n..n+r-1 repair
//	n       uint8   data shards of the group (1..maxFECData; 0: a probe)
//	r       uint8   repair shards of the group (1..maxFECParity)
//	shard
//
// A data shard is a length (uint16) and what a datagram holds without
// FEC after the id (seq, media, frag, frags, payload); a repair shard is
// as long as the group's longest data shard, the others taken as padded
// with zeros. A probe (n 0) only tests the path's datagram size; the
// core ignores it. The core releases data shards in order, holding a
// group with a hole until enough shards have come to rebuild it, or it
// gives the group up: when a datagram of the group after the next
// arrives, fecReorder after one of the next group arrived, or after
// fecHoldMax (fecDecoder.expire).
const (
	fecHeader     = 11
	fecShardHead  = 2                       // the data shard's length
	fecInnerHead  = trunkDatagramHeader - 4 // seq, media, frag, frags
	fecDataHead   = fecHeader + fecShardHead + fecInnerHead
	maxFECShard   = 2048 // longer shards are refused (QUIC datagrams are at most ~1.4 kB)
	fecWindow     = 8    // groups held at once per camera
	fecHoldMax    = 100 * time.Millisecond
	fecReorder    = 20 * time.Millisecond
	maxFECHeldLen = 512 << 10 // bytes held per camera
)

// fecParity is the repair datagrams of a group of n data datagrams under
// f (n ≤ f.Data): the group's share of f.Parity, rounded up, at least 1.
func fecParity(f TrunkFEC, n int) int {
	return max(1, (n*f.Parity+f.Data-1)/f.Data)
}

// fecCodecs caches the Reed-Solomon codecs by (data, parity): both are
// bounded (maxFECData, maxFECParity), so the cache is too. A codec's own
// cache of inverted matrices is off: it keeps one for every set of lost
// shards it met, forever, and the edge chooses the sets (32+16 has more
// than 10^12); inverting at most 32×32 costs about what the rebuild does.
var fecCodecs sync.Map // [2]int → reedsolomon.Encoder

func fecCodec(n, r int) (reedsolomon.Encoder, error) {
	key := [2]int{n, r}
	if c, ok := fecCodecs.Load(key); ok {
		return c.(reedsolomon.Encoder), nil
	}
	c, err := reedsolomon.New(n, r, reedsolomon.WithMaxGoroutines(1), reedsolomon.WithInversionCache(false))
	if err != nil {
		return nil, err
	}
	fecCodecs.Store(key, c)
	return c, nil
}

// appendFECHeader appends a datagram's FEC header.
func appendFECHeader(b []byte, id, group uint32, index, n, r uint8) []byte {
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, group)
	return append(b, index, n, r)
}

// fecEncoder builds a datagram camera's groups on the edge.
type fecEncoder struct {
	f      TrunkFEC
	group  uint32
	shards []byte // the batch's data shards, one after the other
	spans  [][2]int
	pad    []byte // the group's shards padded for the codec
	out    []byte // one datagram
	ptrs   [][]byte
}

// addShard appends one data shard (a fragment) to the batch.
func (e *fecEncoder) addShard(seq uint32, media, frag, frags uint8, payload []byte) {
	off := len(e.shards)
	e.shards = binary.BigEndian.AppendUint16(e.shards, uint16(fecInnerHead+len(payload)))
	e.shards = appendFragment(e.shards, seq, media, frag, frags, payload)
	e.spans = append(e.spans, [2]int{off, len(e.shards)})
}

// reset forgets the batch's shards (the group number goes on).
func (e *fecEncoder) reset() {
	e.shards, e.spans = e.shards[:0], e.spans[:0]
}

// send sends the batch's shards in groups with their repair datagrams;
// it returns the datagrams and repair datagrams sent.
func (e *fecEncoder) send(id uint32, send func([]byte) error) (datagrams, repair uint64, err error) {
	defer func() {
		if err != nil {
			e.group++ // a group cut short keeps its number: the next is new
		}
	}()
	for start := 0; start < len(e.spans); start += e.f.Data {
		g := e.spans[start:min(len(e.spans), start+e.f.Data)]
		n, r := len(g), fecParity(e.f, len(g))
		size := 0
		for i, s := range g {
			size = max(size, s[1]-s[0])
			e.out = appendFECHeader(e.out[:0], id, e.group, uint8(i), uint8(n), uint8(r))
			e.out = append(e.out, e.shards[s[0]:s[1]]...)
			if err := send(e.out); err != nil {
				return datagrams, repair, err
			}
			datagrams++
		}
		codec, err := fecCodec(n, r)
		if err != nil {
			return datagrams, repair, err
		}
		e.pad = append(e.pad[:0], make([]byte, (n+r)*size)...)
		e.ptrs = e.ptrs[:0]
		for i := range n + r {
			sh := e.pad[i*size : (i+1)*size : (i+1)*size]
			if i < n {
				copy(sh, e.shards[g[i][0]:g[i][1]])
			}
			e.ptrs = append(e.ptrs, sh)
		}
		if err := codec.Encode(e.ptrs); err != nil {
			return datagrams, repair, err
		}
		for i := n; i < n+r; i++ {
			e.out = appendFECHeader(e.out[:0], id, e.group, uint8(i), uint8(n), uint8(r))
			e.out = append(e.out, e.ptrs[i]...)
			if err := send(e.out); err != nil {
				return datagrams, repair, err
			}
			datagrams++
			repair++
		}
		e.group++
	}
	return datagrams, repair, nil
}

// fecProbe is a probe datagram of size bytes (at least fecHeader).
func fecProbe(id uint32, size int) []byte {
	b := appendFECHeader(make([]byte, 0, size), id, 0, 0, 0, 0)
	return b[:size]
}

// fecGroup is one group the core holds.
type fecGroup struct {
	num    uint32
	used   bool
	n, r   int
	shards [][]byte // n+r; nil: not here
	got    int      // shards here
	next   int      // data shards released
	size   int      // repair shard length (0: none here yet)
	widest int      // longest data shard here
	held   int      // bytes
}

// fecDecoder restores a datagram camera's fragments on the core, in
// order: it hands each data shard to emit as a fragment of id, holds a
// group with a hole until it can be rebuilt or is given up, and counts
// into st. A hostile edge is bounded: group sizes and indexes are
// checked, at most fecWindow groups and maxFECHeldLen bytes are held.
type fecDecoder struct {
	id   uint32
	st   *trunkCoreCamera
	emit func(trunkFragment)

	groups  [fecWindow]fecGroup // by num % fecWindow
	head    uint32              // the group being released
	newest  uint32
	started bool
	held    int
	// blockedAt is when the head group stopped releasing while later
	// shards waited (zero: not blocked).
	blockedAt time.Time
}

// errFEC is a datagram with an impossible FEC header or shard.
var errFEC = fmt.Errorf("%w: FEC", errTrunkDatagram)

// parseFEC checks a datagram's FEC header; the shard is not copied.
func parseFEC(b []byte) (group uint32, index, n, r int, shard []byte, err error) {
	if len(b) < fecHeader {
		return 0, 0, 0, 0, nil, fmt.Errorf("%w: %d bytes", errFEC, len(b))
	}
	group, index, n, r, shard = binary.BigEndian.Uint32(b[4:]), int(b[8]), int(b[9]), int(b[10]), b[fecHeader:]
	switch {
	case n == 0:
		return group, index, 0, r, nil, nil // a probe
	case n > maxFECData || r < 1 || r > maxFECParity || index >= n+r:
		return 0, 0, 0, 0, nil, fmt.Errorf("%w: shard %d of %d+%d", errFEC, index, n, r)
	case len(shard) == 0 || len(shard) > maxFECShard:
		return 0, 0, 0, 0, nil, fmt.Errorf("%w: shard of %d bytes", errFEC, len(shard))
	}
	return group, index, n, r, shard, nil
}

// parseDataShard decodes a data shard (its length, then a datagram
// after the id) as a fragment of id; a repair shard rebuilds it padded.
func parseDataShard(id uint32, sh []byte, exact bool) (trunkFragment, error) {
	if len(sh) < fecShardHead {
		return trunkFragment{}, fmt.Errorf("%w: data shard of %d bytes", errFEC, len(sh))
	}
	l := int(binary.BigEndian.Uint16(sh))
	if l > len(sh)-fecShardHead || (exact && l != len(sh)-fecShardHead) {
		return trunkFragment{}, fmt.Errorf("%w: data shard of %d bytes says %d", errFEC, len(sh), l)
	}
	return parseFragment(id, sh[fecShardHead:fecShardHead+l])
}

// add takes one datagram of the camera (its id already matched).
func (d *fecDecoder) add(b []byte, now time.Time) {
	st := d.st
	num, index, n, r, shard, err := parseFEC(b)
	if err != nil {
		st.malformed.Add(1)
		return
	}
	if n == 0 {
		st.fecProbes.Add(1)
		return
	}
	if index < n {
		// A data shard must decode on its own (a rebuilt one is checked
		// again): one that does not is a loss, not a stop.
		if _, err := parseDataShard(d.id, shard, true); err != nil {
			st.malformed.Add(1)
			return
		}
	}
	if !d.started {
		d.started, d.head, d.newest = true, num, num
	}
	rel := int64(int32(num - d.head))
	switch {
	case rel < 0:
		if index < n {
			st.late.Add(1) // (repair for a group already released is expected)
		}
		return
	case rel >= fecWindow:
		d.skipTo(num - fecWindow + 1)
	}
	if int32(num-d.newest) > 0 {
		d.newest = num
	}
	g := &d.groups[num%fecWindow]
	if !g.used {
		*g = fecGroup{num: num, used: true, n: n, r: r, shards: make([][]byte, n+r)}
	}
	switch {
	case g.n != n || g.r != r:
		st.malformed.Add(1) // the group's shards disagree on its size
		return
	case g.shards[index] != nil:
		st.late.Add(1) // a duplicate
		return
	case index >= n && g.size != 0 && len(shard) != g.size:
		st.malformed.Add(1) // repair shards of one group have one length
		return
	case index >= n && len(shard) < g.widest, index < n && g.size != 0 && len(shard) > g.size:
		// A repair shard is as long as the group's longest data shard:
		// refused now, or every later datagram would retry a rebuild
		// that cannot succeed (and count the same shards again).
		st.malformed.Add(1)
		return
	}
	if index >= n {
		g.size = len(shard)
	} else {
		g.widest = max(g.widest, len(shard))
	}
	g.shards[index] = shard
	g.got++
	g.held += len(shard)
	d.held += len(shard)
	d.release(now)
	for d.held > maxFECHeldLen {
		d.giveUp()
		d.release(now)
	}
}

// skipTo gives up every group before num.
func (d *fecDecoder) skipTo(num uint32) {
	for int32(num-d.head) > 0 {
		if gap := num - d.head; gap > fecWindow && !d.pending() {
			// Nothing held: the groups between were lost whole.
			d.st.fecUnrecoverable.Add(uint64(gap))
			d.head = num
			return
		}
		d.giveUp()
	}
}

// pending reports whether any group is held.
func (d *fecDecoder) pending() bool {
	for i := range d.groups {
		if d.groups[i].used {
			return true
		}
	}
	return false
}

// release hands over what the head group can give, rebuilding it when
// it can, and moves on to the next group while the head is done.
func (d *fecDecoder) release(now time.Time) {
	for {
		g := &d.groups[d.head%fecWindow]
		ahead := int32(d.newest - d.head)
		if !g.used || g.num != d.head {
			// Nothing of the head group yet: blocked when later groups
			// wait (it may have been lost whole).
			if ahead <= 0 {
				d.blockedAt = time.Time{}
			} else if d.blockedAt.IsZero() {
				d.blockedAt = now
			}
			return
		}
		for g.next < g.n && g.shards[g.next] != nil {
			d.emitShard(g.shards[g.next], true)
			g.next++
		}
		if g.next < g.n && g.got >= g.n && g.size > 0 {
			d.rebuild(g)
		}
		if g.next < g.n {
			if d.blockedAt.IsZero() && (g.got > g.next || ahead > 0) {
				d.blockedAt = now
			}
			return
		}
		d.done()
	}
}

// rebuild restores the missing data shards of g (it has at least n
// shards) and releases the rest of it.
func (d *fecDecoder) rebuild(g *fecGroup) {
	codec, err := fecCodec(g.n, g.r)
	if err != nil {
		return
	}
	shards := make([][]byte, g.n+g.r)
	missing := 0
	for i, sh := range g.shards {
		switch {
		case sh == nil:
			if i < g.n {
				missing++
			}
		case i < g.n:
			if len(sh) > g.size {
				d.st.malformed.Add(1) // longer than the group's repair: cannot be its data
				continue
			}
			p := make([]byte, g.size)
			copy(p, sh)
			shards[i] = p
		default:
			shards[i] = sh
		}
	}
	if err := codec.ReconstructData(shards); err != nil {
		return // too few after all (a malformed shard left out): given up later
	}
	d.st.fecRecovered.Add(1)
	d.st.fecRebuilt.Add(uint64(missing))
	for ; g.next < g.n; g.next++ {
		if sh := g.shards[g.next]; sh != nil {
			d.emitShard(sh, true)
		} else {
			d.emitShard(shards[g.next], false) // (padded)
		}
	}
}

// emitShard hands one data shard over as a fragment.
func (d *fecDecoder) emitShard(sh []byte, exact bool) {
	f, err := parseDataShard(d.id, sh, exact)
	if err != nil {
		d.st.malformed.Add(1)
		return
	}
	d.emit(f)
}

// done forgets the head group and moves to the next.
func (d *fecDecoder) done() {
	g := &d.groups[d.head%fecWindow]
	if g.used && g.num == d.head {
		d.held -= g.held
		*g = fecGroup{}
	}
	d.head++
	d.blockedAt = time.Time{}
}

// giveUp releases what the head group has (its holes are losses the
// camera's sink counts) and moves on.
func (d *fecDecoder) giveUp() {
	g := &d.groups[d.head%fecWindow]
	d.st.fecUnrecoverable.Add(1)
	if g.used && g.num == d.head {
		for ; g.next < g.n; g.next++ {
			if g.shards[g.next] != nil {
				d.emitShard(g.shards[g.next], true)
			}
		}
	}
	d.done()
}

// expire gives up the head group once it has waited long enough: a
// datagram of a group two ahead came, or one of the next group came
// fecReorder ago, or fecHoldMax passed. It returns when to call it again
// (zero: nothing waits).
func (d *fecDecoder) expire(now time.Time) time.Time {
	for !d.blockedAt.IsZero() {
		ahead := int32(d.newest - d.head)
		wait := fecHoldMax
		switch {
		case ahead >= 2:
			wait = 0
		case ahead == 1:
			wait = fecReorder
		}
		at := d.blockedAt.Add(wait)
		if now.Before(at) {
			return at
		}
		d.giveUp()
		d.release(now)
	}
	return time.Time{}
}

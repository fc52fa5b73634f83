package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.yaml.in/yaml/v3"
)

// clipFrames is the packet frames of the first access units of camsim's
// 640x360 H.264 clip (a keyframe then P-frames), one batch per access
// unit as trunkOutput.run writes them: NAL units cut into RTP payloads
// of at most 1,200 bytes.
func clipFrames(t testing.TB, units int) [][]byte {
	t.Helper()
	b, err := os.ReadFile("camsim/clips/h264-640x360.h264")
	if err != nil {
		t.Fatal(err)
	}
	var nals [][]byte
	for _, n := range bytes.Split(b, []byte{0, 0, 1}) {
		if n = bytes.TrimRight(n, "\x00"); len(n) > 0 {
			nals = append(nals, n)
		}
	}
	var out [][]byte
	var batch []byte
	seq := uint16(0)
	for _, n := range nals {
		typ := n[0] & 0x1f
		if typ == 9 && len(batch) > 0 { // an access unit delimiter: a new access unit
			out = append(out, batch)
			batch = nil
			if len(out) == units {
				break
			}
		}
		for off := 0; off < len(n); off += 1200 {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(len(out)) * 3000}, Payload: n[off:min(len(n), off+1200)]}
			seq++
			f, err := packetFrame(0, pkt)
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, f...)
		}
	}
	if len(out) < units {
		t.Fatalf("the clip has %d access units, want %d", len(out), units)
	}
	return out
}

// fecDatagrams is what a writer with FEC f sends for batches (a 1,200
// byte path).
func fecDatagrams(t testing.TB, f TrunkFEC, batches [][]byte) (sent [][]byte, packets [][]byte) {
	t.Helper()
	s := &recordSender{max: 1200}
	w := &trunkDatagramWriter{conn: s, id: 9, cam: &trunkEdgeCamera{}, fec: &fecEncoder{f: f}}
	for _, b := range batches {
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
		for rest := b; len(rest) > 0; {
			_, pkt, r, err := nextFrame(rest)
			if err != nil {
				t.Fatal(err)
			}
			packets, rest = append(packets, pkt), r
		}
	}
	for _, d := range s.sent {
		if _, _, n, _, _, _ := parseFEC(d); n != 0 { // (a probe)
			sent = append(sent, d)
		}
	}
	return sent, packets
}

// fecRun feeds datagrams to a decoder and reassembles the packets it
// hands over (by seq; a packet with a missing fragment is not there).
type fecRun struct {
	st   trunkCoreCamera
	d    *fecDecoder
	frag map[uint32][][]byte
}

func newFECRun() *fecRun {
	r := &fecRun{frag: map[uint32][][]byte{}}
	r.d = &fecDecoder{id: 9, st: &r.st, emit: func(f trunkFragment) {
		p := r.frag[f.seq]
		if p == nil {
			p = make([][]byte, f.frags)
			r.frag[f.seq] = p
		}
		if int(f.frag) < len(p) {
			p[f.frag] = append([]byte(nil), f.payload...)
		}
	}}
	return r
}

func (r *fecRun) feed(ds [][]byte, now time.Time) {
	for _, d := range ds {
		r.d.add(d, now)
		r.d.expire(now)
	}
}

// packets is the packets reassembled whole, by seq.
func (r *fecRun) packets() map[uint32][]byte {
	out := map[uint32][]byte{}
	for seq, p := range r.frag {
		if !slices.ContainsFunc(p, func(b []byte) bool { return b == nil }) {
			out[seq] = bytes.Join(p, nil)
		}
	}
	return out
}

// groupsOf lists the datagrams of each group, in order.
func groupsOf(t testing.TB, ds [][]byte) [][][]byte {
	var gs [][][]byte
	last := uint32(1 << 31)
	for _, d := range ds {
		g, _, _, _, _, err := parseFEC(d)
		if err != nil {
			t.Fatal(err)
		}
		if g != last {
			gs = append(gs, nil)
			last = g
		}
		gs[len(gs)-1] = append(gs[len(gs)-1], d)
	}
	return gs
}

// TestTrunkFEC: a camera's real frames through the FEC writer and the
// core's decoder under loss patterns: up to the group's repair lost
// (data or repair), the packets come out whole and in order; more is
// counted unrecoverable; reordering and duplicates change nothing.
func TestTrunkFEC(t *testing.T) {
	f := TrunkFEC{Data: 10, Parity: 2}
	batches := clipFrames(t, 12)
	sent, packets := fecDatagrams(t, f, batches)
	groups := groupsOf(t, sent)
	if len(groups) < 12 {
		t.Fatalf("%d groups for 12 access units", len(groups))
	}
	// The keyframe's group: 10 data and 2 repair.
	if _, _, n, r, _, _ := parseFEC(groups[0][0]); n != 10 || r != 2 || len(groups[0]) != 12 {
		t.Fatalf("first group: %d+%d in %d datagrams", n, r, len(groups[0]))
	}
	for _, tc := range fecLossCases() {
		t.Run(tc.name, func(t *testing.T) { checkFECLoss(t, tc, groups, packets) })
	}
}

// fecLossCase is a loss pattern of TestTrunkFEC.
type fecLossCase struct {
	name string
	// lose returns which datagrams of group g (n data first) are lost.
	lose func(g, n, total int) []int
	// reorder rearranges the datagrams sent (after the losses).
	reorder        func([][]byte) [][]byte
	recovered      bool // groups rebuilt
	unrecoverable  uint64
	missingPackets bool
}

// fecLossCases are TestTrunkFEC's loss patterns.
func fecLossCases() []fecLossCase {
	return []fecLossCase{
		{name: "no loss", lose: func(int, int, int) []int { return nil }},
		{name: "one data datagram per group", lose: func(g, n, _ int) []int { return []int{g % n} }, recovered: true},
		{name: "as many data datagrams as repair", lose: func(_, n, total int) []int {
			if total-n >= 2 && n >= 2 {
				return []int{0, n - 1}
			}
			return []int{0}
		}, recovered: true},
		{name: "every repair datagram", lose: func(_, n, total int) []int {
			var l []int
			for i := n; i < total; i++ {
				l = append(l, i)
			}
			return l
		}},
		{name: "one data and one repair", lose: func(_, n, total int) []int {
			if total-n >= 2 {
				return []int{n / 2, total - 1}
			}
			return []int{total - 1}
		}, recovered: true},
		{name: "a datagram more than the repair in group 3", lose: func(g, n, total int) []int {
			if g == 3 {
				return []int{0, 1, 2, 3, 4, 5}[:min(n, total-n+1)]
			}
			return nil
		}, unrecoverable: 1, missingPackets: true},
		{name: "a whole group", lose: func(g, _, total int) []int {
			if g == 2 {
				return []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}[:total]
			}
			return nil
		}, unrecoverable: 1, missingPackets: true},
		{name: "reordered and duplicated", lose: func(g, n, _ int) []int { return []int{g % n} }, reorder: func(ds [][]byte) [][]byte {
			out := slices.Clone(ds)
			for i := 0; i+1 < len(out); i += 3 {
				out[i], out[i+1] = out[i+1], out[i]
			}
			for i := 5; i < len(out); i += 7 {
				out = slices.Insert(out, i, out[i-2])
			}
			return out
		}, recovered: true},
	}
}

// checkFECLoss feeds the groups with tc's losses through the decoder and
// checks what comes out against packets.
func checkFECLoss(t *testing.T, tc fecLossCase, groups [][][]byte, packets [][]byte) {
	t.Helper()
	nOf := func(g [][]byte) int { _, _, n, _, _, _ := parseFEC(g[0]); return n }
	var ds [][]byte
	for gi, g := range groups {
		lost := tc.lose(gi, nOf(g), len(g))
		for i, d := range g {
			if !slices.Contains(lost, i) {
				ds = append(ds, d)
			}
		}
	}
	if tc.reorder != nil {
		ds = tc.reorder(ds)
	}
	run := newFECRun()
	now := time.Now()
	run.feed(ds, now)
	run.d.expire(now.Add(time.Second)) // the last group's wait
	got := run.packets()
	missing := 0
	for seq, want := range packets {
		if p, ok := got[uint32(seq)]; !ok {
			missing++
		} else if !bytes.Equal(p, want) {
			t.Errorf("packet %d differs", seq)
		}
	}
	st := &run.st
	if (missing > 0) != tc.missingPackets {
		t.Errorf("%d of %d packets missing", missing, len(packets))
	}
	if (st.fecRecovered.Load() > 0) != tc.recovered || st.fecUnrecoverable.Load() != tc.unrecoverable {
		t.Errorf("recovered %d groups (%d datagrams), unrecoverable %d; want recovered %v, unrecoverable %d",
			st.fecRecovered.Load(), st.fecRebuilt.Load(), st.fecUnrecoverable.Load(), tc.recovered, tc.unrecoverable)
	}
	if st.malformed.Load() != 0 || run.d.held != 0 {
		t.Errorf("malformed %d, %d bytes still held", st.malformed.Load(), run.d.held)
	}
}

// TestTrunkFECOrder: a group with a hole holds what follows it until
// its repair comes, then hands over everything in order; without the
// repair, the next group's datagrams end the wait (after fecReorder)
// or fecHoldMax does.
func TestTrunkFECOrder(t *testing.T) {
	sent, _ := fecDatagrams(t, TrunkFEC{Data: 4, Parity: 1}, clipFrames(t, 6))
	groups := groupsOf(t, sent)
	var order []uint32
	run := newFECRun()
	emit := run.d.emit
	run.d.emit = func(f trunkFragment) { order = append(order, f.seq); emit(f) }
	now := time.Now()
	g0 := groups[0]
	run.feed([][]byte{g0[0], g0[2], g0[3]}, now) // data 1 missing: 2 and 3 wait
	if len(order) != 1 || run.d.blockedAt.IsZero() {
		t.Fatalf("with a hole: released %v, blocked %v", order, run.d.blockedAt)
	}
	run.feed([][]byte{g0[4]}, now) // the repair
	if len(order) != 4 || !slices.IsSorted(order) || run.st.fecRecovered.Load() != 1 {
		t.Fatalf("after the repair: released %v, recovered %d", order, run.st.fecRecovered.Load())
	}
	// Group 1 loses two data datagrams (one repair): given up once
	// group 2 has waited fecReorder, or at once when group 3 comes.
	g1, g2, g3 := groups[1], groups[2], groups[3]
	run.feed(g1[2:], now)
	run.feed(g2[:1], now)
	if at := run.d.expire(now); at.IsZero() || at.Sub(now) != fecReorder {
		t.Fatalf("waiting for group 1: next check in %v, want %v", at.Sub(now), fecReorder)
	}
	run.d.expire(now.Add(fecReorder))
	if run.st.fecUnrecoverable.Load() != 1 || run.d.head != groups1Num(t, g2) {
		t.Fatalf("after fecReorder: unrecoverable %d, head %d", run.st.fecUnrecoverable.Load(), run.d.head)
	}
	// Group 2 with a hole, nothing after it: fecHoldMax.
	run.feed(g2[2:3], now)
	if at := run.d.expire(now); at.Sub(now) != fecHoldMax {
		t.Fatalf("alone with a hole: next check in %v, want %v", at.Sub(now), fecHoldMax)
	}
	run.feed(g3[:1], now.Add(time.Millisecond))
	run.feed(groups[4][:1], now.Add(time.Millisecond)) // two groups ahead: given up at once
	if run.st.fecUnrecoverable.Load() != 2 {
		t.Fatalf("two groups ahead: unrecoverable %d", run.st.fecUnrecoverable.Load())
	}
}

func groups1Num(t *testing.T, g [][]byte) uint32 {
	n, _, _, _, _, err := parseFEC(g[0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTrunkFECHostile: what a hostile edge can send is counted and
// bounded: impossible sizes and indexes, shards that disagree, a data
// shard whose length lies, a far jump in group numbers, and more than
// the held bytes allow.
func TestTrunkFECHostile(t *testing.T) {
	sent, _ := fecDatagrams(t, TrunkFEC{Data: 10, Parity: 2}, clipFrames(t, 3))
	good := sent[0]
	mut := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	bad := map[string][]byte{
		"short":              {0, 0, 0, 9, 1},
		"index past n+r":     mut(func(b []byte) []byte { b[8] = 12; return b }),
		"n over the maximum": mut(func(b []byte) []byte { b[9] = maxFECData + 1; return b }),
		"no repair":          mut(func(b []byte) []byte { b[10] = 0; return b }),
		"r over the maximum": mut(func(b []byte) []byte { b[10] = maxFECParity + 1; return b }),
		"empty shard":        good[:fecHeader],
		"shard too long":     append(slices.Clone(good), make([]byte, maxFECShard)...),
		"length lies":        mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[fecHeader:], 60000); return b }),
		"bad fragment":       mut(func(b []byte) []byte { b[fecHeader+fecShardHead+5] = 7; return b }),
	}
	for name, b := range bad {
		run := newFECRun()
		run.d.add(b, time.Now())
		if run.st.malformed.Load() != 1 || len(run.frag) != 0 || run.d.held != 0 {
			t.Errorf("%s: malformed %d, %d packets, %d bytes held", name, run.st.malformed.Load(), len(run.frag), run.d.held)
		}
	}
	// Shards of one group that disagree on its size.
	run := newFECRun()
	now := time.Now()
	run.d.add(sent[1], now) // group 0, index 1: a hole before it
	run.d.add(mut(func(b []byte) []byte { b[8], b[9] = 2, 9; return b }), now)
	if run.st.malformed.Load() != 1 {
		t.Errorf("disagreeing group sizes: malformed %d", run.st.malformed.Load())
	}
	// A jump of 2^31 groups: everything held is given up, in bounded work.
	far := mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 1<<31-1); return b })
	start := time.Now()
	run.d.add(far, now)
	if time.Since(start) > time.Second || run.st.fecUnrecoverable.Load() == 0 || run.d.held > len(far) {
		t.Errorf("far jump: %v, unrecoverable %d, held %d", time.Since(start), run.st.fecUnrecoverable.Load(), run.d.held)
	}
	// Holes in every group and never the repair: held bytes stay bounded.
	run = newFECRun()
	payload := make([]byte, 1400)
	for g := range uint32(2000) {
		var b []byte
		b = appendFECHeader(b, 9, g, 1, maxFECData, 1)
		b = binary.BigEndian.AppendUint16(b, uint16(fecInnerHead+len(payload)))
		b = binary.BigEndian.AppendUint32(b, g)
		b = append(b, 0, 0, 1)
		b = append(b, payload...)
		run.d.add(b, now)
		if run.d.held > maxFECHeldLen {
			t.Fatalf("group %d: %d bytes held", g, run.d.held)
		}
	}
}

// TestTrunkFECWriter: the writer's groups and repair counts, its probe
// of the path's datagram size, and the fragment size that leaves room
// for the FEC header.
func TestTrunkFECWriter(t *testing.T) {
	for _, tc := range []struct {
		f        TrunkFEC
		n, wantR int
	}{{TrunkFEC{Data: 10, Parity: 2}, 10, 2}, {TrunkFEC{Data: 10, Parity: 2}, 3, 1}, {TrunkFEC{Data: 10, Parity: 2}, 6, 2}, {TrunkFEC{Data: 20, Parity: 4}, 1, 1}, {TrunkFEC{Data: 4, Parity: 4}, 3, 3}} {
		if r := fecParity(tc.f, tc.n); r != tc.wantR {
			t.Errorf("fecParity(%v, %d) = %d, want %d", tc.f, tc.n, r, tc.wantR)
		}
	}
	s := &recordSender{max: 1300}
	w := &trunkDatagramWriter{conn: s, id: 3, cam: &trunkEdgeCamera{}, fec: &fecEncoder{f: TrunkFEC{Data: 10, Parity: 2}}}
	batch := clipFrames(t, 1)[0]
	if _, err := w.Write(batch); err != nil {
		t.Fatal(err)
	}
	if w.frag != 1300-fecDataHead {
		t.Errorf("fragment %d after a probe refused at 1300, want %d", w.frag, 1300-fecDataHead)
	}
	for i, d := range s.sent {
		if len(d) > 1300 {
			t.Errorf("datagram %d of %d bytes", i, len(d))
		}
	}
	if w.cam.fecRepair.Load() == 0 || w.cam.datagrams.Load() != uint64(len(s.sent)) || w.cam.sent.Load() == 0 {
		t.Errorf("repair %d, datagrams %d of %d, packets %d", w.cam.fecRepair.Load(), w.cam.datagrams.Load(), len(s.sent), w.cam.sent.Load())
	}
}

// FuzzTrunkFEC: whatever an edge sends as FEC datagrams (each input is
// datagrams, each behind a uint16 length), the decoder stays bounded and
// hands over only well-formed fragments. Seeded with a real keyframe
// and P-frames with some datagrams lost.
func FuzzTrunkFEC(f *testing.F) {
	sent, _ := fecDatagrams(f, TrunkFEC{Data: 10, Parity: 2}, clipFrames(f, 3))
	join := func(ds [][]byte) []byte {
		var b []byte
		for _, d := range ds {
			b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
			b = append(b, d...)
		}
		return b
	}
	f.Add(join(sent[:8]))
	f.Add(join(append(slices.Clone(sent[:3]), sent[5:14]...)))
	f.Add(join([][]byte{sent[20], sent[0], sent[0]}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ds [][]byte
		for len(b) >= 2 {
			n := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			n = min(n, len(b))
			ds = append(ds, b[:n])
			b = b[n:]
		}
		var st trunkCoreCamera
		d := &fecDecoder{id: 9, st: &st, emit: func(fr trunkFragment) {
			if fr.frags == 0 || fr.frags > maxTrunkFrags || fr.frag >= fr.frags || len(fr.payload) > maxFECShard {
				t.Fatalf("inconsistent fragment %+v", fr)
			}
		}}
		now := time.Now()
		for _, dg := range ds {
			d.add(dg, now)
			d.expire(now)
			if d.held > maxFECHeldLen {
				t.Fatalf("%d bytes held", d.held)
			}
		}
		d.expire(now.Add(time.Second))
	})
}

// TestTrunkFECLossyLink: two datagram cameras through the lossy relay
// (20 ms and 2 % loss each way), the same link and run, one with the
// default FEC and one with fec: off. The FEC camera's lost datagrams
// are rebuilt at the core (counted in /v1/trunks and the metrics at both
// ends) and its reader gets more of the camera than the other's, whose
// every loss costs the rest of the GOP.
func TestTrunkFECLossyLink(t *testing.T) {
	names, _, ecfg := multiCameraEdge(t, 2)
	edge, edgeK, coreK := startListeningEdge(t, ecfg)
	nat := startLossyNAT(t, edge.TrunkAddr().String(), 20*time.Millisecond, 0.02)
	clog, _ := newLog(t)
	ccfg := coreConfig(nat.front.LocalAddr().String(), coreK, edgeK.fp, names...)
	ccfg.Trunks[0].Transport = TrunkDatagram
	ccfg.Trunks[0].Overrides = map[string]TrunkCamera{"cam2": {FEC: TrunkFEC{Off: true}}}
	core := startProxy(t, ccfg, clog)
	var rs []*rtspReader
	for _, n := range names {
		rs = append(rs, waitReader(t, "a core reader of "+n, 15*time.Second, readerURL(core, "site-a/"+n)))
	}
	waitFor(t, "packets of cam1", 10*time.Second, func() bool { return rs[0].packets.Load() > 10 })
	before := []int64{rs[0].packets.Load(), rs[1].packets.Load()}
	time.Sleep(6 * time.Second)
	got := []int64{rs[0].packets.Load() - before[0], rs[1].packets.Load() - before[1]}
	st := map[string]TrunkCameraStatus{}
	for _, cs := range core.TrunksStatus().Trunks[0].CameraStats {
		st[cs.Name] = cs
	}
	fec, off := st["cam1"], st["cam2"]
	t.Logf("6 s across 40 ms RTT and 2 %% loss each way: fec %s: %d packets at the reader; %+v", fec.FEC, got[0], fec)
	t.Logf("fec off: %d packets at the reader; %+v", got[1], off)
	if nat.dropped.Load() == 0 {
		t.Fatal("the relay dropped nothing: the test did not test loss")
	}
	if fec.FEC != DefaultTrunkFEC.String() || off.FEC != "off" {
		t.Errorf("fec in /v1/trunks: %q and %q", fec.FEC, off.FEC)
	}
	if fec.FECRecovered == 0 || fec.FECRebuilt < fec.FECRecovered || fec.Malformed != 0 {
		t.Errorf("the FEC camera rebuilt nothing: %+v", fec)
	}
	if off.FECRecovered != 0 || off.Lost == 0 || off.KeyWaits == 0 {
		t.Errorf("the camera without FEC: %+v", off)
	}
	// Without FEC every loss drops the rest of the GOP; with it only the
	// groups that lost more than their repair (a few).
	if fec.KeyWaits >= off.KeyWaits || float64(got[0]) < 1.2*float64(got[1]) {
		t.Errorf("FEC did not pay: %d packets and %d keyframe waits with it, %d and %d without", got[0], fec.KeyWaits, got[1], off.KeyWaits)
	}
	var ec TrunkCameraStatus
	for _, c := range edge.TrunksStatus().Edge.Cores[0].CameraStats {
		if c.Name == "cam1" {
			ec = c
		}
	}
	if ec.FEC != DefaultTrunkFEC.String() || ec.FECRepair == 0 {
		t.Errorf("edge camera status: %+v", ec)
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", core.AdminAddr()))
	for _, want := range []string{`cordon_trunk_fec_groups_recovered_total{camera="cam1",trunk="site-a"}`, `cordon_trunk_fec_groups_unrecoverable_total{camera="cam1",trunk="site-a"}`, `cordon_trunk_fec_datagrams_rebuilt_total{camera="cam1",trunk="site-a"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("core metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, `cordon_trunk_fec_groups_recovered_total{camera="cam2"`) {
		t.Error("core metrics have FEC series for a camera without FEC")
	}
	if em := httpGet(t, fmt.Sprintf("http://%s/metrics", edge.AdminAddr())); !strings.Contains(em, `cordon_trunk_edge_fec_repair_datagrams_total{camera="cam1"`) {
		t.Error("edge metrics lack cordon_trunk_edge_fec_repair_datagrams_total")
	}
}

// TestTrunkFECNegotiation: the core takes the edge's answer: no fec from
// an edge older than FEC (plain datagrams, logged once), the fec it
// asked, and refuses an fec it did not ask or out of bounds; the edge
// sends no repair for an out-of-bounds request. The setting's YAML
// reads back as written.
func TestTrunkFECNegotiation(t *testing.T) {
	log, buf := newLog(t)
	c := &camera{log: log}
	s := &trunkSession{c: c, fec: DefaultTrunkFEC}
	ask := trunkRequest{FEC: &trunkFECWire{Data: 20, Parity: 4}}
	for range 2 {
		if f, err := s.answeredFEC(ask, trunkAnswer{Datagram: 1}); err != nil || f.on() {
			t.Errorf("an older edge's answer: %v, %v", f, err)
		}
	}
	if n := strings.Count(buf.String(), "without FEC"); n != 1 {
		t.Errorf("an older edge logged %d times, want once:\n%s", n, buf)
	}
	if f, err := s.answeredFEC(ask, trunkAnswer{Datagram: 1, FEC: &trunkFECWire{Data: 20, Parity: 4}}); err != nil || f != DefaultTrunkFEC {
		t.Errorf("the edge's fec: %v, %v", f, err)
	}
	if _, err := s.answeredFEC(trunkRequest{}, trunkAnswer{Datagram: 1, FEC: &trunkFECWire{Data: 20, Parity: 4}}); !errors.Is(err, errTrunkFrame) {
		t.Errorf("fec not asked: %v", err)
	}
	if _, err := s.answeredFEC(ask, trunkAnswer{Datagram: 1, FEC: &trunkFECWire{Data: 200, Parity: 4}}); !errors.Is(err, errTrunkFrame) {
		t.Errorf("fec out of bounds: %v", err)
	}
	for _, f := range []TrunkFEC{{Off: true}, {Data: 10, Parity: 2}, {}} {
		b, err := yaml.Marshal(struct {
			F TrunkFEC `yaml:"fec"`
		}{f})
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			F TrunkFEC `yaml:"fec"`
		}
		if err := yaml.Unmarshal(b, &back); err != nil || back.F != f {
			t.Errorf("%v: %q read back as %v, %v", f, b, back.F, err)
		}
	}
}

// TestTrunkFECShardLengths: repair shards shorter than a data shard of
// their group (the edge makes them as long as the longest) are refused
// on arrival, each counted malformed once, and the group is not rebuilt
// again and again from shards that cannot make it.
func TestTrunkFECShardLengths(t *testing.T) {
	shard := func(g uint32, index uint8, body []byte) []byte {
		return append(appendFECHeader(nil, 9, g, index, 4, 2), body...)
	}
	data := func(g uint32, index uint8) []byte {
		payload := make([]byte, 100)
		b := binary.BigEndian.AppendUint16(nil, uint16(fecInnerHead+len(payload)))
		b = binary.BigEndian.AppendUint32(b, g*4+uint32(index))
		b = append(b, 0, 0, 1)
		return shard(g, index, append(b, payload...))
	}
	run := newFECRun()
	now := time.Now()
	// Group 0: data 1..3 (0 lost), then two repair shards of 10 bytes.
	run.feed([][]byte{data(0, 1), data(0, 2), data(0, 3), shard(0, 4, make([]byte, 10)), shard(0, 5, make([]byte, 10))}, now)
	// The next group's datagrams come within fecReorder.
	run.feed([][]byte{data(1, 0), data(1, 1), data(1, 2)}, now)
	if m := run.st.malformed.Load(); m != 2 {
		t.Errorf("malformed %d, want 2 (the two short repair shards, once each)", m)
	}
	// A data shard longer than its group's repair shards is refused too.
	run = newFECRun()
	run.feed([][]byte{shard(0, 4, make([]byte, 10)), data(0, 1), data(0, 2)}, now)
	if m := run.st.malformed.Load(); m != 2 || run.d.held != 10 {
		t.Errorf("malformed %d, held %d, want 2 and 10 (data shards longer than the repair)", m, run.d.held)
	}
}

// TestTrunkFECLossPatterns: the codecs are shared by every camera and
// live as long as the process, so what they keep must not grow with
// what an edge sends. Groups of 32+16 each losing a different set of
// three data datagrams (4,960 sets; a hostile edge chooses them) leave
// the heap about as it was: no inverted matrix kept per set.
func TestTrunkFECLossPatterns(t *testing.T) {
	const n, r = maxFECData, maxFECParity
	shard := func(g uint32, index int) []byte {
		b := appendFECHeader(nil, 9, g, uint8(index), n, r)
		if index >= n {
			return append(b, make([]byte, fecShardHead+fecInnerHead+4)...)
		}
		b = binary.BigEndian.AppendUint16(b, fecInnerHead+4)
		b = binary.BigEndian.AppendUint32(b, g*n+uint32(index))
		return append(b, 0, 0, 1, 1, 2, 3, 4)
	}
	run := newFECRun()
	run.d.emit = func(trunkFragment) {}
	now := time.Now()
	feed := func(g uint32, lost [3]int) {
		for i := range n {
			if i != lost[0] && i != lost[1] && i != lost[2] {
				run.d.add(shard(g, i), now)
			}
		}
		for i := n; i < n+3; i++ {
			run.d.add(shard(g, i), now)
		}
	}
	var sets [][3]int
	for a := range n {
		for b := a + 1; b < n; b++ {
			for c := b + 1; c < n; c++ {
				sets = append(sets, [3]int{a, b, c})
			}
		}
	}
	feed(0, sets[0]) // (the codec made before measuring)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, s := range sets {
		feed(uint32(i+1), s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := run.st.fecRecovered.Load(); got != uint64(len(sets)+1) {
		t.Fatalf("%d groups recovered, want %d", got, len(sets)+1)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 3<<20 { // (kept: about 2 kB a set, 10 MB)
		t.Errorf("the heap grew by %d bytes over %d loss patterns", grew, len(sets))
	}
}

// TestTrunkFECReceiveTimer: the receiver's timer follows the decoder's
// earliest deadline. A group with a hole waits fecHoldMax while nothing
// comes after it; once a datagram of the next group comes, it waits
// fecReorder only, even though the timer was set for fecHoldMax.
func TestTrunkFECReceiveTimer(t *testing.T) {
	data := func(g uint32, index uint8) []byte {
		b := appendFECHeader(nil, 9, g, index, 4, 2)
		b = binary.BigEndian.AppendUint16(b, fecInnerHead+4)
		b = binary.BigEndian.AppendUint32(b, g*4+uint32(index))
		return append(b, 0, 0, 1, 1, 2, 3, 4)
	}
	stats := &trunkCoreCamera{}
	s := &datagramSink{in: make(chan trunkArrival, 8), stats: stats, fail: func(err error) { t.Errorf("fail: %v", err) }}
	s.fec = &fecDecoder{id: 9, st: stats, emit: func(trunkFragment) {}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.receive(ctx) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	s.in <- trunkArrival{data(0, 0), start}
	s.in <- trunkArrival{data(0, 2), start} // a hole at 1: the timer is set for fecHoldMax
	time.Sleep(fecReorder / 4)
	s.in <- trunkArrival{data(1, 0), time.Now()} // the next group: fecReorder now
	for stats.fecUnrecoverable.Load() == 0 && time.Since(start) < 2*fecHoldMax {
		time.Sleep(time.Millisecond)
	}
	if took := time.Since(start); stats.fecUnrecoverable.Load() == 0 || took >= fecHoldMax*9/10 { // (with the timer left at fecHoldMax: never before it)
		t.Errorf("group 0 given up after %v (unrecoverable %d), want about %v", took, stats.fecUnrecoverable.Load(), fecReorder)
	}
}

package rebuild

import (
	"bytes"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"
)

// videoRebuilder is the rebuild-mode state of an H.264/H.265 track.
type videoRebuilder struct {
	asm      assembler
	started  bool // a random-access unit with parameter sets went out
	aus      []accessUnit
	full     []nalUnit
	payloads [][]byte

	// Output memory is carved from chunks shared by consecutive access
	// units (one allocation per chunk, not per packet or access unit). A
	// carved part is never written again, so the packets handed out stay
	// valid for as long as the caller keeps them.
	pktChunk []rtp.Packet
	ptrChunk []*rtp.Packet
	payChunk []byte
}

// Output chunk sizes: 8 packets (about 1 KiB), 16 packet pointers, 2 KiB
// of payload bytes (most payload bytes leave in the camera's own
// payloads). A chunk is kept alive by any packet carved from it, in a
// reader's write queue for example, and the current chunks by the
// rebuilder: through their packets' payloads, the camera's packets too
// (128 pointers kept about 150 KiB of them alive per camera). Small chunks
// keep that overhead small, large ones save allocations.
const (
	packetChunk  = 8
	pointerChunk = 16
	payloadChunk = 2 << 10
)

// packets returns n zero packets carved from the packet chunks.
func (v *videoRebuilder) packets(n int) []*rtp.Packet {
	if cap(v.pktChunk)-len(v.pktChunk) < n {
		v.pktChunk = make([]rtp.Packet, 0, max(n, packetChunk))
	}
	if cap(v.ptrChunk)-len(v.ptrChunk) < n {
		v.ptrChunk = make([]*rtp.Packet, 0, max(n, pointerChunk))
	}
	base, pbase := len(v.pktChunk), len(v.ptrChunk)
	v.pktChunk = v.pktChunk[:base+n]
	for i := range n {
		v.ptrChunk = append(v.ptrChunk, &v.pktChunk[base+i])
	}
	return v.ptrChunk[pbase:len(v.ptrChunk):len(v.ptrChunk)]
}

// payloadSpace returns the payload chunk with room for n more bytes.
func (v *videoRebuilder) payloadSpace(n int) []byte {
	if cap(v.payChunk)-len(v.payChunk) < n {
		v.payChunk = make([]byte, 0, max(n, payloadChunk))
	}
	return v.payChunk
}

// initRebuilder sets up the depacketizer and packetizer. Packetizing is our
// own (packetizeAU) rather than gortsplib's rtph264/rtph265 encoders: it
// forwards camera fragments that are already right, carves packets and
// payloads from shared chunks and allocates nothing per packet. The tests
// and fuzz targets check every output with gortsplib's decoders.
func (t *Track) initRebuilder() error {
	t.video = &videoRebuilder{asm: assembler{codec: t.codec}}
	return nil
}

// maxOutputNALUs is what readers' depacketizers accept per access unit
// (mediacommon's MaxNALUsPerAccessUnit).
func (c videoCodec) maxOutputNALUs() int {
	if c == codecH265 {
		return h265.MaxNALUsPerAccessUnit
	}
	return h264.MaxNALUsPerAccessUnit
}

func (t *Track) processRebuild(pkt *rtp.Packet) ([]*rtp.Packet, int, error) {
	v := t.video
	if len(pkt.Payload) > maxPayload {
		t.counters.Drop("oversized", len(pkt.Payload)) // re-packetized, not lost
	}
	v.aus = v.asm.push(pkt, t.counters, v.aus[:0])
	switch len(v.aus) {
	case 0:
		return nil, NoKey, nil
	case 1: // the usual case: no second slice to build
		pkts, random, err := t.rebuildAU(v.aus[0])
		clear(v.aus)
		if random && len(pkts) > 0 {
			return pkts, 0, err
		}
		return pkts, NoKey, err
	}
	var out []*rtp.Packet
	key := NoKey
	var firstErr error
	for _, au := range v.aus {
		pkts, random, err := t.rebuildAU(au)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if random && len(pkts) > 0 {
			key = len(out) // the last random-access unit: where a new reader starts
		}
		out = append(out, pkts...)
	}
	clear(v.aus)
	return out, key, firstErr
}

// prefixSlots is room for what rebuildAU puts before an access unit's
// NAL units: an AUD, and VPS, SPS and PPS.
const prefixSlots = 4

// rebuildAU filters, validates and re-packetizes one access unit.
func (t *Track) rebuildAU(au accessUnit) ([]*rtp.Packet, bool, error) {
	v := t.video
	c := t.codec
	// Kept NAL units go to full after prefixSlots free slots, where the AUD
	// and parameter sets are put once the access unit is known to need
	// them: each NAL unit is copied once. The scratch lists (full,
	// payloads) are reused, and cleared after each access unit.
	if cap(v.full) < prefixSlots {
		v.full = make([]nalUnit, 0, 16)
	}
	nalus := v.full[:prefixSlots] // the slots' old contents are overwritten before use
	nalus, ps, random := t.sortNALUs(au, nalus)
	// Whatever the outcome, the list lets go of the camera's payloads: a
	// keyframe's entries beyond the next, shorter, access units would keep
	// its packets alive until the next keyframe.
	defer clear(nalus)
	if err := t.updateParams(ps.vps, ps.sps, ps.pps); err != nil {
		t.counters.Drop("invalid_sps", auBytes(au.nalus))
		v.full = nalus[:0]
		return nil, false, err
	}
	if len(nalus) == prefixSlots {
		v.full = nalus[:0]
		return nil, false, nil // only parameter sets / dropped units
	}
	haveParams := t.params.sps != nil && t.params.pps != nil && (c == codecH264 || t.params.vps != nil)
	if !v.started {
		if !random || !haveParams {
			t.counters.Drop("before_keyframe", auBytes(au.nalus))
			v.full = nalus[:0]
			return nil, false, nil
		}
		v.started = true
	}
	// Every random-access unit carries the parameter sets in force, so a
	// reader starting there can decode; then the slices and kept SEI.
	v.full = nalus[:0]
	prefix, np := t.prefix(random)
	full := nalus[prefixSlots-np:]
	for i, b := range prefix[:np] {
		full[i] = contiguous(b)
	}
	if len(full) > c.maxOutputNALUs() {
		t.counters.Drop("nal_count", auBytes(full))
		return nil, false, nil
	}
	payloads, slab := packetizeAU(c, full, au.frags, encoderPayload, v.payloads[:0], v.payloadSpace)
	if slab != nil {
		v.payChunk = slab
	}
	ts := t.ts.mapTS(au.ts, t.clock)
	pkts := v.packets(len(payloads))
	for i, p := range payloads {
		pk := pkts[i]
		pk.Version, pk.PayloadType, pk.SequenceNumber = 2, t.outPT, t.seq
		pk.Timestamp, pk.Marker, pk.Payload = ts, i == len(payloads)-1, p
		t.seq++
	}
	clear(payloads) // (likewise)
	v.payloads = payloads[:0]
	return pkts, random, nil
}

// auParams are the parameter sets an access unit carried (nil: none).
type auParams struct{ vps, sps, pps []byte }

// sortNALUs appends the access unit's kept NAL units (slices, kept SEI) to
// nalus and returns the parameter sets it carried and whether it is a
// random-access unit; what it drops is counted.
func (t *Track) sortNALUs(au accessUnit, nalus []nalUnit) ([]nalUnit, auParams, bool) {
	c := t.codec
	var ps auParams
	random := false
	for _, n := range au.nalus {
		typ := c.nalType(n.b)
		if c == codecH265 {
			layer := (n.b[0]&1)<<5 | n.b[1]>>3
			if n.b[1]&7 == 0 {
				t.counters.Drop("malformed", n.size) // nuh_temporal_id_plus1 = 0
				continue
			}
			if layer != 0 {
				t.counters.Drop("nal_type", n.size)
				continue
			}
		}
		switch kind := classify(c, typ); kind {
		case nalSlice:
			nalus = append(nalus, n)
		case nalIRAP:
			random = true
			nalus = append(nalus, n)
		// Parameter sets and SEI are contiguous (the assembler reassembles
		// them); slices and dropped types may still be in FU payloads.
		case nalVPS:
			ps.vps = n.b
		case nalSPS:
			ps.sps = n.b
		case nalPPS:
			ps.pps = n.b
		case nalSEI:
			if len(t.sei) == 0 {
				t.counters.Drop("sei", n.size)
				continue
			}
			kept, dropped, err := filterSEI(n.b, c.hdrLen(), t.sei)
			if err != nil {
				t.counters.Drop("sei", n.size)
				continue
			}
			for range dropped {
				t.counters.Drop("sei", 0)
			}
			if kept != nil {
				nalus = append(nalus, contiguous(kept))
			}
		default:
			t.counters.Drop("nal_type", n.size)
		}
	}
	return nalus, ps, random
}

// prefix returns what goes before the access unit's NAL units: the AUD
// when configured and, on a random-access unit, the parameter sets in force.
func (t *Track) prefix(random bool) ([prefixSlots][]byte, int) {
	c := t.codec
	var prefix [prefixSlots][]byte
	np := 0
	if t.cfg.AUD {
		if c == codecH264 {
			prefix[np] = []byte{0x09, 0xf0}
		} else {
			prefix[np] = []byte{35 << 1, 1, 0x50}
		}
		np++
	}
	if random {
		if c == codecH265 {
			prefix[np] = t.params.vps
			np++
		}
		prefix[np], prefix[np+1] = t.params.sps, t.params.pps
		np += 2
	}
	return prefix, np
}

// updateParams validates parameter sets that differ from those in force
// and makes them current. The reader-facing SDP keeps the parameters known
// at NewPlan (gortsplib reads formats concurrently); readers get the
// current ones in-band with every random-access unit.
func (t *Track) updateParams(vps, sps, pps []byte) error {
	if vps != nil && !bytes.Equal(vps, t.params.vps) {
		if err := validateH265VPS(vps); err != nil {
			return err
		}
		t.params.vps = bytes.Clone(vps)
	}
	if sps != nil && !bytes.Equal(sps, t.params.sps) {
		var info videoInfo
		var err error
		if t.codec == codecH265 {
			info, err = validateH265SPS(sps)
		} else {
			info, err = validateH264SPS(sps)
		}
		if err != nil {
			return err
		}
		t.params.sps, t.info = bytes.Clone(sps), info
	}
	if pps != nil && !bytes.Equal(pps, t.params.pps) {
		var err error
		if t.codec == codecH265 {
			err = validateH265PPS(pps)
		} else {
			err = validateH264PPS(pps)
		}
		if err != nil {
			return err
		}
		t.params.pps = bytes.Clone(pps)
	}
	return nil
}

type nalKind uint8

const (
	nalDrop nalKind = iota
	nalSlice
	nalIRAP
	nalVPS
	nalSPS
	nalPPS
	nalSEI
)

// classify is the allow-list: what each NAL unit type is, nalDrop for
// everything a decoder does not need (AUD, filler, end of sequence/stream,
// SPS extension, prefix/subset SPS and SVC/MVC slices, data partitions,
// reserved and unspecified types).
func classify(c videoCodec, typ uint8) nalKind {
	if c == codecH264 {
		switch typ {
		case 1:
			return nalSlice
		case 5:
			return nalIRAP
		case 6:
			return nalSEI
		case 7:
			return nalSPS
		case 8:
			return nalPPS
		}
		return nalDrop
	}
	switch {
	case typ <= 9:
		return nalSlice // TRAIL, TSA, STSA, RADL, RASL
	case typ >= 16 && typ <= 21:
		return nalIRAP // BLA, IDR, CRA
	case typ == 32:
		return nalVPS
	case typ == 33:
		return nalSPS
	case typ == 34:
		return nalPPS
	case typ == 39 || typ == 40:
		return nalSEI
	}
	return nalDrop
}

func auBytes(nalus []nalUnit) int {
	n := 0
	for _, u := range nalus {
		n += u.size
	}
	return n
}

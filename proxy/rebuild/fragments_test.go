package rebuild

import (
	"math/rand/v2"
	"os"
	"reflect"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/cordon-vms/cordon/proxy/internal/annexb"
	"github.com/pion/rtp"
)

// clipParams returns the parameter sets (VPS,) SPS, PPS of camsim's 720p
// clip of codec.
func clipParams(t testing.TB, codec videoCodec) [][]byte {
	t.Helper()
	clip := "../camsim/clips/h264-1280x720.h264"
	if codec == codecH265 {
		clip = "../camsim/clips/h265-1280x720.h265"
	}
	raw, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	var params [][]byte
	seen := map[uint8]bool{}
	for _, n := range annexb.Split(raw) {
		typ := codec.nalType(n)
		if k := classify(codec, typ); (k == nalVPS || k == nalSPS || k == nalPPS) && !seen[typ] {
			seen[typ] = true
			params = append(params, n)
		}
	}
	return params
}

// randomNAL is a NAL unit with header hdr and size random body bytes with
// emulation prevention (entropy-coded data looks random).
func randomNAL(rng *rand.Rand, hdr []byte, size int) []byte {
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	body[0] |= 0x80 // first_mb_in_slice 0 / first_slice_segment_in_pic_flag
	body[len(body)-1] |= 1
	return annexb.AppendEmulationPrevention(append([]byte(nil), hdr...), body)
}

// fuPayloads fragments NAL unit n into FU-A / FU payloads whose bodies are
// cut at the sizes sizes() returns.
func fuPayloads(codec videoCodec, n []byte, sizes func() int) [][]byte {
	hl := codec.hdrLen()
	var ind []byte
	if codec == codecH265 {
		ind = []byte{n[0]&0x81 | 49<<1, n[1], (n[0] >> 1) & 0x3f}
	} else {
		ind = []byte{n[0]&0xe0 | 28, n[0] & 0x1f}
	}
	var out [][]byte
	body := n[hl:]
	for i := 0; i < len(body); {
		j := min(i+max(sizes(), 1), len(body))
		p := append(append([]byte(nil), ind...), body[i:j]...)
		if i == 0 {
			p[len(ind)-1] |= 0x80
		}
		if j == len(body) {
			p[len(ind)-1] |= 0x40
		}
		out = append(out, p)
		i = j
	}
	return out
}

// TestFragmentsMatchWhole checks that NAL units the camera fragments
// (which the assembler keeps as references to the camera's FU payloads,
// and may forward unchanged) come out as the same NAL units, with the same
// drop counts, as when the camera sends each NAL unit whole: with random
// fragment sizes, start-code emulation near fragment boundaries, trailing
// zero bytes (even whole fragments of them), reserved bits and changing
// NRI bits.
func TestFragmentsMatchWhole(t *testing.T) {
	for _, codec := range []videoCodec{codecH264, codecH265} {
		params := clipParams(t, codec)
		idr, slice, filler := []byte{0x65}, []byte{0x41}, []byte{12}
		if codec == codecH265 {
			idr, slice, filler = []byte{19 << 1, 1}, []byte{1 << 1, 1}, []byte{38 << 1, 1}
		}
		forwarded := 0
		for trial := range 60 {
			rng := rand.New(rand.NewPCG(uint64(trial), uint64(codec)))
			var whole, frag []*rtp.Packet
			seq := uint16(0)
			for au := range 6 {
				nalus := [][]byte{}
				if au == 0 {
					nalus = append(nalus, params...)
				}
				hdr := slice
				if au == 0 {
					hdr = idr
				}
				for k := range 1 + rng.IntN(3) {
					h := hdr
					if k == 2 {
						h = filler
					}
					sizes := []int{200, 1000, 1440, 1449, 1460, 3000, 9000, 40000}
					n := randomNAL(rng, h, sizes[rng.IntN(len(sizes))])
					mutation := rng.IntN(8)
					if au == 0 && k == 0 {
						mutation = -1 // a clean keyframe, so something comes out
					}
					nalus = append(nalus, mutateNAL(rng, n, mutation))
				}
				ts := uint32(au * 3600)
				for i, n := range nalus {
					last := i == len(nalus)-1
					whole = append(whole, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96,
						SequenceNumber: uint16(len(whole)), Timestamp: ts, Marker: last}, Payload: n})
					ps := fuPayloads(codec, n, fragmentCut(rng, codec.fuHdrLen()))
					mutate := rng.IntN(6)
					for j, p := range ps {
						mutateFU(codec, p, j, mutate)
						frag = append(frag, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96,
							SequenceNumber: seq, Timestamp: ts, Marker: last && j == len(ps)-1}, Payload: p})
						seq++
					}
				}
			}
			if len(whole) > 0 {
				forwarded += compareWholeFragmented(t, codec, whole, frag)
			}
		}
		if forwarded == 0 {
			t.Errorf("%v: no camera fragment was forwarded unchanged", codec)
		}
	}
}

// mutateNAL applies one of the camera faults to the NAL unit n
// (mutation 0 to 3; any other value leaves it whole).
func mutateNAL(rng *rand.Rand, n []byte, mutation int) []byte {
	switch mutation {
	case 0: // start-code emulation, often near a fragment boundary
		at := len(n) / 2
		if rng.IntN(2) == 0 {
			at = 1446 + rng.IntN(6)
		}
		if at+3 < len(n) {
			copy(n[at:], []byte{0, 0, byte(rng.IntN(3))})
		}
	case 1: // trailing zero bytes, up to more than a fragment
		n = append(n, make([]byte, 1+rng.IntN(2000))...)
	case 2: // ends in a zero run that looks like emulation
		n = append(n, 0, 0, 0)
	case 3: // forbidden bit
		n[0] |= 0x80
	}
	return n
}

// fragmentCut picks how a camera cuts its fragments.
func fragmentCut(rng *rand.Rand, fuHdr int) func() int {
	switch rng.IntN(5) {
	case 0:
		return func() int { return encoderPayload - fuHdr } // cut where we cut: forwarded
	case 1:
		return func() int { return 1460 - fuHdr } // too big to forward
	case 2:
		return func() int { return 100 + rng.IntN(1400) }
	case 3:
		return func() int { return 1447 - fuHdr } // other cuts: re-fragmented
	default:
		return func() int { return 300 }
	}
}

// mutateFU changes, by mutate, bits of fragment j's payload p that the
// assembler ignores (it takes the header from the start fragment) but that
// make the payloads unfit to forward unchanged.
func mutateFU(codec videoCodec, p []byte, j, mutate int) {
	switch {
	case mutate == 0 && j > 0 && codec == codecH264:
		p[0] ^= 0x20 // another NRI
	case mutate == 0 && j > 0:
		p[2] ^= 0x01 // another FU type
	case mutate == 1 && codec == codecH264:
		p[1] |= 0x20 // reserved bit
	case mutate == 1 && j > 0:
		p[1] ^= 0x01 // another temporal id
	}
}

// compareWholeFragmented rebuilds the same NAL units sent whole and sent
// fragmented, and fails unless readers get the same NAL units and the drop
// counts agree; every FU payload that comes out must agree with its start
// fragment on the FU indicator and type, without reserved bit. It returns
// how many camera payloads were forwarded unchanged.
func compareWholeFragmented(t testing.TB, codec videoCodec, whole, frag []*rtp.Packet) int {
	t.Helper()
	var f format.Format = &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	if codec == codecH265 {
		f = &format.H265{PayloadTyp: 96}
	}
	fuHdr := codec.fuHdrLen()
	inputs := map[*byte]bool{}
	for _, p := range frag {
		if len(p.Payload) > 0 {
			inputs[&p.Payload[0]] = true
		}
	}
	forwarded := 0
	run := func(pkts []*rtp.Packet) ([][][]byte, map[string][2]uint64, [][]byte) {
		var payloads [][]byte
		var fuFirst []byte
		desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{f}}}}
		cs := &Counters{}
		plan, err := NewPlan(desc, Config{}, cs)
		if err != nil {
			t.Fatal(err)
		}
		dep := newDepacketizer(t, codec)
		for _, p := range pkts {
			out, _, _ := plan.Tracks[0].Process(p)
			for _, o := range out {
				if len(o.Payload) > maxPayload {
					t.Fatalf("payload of %d bytes", len(o.Payload))
				}
				payloads = append(payloads, o.Payload)
				if err := dep.push(o); err != nil {
					t.Fatalf("output does not re-parse: %v", err)
				}
				if typ := codec.nalType(o.Payload); typ == 28 && codec == codecH264 || typ == 49 && codec == codecH265 {
					if o.Payload[fuHdr-1]&0x80 != 0 {
						fuFirst = o.Payload
					}
					if fuFirst == nil || !codec.sameFU(fuFirst, o.Payload) {
						t.Fatalf("FU payload %x after %x", o.Payload[:fuHdr], fuFirst[:min(len(fuFirst), fuHdr)])
					}
				}
				if inputs[&o.Payload[0]] {
					forwarded++
				}
			}
		}
		snap := cs.Snapshot()
		delete(snap, "oversized") // whole NAL units arrive in oversized packets
		return dep.aus, snap, payloads
	}
	wantAUs, wantDrops, wantPayloads := run(whole)
	gotAUs, gotDrops, gotPayloads := run(frag)
	// Readers' packets depend on the NAL units alone, never on how the
	// camera cut them (no covert channel in fragment sizes).
	if !reflect.DeepEqual(gotPayloads, wantPayloads) {
		t.Errorf("%v: fragmented input is packetized differently from whole input (%d payloads vs %d)", codec, len(gotPayloads), len(wantPayloads))
	}
	if !reflect.DeepEqual(gotAUs, wantAUs) {
		t.Errorf("%v: fragmented input gives %d AUs, whole %d, or other bytes", codec, len(gotAUs), len(wantAUs))
	}
	if !reflect.DeepEqual(gotDrops, wantDrops) {
		t.Errorf("%v: drops %v, want %v", codec, gotDrops, wantDrops)
	}
	return forwarded
}

// FuzzFragments: a keyframe, then a NAL unit built from the input (its
// header byte(s), then its body repeated past one packet's size), sent
// whole and cut into FU payloads at sizes taken from the input, must give
// readers the same NAL units and drop counts.
//
// Input: flags (bit 0 H.265, bit 1 mutate every non-start fragment's
// indicator, bit 2 reserved / FU type bit), body length in 16-byte units,
// cut count k, k cut sizes in 8-byte units, then the NAL unit.
func FuzzFragments(f *testing.F) {
	f.Add([]byte{0, 100, 1, 181, 0x41, 0x9a, 1, 2, 3, 0, 0, 3, 1})
	f.Add([]byte{1, 200, 2, 100, 60, 0x02, 0x01, 0xaf, 0, 0, 1, 7})
	f.Add([]byte{0, 95, 3, 181, 181, 10, 0x65, 0x88, 0x84, 0, 0, 0})
	f.Add([]byte{2, 120, 1, 181, 0x41, 0x9a, 5, 6, 7, 8})
	f.Add([]byte{5, 90, 1, 70, 0x26, 0x01, 0xaf, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 {
			return
		}
		codec := codecH264
		if data[0]&1 != 0 {
			codec = codecH265
		}
		size := 1 + 16*int(data[1]) // a body: an FU cannot carry none
		k := int(data[2]) % 8
		if len(data) < 3+k+codec.hdrLen()+1 {
			return
		}
		cuts := data[3 : 3+k]
		src := data[3+k:]
		hl := codec.hdrLen()
		n := append([]byte(nil), src[:hl]...)
		for i := 0; len(n) < hl+size; i++ {
			n = append(n, src[hl+i%(len(src)-hl)])
		}
		if codec == codecH265 && (n[0]>>1)&0x3f >= 48 || codec == codecH264 && (n[0]&0x1f == 0 || n[0]&0x1f >= 24) {
			return // not a NAL unit type a single-NAL packet can carry
		}
		params := clipParams(t, codec)
		idr := []byte{0x65, 0x88, 0x84, 0x21, 0xa0}
		if codec == codecH265 {
			idr = []byte{19 << 1, 1, 0xaf, 0x08, 0x41}
		}
		var whole, frag []*rtp.Packet
		seq := uint16(0)
		add := func(list *[]*rtp.Packet, ts uint32, marker bool, p []byte) {
			*list = append(*list, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96,
				SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: p})
			seq++
		}
		for i, p := range append(params[:len(params):len(params)], idr) {
			add(&whole, 0, i == len(params), p)
			add(&frag, 0, i == len(params), p)
		}
		add(&whole, 3600, true, n)
		ci := 0
		ps := fuPayloads(codec, n, func() int {
			if len(cuts) == 0 {
				return 1447 - codec.fuHdrLen()
			}
			c := 8 * int(cuts[ci%len(cuts)])
			ci++
			return c
		})
		fuHdr := codec.fuHdrLen()
		for j, p := range ps {
			if j > 0 && data[0]&2 != 0 {
				if codec == codecH265 {
					p[1] ^= 0x01 // another temporal id
				} else {
					p[0] ^= 0x20 // another NRI
				}
			}
			if data[0]&4 != 0 && (codec == codecH264 || j > 0) {
				p[fuHdr-1] ^= 0x20 // H.264 reserved bit; H.265 another FU type (after the start)
			}
			add(&frag, 3600, j == len(ps)-1, p)
		}
		compareWholeFragmented(t, codec, whole, frag)
	})
}

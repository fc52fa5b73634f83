package bench

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// videoCount counts, for one reader, the bytes of coded-slice NAL units
// (the video: H.264 types 1-5, H.265 types 0-31, each counted as its NAL
// unit's size, header included, start code and RTP/FU overhead not) of
// every access unit completed during the measured window, straight from the
// RTP payloads (no reassembly, no allocation per packet). Access units are
// told apart by their RTP timestamp, and placed on the camera's frame clock
// by the timestamp difference, so that a frame a proxy skipped is seen.
//
// Used from the one goroutine that delivers a reader's packets, except
// for the frames list, which the bench reads after the window.
type videoCount struct {
	h265 bool
	step uint32 // RTP ticks per frame (90000/fps)

	on      bool   // the window is open
	started bool   // an access unit that began inside the window is being counted
	ts      uint32 // its timestamp
	frame   int64  // its position on the frame clock, from the window's first
	vcl     int64  // its coded-slice bytes so far

	mu     sync.Mutex
	frames []countedFrame
}

type countedFrame struct {
	frame int64 // position on the frame clock (0: the first in the window)
	vcl   int64
}

// packet counts one RTP packet; counting says whether the window is open.
func (v *videoCount) packet(ts uint32, payload []byte, counting bool) {
	switch {
	case counting && !v.on:
		// The access unit in progress began before the window: skip it.
		v.on, v.started, v.ts = true, false, ts
		v.mu.Lock()
		v.frames = v.frames[:0]
		v.mu.Unlock()
		return
	case !counting && v.on:
		v.on, v.started = false, false // the access unit in progress is not complete
		return
	case !counting:
		return
	}
	if ts != v.ts {
		if v.started {
			v.mu.Lock()
			v.frames = append(v.frames, countedFrame{v.frame, v.vcl})
			v.mu.Unlock()
			d := int64(int32(ts - v.ts))
			v.frame += (d + int64(v.step)/2) / int64(v.step)
		}
		v.started, v.ts, v.vcl = true, ts, 0
	}
	if v.started {
		v.vcl += vclBytes(payload, v.h265)
	}
}

// vclBytes returns the coded-slice bytes an RTP payload carries (RFC 6184
// and RFC 7798 single NAL unit, aggregation and fragmentation packets).
func vclBytes(p []byte, h265 bool) int64 {
	if len(p) < 2 {
		return 0
	}
	if !h265 {
		switch t := p[0] & 0x1f; {
		case t >= 1 && t <= 5:
			return int64(len(p))
		case t == 24: // STAP-A
			return aggregated(p[1:], func(n []byte) bool { t := n[0] & 0x1f; return t >= 1 && t <= 5 })
		case t == 28: // FU-A
			if ft := p[1] & 0x1f; ft >= 1 && ft <= 5 {
				return int64(len(p)-2) + int64(p[1]>>7) // the first fragment carries the header byte
			}
		}
		return 0
	}
	if len(p) < 3 {
		return 0
	}
	switch t := (p[0] >> 1) & 0x3f; {
	case t < 32:
		return int64(len(p))
	case t == 48: // AP (no DONL: sprop-max-don-diff is 0)
		return aggregated(p[2:], func(n []byte) bool { return (n[0]>>1)&0x3f < 32 })
	case t == 49: // FU
		if p[2]&0x3f < 32 {
			return int64(len(p)-3) + 2*int64(p[2]>>7)
		}
	}
	return 0
}

// aggregated sums the sizes of the NAL units of an aggregation packet's
// body (16-bit size, NAL unit, ...) for which vcl is true.
func aggregated(b []byte, vcl func([]byte) bool) int64 {
	var n int64
	for len(b) >= 2 {
		size := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if size == 0 || size > len(b) {
			break
		}
		if vcl(b[:size]) {
			n += int64(size)
		}
		b = b[size:]
	}
	return n
}

// forwarded returns, for the frames counted in the window, the coded-slice
// bytes delivered and those the camera sent for the same frames. It uses
// the first whole loops of the camera's clip the window covers: any
// loopFrames consecutive frames of a camsim camera hold exactly loopBytes
// (so frames a proxy skipped, or cut short, are missing from delivered
// whatever their kind). An error says the window held no whole loop.
func (v *videoCount) forwarded(loopFrames int, loopBytes int64) (delivered, sent int64, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.frames) == 0 || loopFrames <= 0 {
		return 0, 0, fmt.Errorf("no frame completed in the window")
	}
	span := v.frames[len(v.frames)-1].frame + 1
	loops := span / int64(loopFrames)
	if loops == 0 {
		return 0, 0, fmt.Errorf("the window held %d frames, less than one loop of the clip (%d)", span, loopFrames)
	}
	end := loops * int64(loopFrames)
	for _, f := range v.frames {
		if f.frame >= 0 && f.frame < end {
			delivered += f.vcl
		}
	}
	return delivered, loops * loopBytes, nil
}

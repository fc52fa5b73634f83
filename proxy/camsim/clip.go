package camsim

import (
	"embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cordon-vms/cordon/proxy/internal/annexb"
)

// The clips are raw Annex-B streams made by clips/make-clips.sh: 2 s of
// testsrc2 at 25 fps, a 1 s GOP, no B-frames, one AUD per frame, no SEI.
//
//go:embed clips/*.h264 clips/*.h265
var clipFS embed.FS

// clip is one embedded clip split into access units.
type clip struct {
	name          string // file name, e.g. "h264-640x360.h264"
	codec         string // "h264" or "h265"
	width, height int
	aus           [][][]byte // access units of NAL units (no start codes, no AUDs)
	random        []bool     // random[i]: access unit i is an IDR/IRAP picture
	bytes         int        // total NAL bytes
}

var (
	clipsOnce sync.Once
	clipsAll  []*clip
	clipsErr  error
)

// clips returns the embedded clips, parsed once.
func clips() ([]*clip, error) {
	clipsOnce.Do(func() {
		ents, err := clipFS.ReadDir("clips")
		if err != nil {
			clipsErr = fmt.Errorf("camsim: reading embedded clips: %w", err)
			return
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".h264") && !strings.HasSuffix(e.Name(), ".h265") {
				continue
			}
			b, err := clipFS.ReadFile("clips/" + e.Name())
			if err != nil {
				clipsErr = fmt.Errorf("camsim: reading clip %s: %w", e.Name(), err)
				return
			}
			c, err := parseClip(e.Name(), b)
			if err != nil {
				clipsErr = err
				return
			}
			clipsAll = append(clipsAll, c)
		}
		sort.Slice(clipsAll, func(i, j int) bool { return clipsAll[i].name < clipsAll[j].name })
		if len(clipsAll) == 0 {
			clipsErr = fmt.Errorf("camsim: no embedded clips")
		}
	})
	return clipsAll, clipsErr
}

// parseClip splits an Annex-B clip named "<codec>-<W>x<H>.<ext>" into access
// units at its access unit delimiters.
func parseClip(name string, b []byte) (*clip, error) {
	base := strings.TrimSuffix(strings.TrimSuffix(name, ".h264"), ".h265")
	codec, size, ok := strings.Cut(base, "-")
	ws, hs, ok2 := strings.Cut(size, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || !ok2 || err1 != nil || err2 != nil || (codec != "h264" && codec != "h265") {
		return nil, fmt.Errorf("camsim: clip %s: name is not <codec>-<W>x<H>", name)
	}
	c := &clip{name: name, codec: codec, width: w, height: h}
	var cur [][]byte
	flush := func() {
		if len(cur) > 0 {
			c.aus = append(c.aus, cur)
			c.random = append(c.random, isRandomAccess(codec, cur))
		}
		cur = nil
	}
	for _, n := range annexb.Split(b) {
		if len(n) == 0 {
			continue
		}
		if isAUD(codec, n) {
			flush()
			continue
		}
		cur = append(cur, n)
		c.bytes += len(n)
	}
	flush()
	if len(c.aus) == 0 || !c.random[0] {
		return nil, fmt.Errorf("camsim: clip %s: does not start with a keyframe", name)
	}
	return c, nil
}

func nalType(codec string, n []byte) int {
	if codec == "h264" {
		return int(n[0] & 0x1f)
	}
	return int(n[0]>>1) & 0x3f
}

func isAUD(codec string, n []byte) bool {
	t := nalType(codec, n)
	return (codec == "h264" && t == 9) || (codec == "h265" && t == 35)
}

func isRandomAccess(codec string, au [][]byte) bool {
	for _, n := range au {
		t := nalType(codec, n)
		if (codec == "h264" && t == 5) || (codec == "h265" && t >= 16 && t <= 21) {
			return true
		}
	}
	return false
}

// pickClip returns the clip of codec whose pixel count is nearest to w×h.
func pickClip(codec string, w, h int) (*clip, error) {
	all, err := clips()
	if err != nil {
		return nil, err
	}
	var best *clip
	bestD := 0
	for _, c := range all {
		if c.codec != codec {
			continue
		}
		d := c.width*c.height - w*h
		if d < 0 {
			d = -d
		}
		if best == nil || d < bestD {
			best, bestD = c, d
		}
	}
	if best == nil {
		return nil, fmt.Errorf("camsim: no clip for codec %q", codec)
	}
	return best, nil
}

// Resolutions lists the resolutions of the embedded clips of codec, as "WxH".
func Resolutions(codec string) []string {
	all, _ := clips()
	var out []string
	for _, c := range all {
		if c.codec == codec {
			out = append(out, fmt.Sprintf("%dx%d", c.width, c.height))
		}
	}
	return out
}

// filler returns a filler-data NAL unit of exactly n bytes (n >= 3).
func filler(codec string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xff
	}
	if codec == "h264" {
		b[0] = 12 // filler data
	} else {
		b[0], b[1] = 38<<1, 1 // FD_NUT, layer 0, temporal id 0
	}
	b[n-1] = 0x80 // rbsp_trailing_bits
	return b
}

// leakUUID identifies camsim's leak SEI messages.
var leakUUID = [16]byte{'c', 'o', 'r', 'd', 'o', 'n', '-', 'c', 'a', 'm', 's', 'i', 'm', 'S', 'E', 'I'}

// leakSEI returns an SEI NAL unit (H.264 type 6, H.265 prefix SEI 39) with
// one user_data_unregistered message: leakUUID then text.
func leakSEI(codec, text string) []byte {
	var rbsp []byte
	rbsp = append(rbsp, 5) // payload type: user_data_unregistered
	size := 16 + len(text)
	for ; size >= 255; size -= 255 {
		rbsp = append(rbsp, 0xff)
	}
	rbsp = append(rbsp, byte(size))
	rbsp = append(rbsp, leakUUID[:]...)
	rbsp = append(rbsp, text...)
	rbsp = append(rbsp, 0x80) // rbsp_trailing_bits
	out := []byte{6}
	if codec == "h265" {
		out = []byte{39 << 1, 1}
	}
	return annexb.AppendEmulationPrevention(out, rbsp)
}

// insertBeforeSlices returns au with n inserted before its first slice
// (after the parameter sets), where an SEI belongs.
func insertBeforeSlices(codec string, au [][]byte, n []byte) [][]byte {
	i := 0
	for i < len(au) {
		t := nalType(codec, au[i])
		if (codec == "h264" && t >= 1 && t <= 5) || (codec == "h265" && t < 32) {
			break
		}
		i++
	}
	out := make([][]byte, 0, len(au)+1)
	out = append(out, au[:i]...)
	out = append(out, n)
	return append(out, au[i:]...)
}

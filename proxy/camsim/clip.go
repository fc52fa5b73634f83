package camsim

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cordon-vms/cordon/proxy/internal/annexb"
)

// The clips are raw Annex-B streams made by clips/make-clips.sh: 2 s of
// testsrc2 with temporal noise at 25 fps, real encoded video at the rate in
// the name, one 2 s GOP, no B-frames, one AUD per frame, no SEI, no filler.
//
//go:embed clips/*.h264 clips/*.h265
var clipFS embed.FS

// Recipe is clips/make-clips.sh, the recipe of the embedded clips. Run as
// "sh -c Recipe make-clips.sh CODEC WxH RATE OUT" it encodes one clip with
// ffmpeg (see EncodeClip).
//
//go:embed clips/make-clips.sh
var Recipe string

// clipFPS is the frame rate the clips are encoded at.
const clipFPS = 25

// clip is one clip split into access units.
type clip struct {
	name          string // file name, e.g. "h264-640x360.h264"
	codec         string // "h264" or "h265"
	width, height int
	rate          int        // the bit rate it was encoded for (from the name, else its own at 25 fps)
	aus           [][][]byte // access units of NAL units (no start codes; the AUD first)
	random        []bool     // random[i]: access unit i is an IDR/IRAP picture
	bytes         int        // total NAL bytes
}

// ownRate is the clip's real bit rate (NAL bytes) at fps.
func (c *clip) ownRate(fps int) int {
	return int(int64(c.bytes) * 8 * int64(fps) / int64(len(c.aus)))
}

var (
	clipsOnce sync.Once
	clipsAll  []*clip
	clipsErr  error
)

// clips returns the embedded clips, parsed once.
func clips() ([]*clip, error) {
	clipsOnce.Do(func() {
		clipsAll, clipsErr = readClips(clipFS, "clips")
		if clipsErr == nil && len(clipsAll) == 0 {
			clipsErr = fmt.Errorf("camsim: no embedded clips")
		}
	})
	return clipsAll, clipsErr
}

// maxClipBytes bounds one clip read from a clip directory.
const maxClipBytes = 64 << 20

// readClips parses every *.h264 and *.h265 clip of dir in fsys, sorted by name.
func readClips(fsys fs.FS, dir string) ([]*clip, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("camsim: reading clips: %w", err)
	}
	var out []*clip
	for _, e := range ents {
		if !e.Type().IsRegular() || (!strings.HasSuffix(e.Name(), ".h264") && !strings.HasSuffix(e.Name(), ".h265")) {
			continue
		}
		if info, err := e.Info(); err == nil && info.Size() > maxClipBytes {
			return nil, fmt.Errorf("camsim: clip %s: %d bytes, more than %d", e.Name(), info.Size(), maxClipBytes)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("camsim: reading clip %s: %w", e.Name(), err)
		}
		c, err := parseClip(e.Name(), b)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// ClipName is the file name of a clip of codec, size and requested bit rate
// made by EncodeClip: "h264-1280x720-8M.h264". (The embedded clips, one per
// size, are named without the rate: "h264-1280x720.h264".)
func ClipName(codec string, w, h, bitrate int) string {
	return fmt.Sprintf("%s-%dx%d-%s.%s", codec, w, h, FormatBitrate(bitrate), codec)
}

// FormatBitrate writes a bit rate the way ParseBitrate reads it: "2M",
// "500k", "1500k" or "123".
func FormatBitrate(b int) string {
	switch {
	case b >= 1e6 && b%1e6 == 0:
		return strconv.Itoa(b/1e6) + "M"
	case b >= 1e3 && b%1e3 == 0:
		return strconv.Itoa(b/1e3) + "k"
	}
	return strconv.Itoa(b)
}

// parseClip splits an Annex-B clip named "<codec>-<W>x<H>[-<rate>].<codec>"
// into access units at its access unit delimiters.
func parseClip(name string, b []byte) (*clip, error) {
	base := strings.TrimSuffix(strings.TrimSuffix(name, ".h264"), ".h265")
	f := strings.Split(base, "-")
	bad := fmt.Errorf("camsim: clip %s: name is not <codec>-<W>x<H>[-<rate>].<codec>", name)
	if len(f) < 2 || len(f) > 3 || (f[0] != "h264" && f[0] != "h265") || !strings.HasSuffix(name, "."+f[0]) {
		return nil, bad
	}
	w, h, err := ParseSize(f[1])
	if err != nil {
		return nil, bad
	}
	rate := 0
	if len(f) == 3 {
		if rate, err = ParseBitrate(f[2]); err != nil || rate == 0 {
			return nil, bad
		}
	}
	codec := f[0]
	c := &clip{name: name, codec: codec, width: w, height: h, rate: rate}
	var cur [][]byte
	flush := func() {
		if len(cur) > 1 || (len(cur) == 1 && !isAUD(codec, cur[0])) {
			c.aus = append(c.aus, cur)
			c.random = append(c.random, isRandomAccess(codec, cur))
		}
		cur = nil
	}
	for _, n := range annexb.Split(b) {
		if len(n) < 2 {
			continue
		}
		if isAUD(codec, n) {
			flush()
		}
		cur = append(cur, n)
		c.bytes += len(n)
	}
	flush()
	if len(c.aus) == 0 || !c.random[0] {
		return nil, fmt.Errorf("camsim: clip %s: does not start with a keyframe", name)
	}
	if c.rate == 0 {
		c.rate = c.ownRate(clipFPS)
	}
	return c, nil
}

func nalType(codec string, n []byte) int {
	if codec == "h264" {
		return int(n[0] & 0x1f)
	}
	return int(n[0]>>1) & 0x3f
}

// isVCL reports whether n is a coded slice (H.264 types 1-5, H.265 0-31):
// the video itself, what a proxy must forward whole.
func isVCL(codec string, n []byte) bool {
	t := nalType(codec, n)
	if codec == "h264" {
		return t >= 1 && t <= 5
	}
	return t < 32
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

// pickClip returns, among the clips of codec in all (the embedded ones when
// all is nil), one of the size whose pixel count is nearest to w×h, and of
// those the one whose encoded rate is nearest to bitrate (the first by name
// when bitrate is 0).
func pickClip(all []*clip, codec string, w, h, bitrate int) (*clip, error) {
	if all == nil {
		var err error
		if all, err = clips(); err != nil {
			return nil, err
		}
	}
	abs := func(v int) int { return max(v, -v) }
	var best *clip
	for _, c := range all {
		if c.codec != codec {
			continue
		}
		if best == nil {
			best = c
			continue
		}
		d, bd := abs(c.width*c.height-w*h), abs(best.width*best.height-w*h)
		if d < bd || (d == bd && bitrate > 0 && abs(c.rate-bitrate) < abs(best.rate-bitrate)) {
			best = c
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

package rebuild

import (
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// VideoInfo describes a plan's video track for status pages: the codec
// ("H264", "H265", "MJPEG", else the SDP encoding name), the picture size from
// the validated SPS (0 when unknown, as in passthrough mode without
// parameter sets, and for M-JPEG) and the frame rate the SPS declares in its VUI timing
// information (0 when it declares none).
type VideoInfo struct {
	Codec         string
	Width, Height int
	FPS           float64
}

// Video returns the plan's video track's description, and false when the
// plan has no video track.
func (p *Plan) Video() (VideoInfo, bool) {
	for _, t := range p.Tracks {
		if t.media.Type == description.MediaTypeVideo {
			return t.videoInfo(), true
		}
	}
	return VideoInfo{}, false
}

// codecName names a reader-facing format for status pages.
func codecName(f format.Format) string {
	switch f.(type) {
	case *format.H264:
		return "H264"
	case *format.H265:
		return "H265"
	case *format.MJPEG:
		return "MJPEG"
	}
	name, _, _ := strings.Cut(f.RTPMap(), "/")
	return strings.ToUpper(name)
}

// videoInfo reads the track's current (validated) parameters.
func (t *Track) videoInfo() VideoInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	vi := VideoInfo{Codec: codecName(t.media.Formats[0]), Width: t.info.width, Height: t.info.height}
	sps := t.params.sps
	if len(sps) == 0 {
		return vi
	}
	// The SPS passed validation when it was stored; parse it again for
	// the fields validation does not keep (this runs per status request,
	// not per packet).
	switch t.codec {
	case codecH264:
		var s h264.SPS
		if unmarshalSafe(func() error { return s.Unmarshal(sps) }) == nil {
			vi.FPS = s.FPS()
		}
	case codecH265:
		var s h265.SPS
		if unmarshalSafe(func() error { return s.Unmarshal(sps) }) == nil && s.VUI != nil && s.VUI.TimingInfo != nil && s.VUI.TimingInfo.NumUnitsInTick > 0 {
			vi.FPS = float64(s.VUI.TimingInfo.TimeScale) / float64(s.VUI.TimingInfo.NumUnitsInTick)
		}
	}
	if vi.FPS < 0 || vi.FPS > 1000 {
		vi.FPS = 0 // an absurd declaration is no information
	}
	return vi
}

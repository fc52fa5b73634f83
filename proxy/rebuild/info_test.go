package rebuild

import (
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

func TestPlanVideo(t *testing.T) {
	desc, aus := hostileCamera(t)
	var sps []byte
	for _, n := range aus[0] {
		if n[0]&0x1f == 7 {
			sps = n
		}
	}
	var s h264.SPS
	if err := s.Unmarshal(sps); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Mode{ModeRebuild, ModePassthrough} {
		plan, err := NewPlan(desc, Config{Mode: mode}, &Counters{})
		if err != nil {
			t.Fatal(err)
		}
		vi, ok := plan.Video()
		want := VideoInfo{Codec: "H264", Width: s.Width(), Height: s.Height(), FPS: s.FPS()}
		if !ok || vi != want {
			t.Errorf("%s: Video() = %+v, %v; want %+v", mode, vi, ok, want)
		}
	}
	audio := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 8, SampleRate: 8000, ChannelCount: 1}}},
	}}
	plan, err := NewPlan(audio, Config{}, &Counters{})
	if err != nil {
		t.Fatal(err)
	}
	if vi, ok := plan.Video(); ok {
		t.Errorf("audio-only plan: Video() = %+v, true", vi)
	}
	if got := codecName(&format.Generic{PayloadTyp: 96, RTPMa: "vp8/90000", ClockRat: 90000}); got != "VP8" {
		t.Errorf("codecName(vp8) = %q", got)
	}
}

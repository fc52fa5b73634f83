package proxy

import (
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
)

func TestSetupMedia(t *testing.T) {
	two := &description.Session{Medias: []*description.Media{{}, {}}}
	one := &description.Session{Medias: []*description.Media{{}}}
	for _, tc := range []struct {
		desc *description.Session
		url  string
		want int // -1: nil
	}{
		{two, "rtsp://h:8554/cam/trackID=1", 1},
		{two, "rtsp://h:8554/cam/trackID=0/", 0},
		{two, "rtsp://h:8554/cam?x=1/trackID=1", 1}, // ffmpeg puts the query first
		{two, "rtsp://h:8554/cam/trackID=2", -1},
		{two, "rtsp://h:8554/cam/trackID=-1", -1},
		{two, "rtsp://h:8554/cam/trackID=x", -1},
		{two, "rtsp://h:8554/cam", -1},
		{one, "rtsp://h:8554/cam", 0},
	} {
		got := setupMedia(tc.desc, tc.url)
		want := (*description.Media)(nil)
		if tc.want >= 0 {
			want = tc.desc.Medias[tc.want]
		}
		if got != want {
			t.Errorf("setupMedia(%s) = %p, want media %d", tc.url, got, tc.want)
		}
	}
}

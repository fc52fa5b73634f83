package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// TestMJPEGReaders: a GStreamer camera sending MJPEG (jpegenc ! rtpjpegpay)
// reaches ffprobe, ffmpeg and an in-process reader through the proxy, in
// rebuild and passthrough modes, over TCP and UDP; ffmpeg decodes every frame
// without an error, and the cleaner refuses no frame of a real camera.
func TestMJPEGReaders(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	testutil.NeedTool(t, "ffmpeg", "ffprobe")
	gst := startGstCamera(t, 0, "live", "", "", "mjpeg")
	log, _ := newLog(t)
	cfg := withUDP(t, testConfig(
		Camera{Name: "mj", URL: MustParseSecretURL(gst.url("", "", "live"))},
		Camera{Name: "mjpass", URL: MustParseSecretURL(gst.url("", "", "live")), Mode: Mode(rebuild.ModePassthrough)},
	))
	p := startProxy(t, cfg, log)
	for _, cam := range []string{"mj", "mjpass"} {
		t.Run(cam, func(t *testing.T) {
			url := readerURL(p, cam)
			r := waitReader(t, cam+" plays", 10*time.Second, url)
			waitFor(t, "MJPEG packets at an in-process reader", 5*time.Second, func() bool { return r.packets.Load() > 50 })
			if got := r.desc.Medias[0].Formats[0].RTPMap(); got != "JPEG/90000" {
				t.Errorf("reader's format %s, want JPEG/90000", got)
			}
			for _, tr := range []string{"tcp", "udp"} {
				out, err := runTool(t, 10*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", tr,
					"-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", url)
				if err != nil || strings.TrimSpace(out) != "mjpeg,320,240" {
					t.Fatalf("ffprobe over %s: %v\n%s", tr, err, out)
				}
				out, err = runTool(t, 10*time.Second, "ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", tr, "-i", url,
					"-frames:v", "25", "-f", "null", "-")
				if err != nil || strings.TrimSpace(out) != "" {
					t.Fatalf("ffmpeg decoding 25 frames over %s: %v\n%s", tr, err, out)
				}
			}
			for _, s := range p.Status() {
				if s.Name != cam {
					continue
				}
				for _, reason := range []string{"jpeg_invalid", "malformed", "au_size", "oversized", "payload_type"} {
					if d := s.Dropped[reason]; d.Units > 0 {
						t.Errorf("%s: %d frames/packets dropped as %s", cam, d.Units, reason)
					}
				}
			}
		})
	}
}

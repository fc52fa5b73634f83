package proxy

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// FuzzPreviewOffer feeds SDP offers (untrusted: any admin account's
// browser, or a forged request that got past the CSRF check) to what
// handleOffer does with them before it opens a socket: the codec check
// and pion's parse and answer. The seed corpus has a Chromium 156 offer
// (testdata/fuzz/FuzzPreviewOffer; made in the page with
// pc.addTransceiver("video", {direction: "recvonly"}) and createOffer).
func FuzzPreviewOffer(f *testing.F) {
	s, err := newPreviewServer(nil, Preview{MaxSessions: 1, IdleTimeout: 2 * time.Second},
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, offer string) {
		if len(offer) > previewMaxOffer {
			return
		}
		offers(offer, "H264")
		offers(offer, "H265")
		pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "cordon")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return
		}
		pc.CreateAnswer(nil)
	})
}

// TestOffers: the codec check reads rtpmap lines only.
func TestOffers(t *testing.T) {
	for _, tc := range []struct {
		sdp, codec string
		want       bool
	}{
		{"a=rtpmap:96 H264/90000\r\n", "H264", true},
		{"a=rtpmap:96 h265/90000\n", "H265", true},
		{"a=rtpmap:96 H264/90000\r\n", "H265", false},
		{"a=fmtp:96 H265\r\ns=H265\r\n", "H265", false},
		{"a=rtpmap:96\r\n", "H264", false},
		{"", "H264", false},
	} {
		if got := offers(tc.sdp, tc.codec); got != tc.want {
			t.Errorf("offers(%q, %s) = %v", tc.sdp, tc.codec, got)
		}
	}
}

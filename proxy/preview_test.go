package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// whepClient is a pion peer that receives a preview, as a browser would.
func whepClient(t *testing.T, codecs ...string) (*webrtc.PeerConnection, string) {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for i, c := range codecs {
		fmtp := ""
		if c == webrtc.MimeTypeH264 {
			fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
		}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c, ClockRate: 90000, SDPFmtpLine: fmtp},
			PayloadType:        webrtc.PayloadType(96 + i),
		}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	return pc, pc.LocalDescription().SDP
}

// post sends an offer as the console page does.
func (c *consoleClient) post(path, contentType, body string) (int, string, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(csrfHeader, c.token)
	req.AddCookie(&http.Cookie{Name: consoleCookie, Value: c.cookie})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header.Get("Location")
}

func webrtcReaders(p *Proxy) []ReaderEntry {
	var out []ReaderEntry
	for _, r := range p.Readers() {
		if r.Transport == "webrtc" {
			out = append(out, r)
		}
	}
	return out
}

// TestPreviewWHEP: a WebRTC peer gets a camera's H.264 (and, when it
// offers H.265, an H.265 camera's stream) starting at a keyframe; the
// preview is a "webrtc" reader while it plays and goes when the peer
// closes, when it never connects (idle timeout) or on DELETE; offers the
// proxy cannot serve get their reason.
func TestPreviewWHEP(t *testing.T) {
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door", Codec: "h264"}, {Name: "yard", Codec: "h265"}}, func(c *Config) {
		c.Preview.IdleTimeout = 2 * time.Second
	})
	waitFor(t, "cameras up", 10*time.Second, func() bool { return cameraState(p, "door") == stateUp && cameraState(p, "yard") == stateUp })
	c := &consoleClient{t: t, base: "http://" + p.AdminAddr().String()}
	c.open()

	checkWHEPPlays(t, p, c, "door", webrtc.MimeTypeH264)
	checkWHEPPlays(t, p, c, "yard", webrtc.MimeTypeH265)

	// A peer that never connects is dropped after idle_timeout.
	_, offer := whepClient(t, webrtc.MimeTypeH264)
	if code, body, _ := c.post("/v1/cameras/door/whep", "application/sdp", offer); code != 201 {
		t.Fatalf("POST whep: %d %s", code, body)
	}
	if len(webrtcReaders(p)) != 1 {
		t.Fatal("the preview is not a reader before it connects")
	}
	waitFor(t, "unconnected preview dropped", 5*time.Second, func() bool { return len(webrtcReaders(p)) == 0 })

	// DELETE ends a preview.
	_, offer = whepClient(t, webrtc.MimeTypeH264)
	_, _, loc := c.post("/v1/cameras/door/whep", "application/sdp", offer)
	if got := c.status("DELETE", loc, c.token, nil); got != 204 || len(webrtcReaders(p)) != 0 {
		t.Errorf("DELETE %s: %d, readers %d", loc, got, len(webrtcReaders(p)))
	}

	checkWHEPRefusals(t, c)
	if n := len(webrtcReaders(p)); n != 0 {
		t.Errorf("%d previews left", n)
	}
	m := httpGet(t, c.base+"/metrics")
	for _, want := range []string{"cordon_admin_previews 0", "cordon_admin_previews_started_total 4", "cordon_admin_previews_refused_total 5"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// checkWHEPPlays previews camera name with a peer offering H.264 and
// H.265: the track is mime, its first packet starts a keyframe (the GOP
// cache), the preview is one "webrtc" reader counted in the metrics while
// it plays, and it goes when the peer closes.
func checkWHEPPlays(t *testing.T, p *Proxy, c *consoleClient, name, mime string) {
	pc, offer := whepClient(t, webrtc.MimeTypeH264, webrtc.MimeTypeH265)
	var packets atomic.Int64
	first := make(chan *rtp.Packet, 1)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if got := tr.Codec().MimeType; got != mime {
			t.Errorf("%s: track codec %s, want %s", name, got, mime)
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if packets.Add(1) == 1 {
				first <- pkt
			}
		}
	})
	code, answer, loc := c.post("/v1/cameras/"+name+"/whep", "application/sdp", offer)
	if code != 201 || !strings.HasPrefix(loc, "/v1/previews/") {
		t.Fatalf("%s: POST whep: %d %s", name, code, answer)
	}
	if strings.Contains(answer, "typ srflx") || strings.Contains(answer, "typ relay") || !strings.Contains(answer, "127.0.0.1") {
		t.Errorf("%s: answer candidates are not host candidates on the admin address:\n%s", name, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case pkt := <-first:
		if !startsKeyframe(mime, pkt.Payload) {
			t.Errorf("%s: the first packet (NAL header %x) does not start a keyframe: the GOP cache was not used", name, pkt.Payload[:2])
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no packet in 10 s", name)
	}
	waitFor(t, name+" 50 packets", 10*time.Second, func() bool { return packets.Load() >= 50 })
	rs := webrtcReaders(p)
	if len(rs) != 1 || rs[0].Camera != name || rs[0].User != "anonymous" || rs[0].PacketsOut < 50 {
		t.Errorf("%s: webrtc readers %+v", name, rs)
	}
	if m := httpGet(t, c.base+"/metrics"); !strings.Contains(m, `cordon_camera_readers{camera="`+name+`"} 1`) {
		t.Errorf("%s: the preview is not counted in cordon_camera_readers", name)
	}
	pc.Close()
	waitFor(t, name+" preview closed with the peer", 10*time.Second, func() bool { return len(webrtcReaders(p)) == 0 })
}

// checkWHEPRefusals posts offers the proxy cannot serve (five, each
// counted as refused) and one without the CSRF token (stopped before the
// preview server): each gets its status and reason.
func checkWHEPRefusals(t *testing.T, c *consoleClient) {
	_, h264Only := whepClient(t, webrtc.MimeTypeH264)
	for _, tc := range []struct {
		name, path, ctype, body string
		want                    int
		msg                     string
	}{
		{"h265 not offered", "/v1/cameras/yard/whep", "application/sdp", h264Only, 415, "this camera sends H.265 and this browser does not offer H.265"},
		{"not sdp", "/v1/cameras/door/whep", "text/plain", h264Only, 415, "application/sdp"},
		{"unknown camera", "/v1/cameras/nope/whep", "application/sdp", h264Only, 404, "no camera of that name"},
		{"too large", "/v1/cameras/door/whep", "application/sdp", strings.Repeat("a", previewMaxOffer+1), 413, "offer"},
		{"not an offer", "/v1/cameras/door/whep", "application/sdp", "v=0\r\nH264\r\n", 415, "does not offer H.264"},
	} {
		code, body, _ := c.post(tc.path, tc.ctype, tc.body)
		if code != tc.want || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, code, body, tc.want, tc.msg)
		}
	}
	noToken := *c
	noToken.token = ""
	if code, _, _ := noToken.post("/v1/cameras/door/whep", "application/sdp", h264Only); code != 403 {
		t.Errorf("offer without the CSRF token: %d, want 403", code)
	}
}

// startsKeyframe reports whether an RTP payload starts an H.264 or H.265
// access unit with parameter sets or an IDR/IRAP picture.
func startsKeyframe(mime string, b []byte) bool {
	if len(b) < 3 {
		return false
	}
	if mime == webrtc.MimeTypeH264 {
		switch typ := b[0] & 0x1f; typ {
		case 5, 7, 8, 24: // IDR, SPS, PPS, STAP-A (the cleaner's parameter sets)
			return true
		case 28:
			return b[1]&0x80 != 0 && (b[1]&0x1f == 5 || b[1]&0x1f == 7)
		}
		return false
	}
	typ := (b[0] >> 1) & 0x3f
	switch {
	case typ >= 16 && typ <= 21, typ == 32, typ == 33, typ == 34, typ == 48: // IRAP, VPS, SPS, PPS, AP
		return true
	case typ == 49:
		ft := b[2] & 0x3f
		return b[2]&0x80 != 0 && (ft >= 16 && ft <= 21)
	}
	return false
}

// countRTP counts the RTP packets of every track pc receives.
func countRTP(pc *webrtc.PeerConnection) *atomic.Int64 {
	var packets atomic.Int64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			packets.Add(1)
		}
	})
	return &packets
}

// TestPreviewUDPPort: with preview.udp_port every preview's media uses
// that one port (ICE UDP mux) on the admin listener's address.
func TestPreviewUDPPort(t *testing.T) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door"}}, func(c *Config) { c.Preview.UDPPort = port })
	waitFor(t, "door up", 10*time.Second, func() bool { return cameraState(p, "door") == stateUp })
	c := &consoleClient{t: t, base: "http://" + p.AdminAddr().String()}
	c.open()
	for i := range 2 {
		pc, offer := whepClient(t, webrtc.MimeTypeH264)
		packets := countRTP(pc)
		code, answer, _ := c.post("/v1/cameras/door/whep", "application/sdp", offer)
		if code != 201 {
			t.Fatalf("POST whep: %d %s", code, answer)
		}
		want := fmt.Sprintf(" 127.0.0.1 %d typ host", port)
		cands := 0
		for line := range strings.Lines(answer) {
			if strings.HasPrefix(line, "a=candidate:") {
				cands++
				if !strings.Contains(line, want) {
					cands = -100
				}
			}
		}
		if cands <= 0 {
			t.Errorf("preview %d: the answer's candidates are not just %q:\n%s", i, want, answer)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "packets over the one port", 10*time.Second, func() bool { return packets.Load() > 20 })
	}
	if n := len(webrtcReaders(p)); n != 2 {
		t.Errorf("%d previews, want 2", n)
	}
}

// TestPreviewOnDemand: a preview wakes an on-demand camera, keeps it up
// while it plays, and lets it idle once closed.
func TestPreviewOnDemand(t *testing.T) {
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door"}}, func(c *Config) { c.Cameras[0].OnDemand = true })
	if st := cameraState(p, "door"); st != stateIdle {
		t.Fatalf("on-demand camera %s before any reader", st)
	}
	c := &consoleClient{t: t, base: "http://" + p.AdminAddr().String()}
	c.open()
	pc, offer := whepClient(t, webrtc.MimeTypeH264)
	packets := countRTP(pc)
	code, answer, _ := c.post("/v1/cameras/door/whep", "application/sdp", offer)
	if code != 201 {
		t.Fatalf("POST whep to an idle on-demand camera: %d %s", code, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "packets from the woken camera", 10*time.Second, func() bool { return packets.Load() > 20 })
	time.Sleep(time.Second) // on_demand_close is 500 ms in tests: the preview keeps it up
	if st := cameraState(p, "door"); st != stateUp {
		t.Errorf("on-demand camera %s while previewed", st)
	}
	pc.Close()
	waitFor(t, "the camera idle after the preview", 10*time.Second, func() bool { return cameraState(p, "door") == stateIdle })
}

// TestPreviewCandidatesEveryInterface: with listen.admin on every
// interface, a preview's candidates are on the address the browser
// reached, only.
func TestPreviewCandidatesEveryInterface(t *testing.T) {
	log, _ := newLog(t)
	s, err := newPreviewServer(nil, Preview{MaxSessions: 1, IdleTimeout: 2 * time.Second}, &net.TCPAddr{IP: net.IPv4zero, Port: 9554}, log)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "/v1/cameras/door/whep", nil)
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9554}))
	api, err := s.apiFor(req)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	track, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "cordon")
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	_, offer := whepClient(t, webrtc.MimeTypeH264)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-done
	n := 0
	for line := range strings.Lines(pc.LocalDescription().SDP) {
		if strings.HasPrefix(line, "a=candidate:") {
			n++
			if !strings.Contains(line, " 127.0.0.1 ") || !strings.Contains(line, "typ host") {
				t.Errorf("candidate not on the reached address: %s", line)
			}
		}
	}
	if n == 0 {
		t.Error("no candidate")
	}
}

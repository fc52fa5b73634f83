package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// The console's live preview: WebRTC, negotiated WHEP-style (the page
// POSTs an SDP offer to /v1/cameras/{name}/whep with its CSRF token, the
// answer comes back in the response, with every candidate: no trickle).
// Each preview is a reader of the camera's stream (transport "webrtc"):
// it counts in /v1/readers and the reader metrics, obeys max_readers,
// starts at the cached GOP, and exists only while the browser answers
// ICE consent checks. No transcoding: the cleaned H.264 (or H.265, for a
// browser that offers it) packets go out as they are.
//
// ICE: host candidates on listen.admin's address only (loopback included
// when that is where it listens), UDP on preview.udp_port (one port for
// every preview) or preview.udp_port_min..max, or an ephemeral port. No
// STUN or TURN server is ever contacted; multicast DNS is off.

// previewServer runs the previews of one proxy.
type previewServer struct {
	p       *Proxy
	cfg     Preview
	log     *slog.Logger
	me      *webrtc.MediaEngine
	ir      *interceptor.Registry
	adminIP netip.Addr
	api     *webrtc.API // nil when listen.admin is on every interface (apiFor)
	mux     ice.UDPMux  // nil without preview.udp_port

	started, refused atomic.Uint64 // previews, for the metrics

	mu       sync.Mutex
	sessions map[string]*previewSession
	closed   bool
}

// previewSession is one browser watching one camera.
type previewSession struct {
	id, camera, user string
	srv              *previewServer
	cam              *camera
	pc               *webrtc.PeerConnection
	out              *webrtcOutput
	r                *reader
	once             sync.Once
}

// Preview errors, answered as JSON {"error": …} and shown by the page.
var (
	errPreviewOff      = errors.New("preview: disabled (preview.off)")
	errPreviewBusy     = errors.New("preview: too many previews at once (preview.max_sessions)")
	errPreviewNoVideo  = errors.New("preview: the camera has no video track")
	errPreviewMJPEG    = errors.New("preview: this camera sends M-JPEG, which WebRTC cannot carry without transcoding; recorders get it unchanged")
	errPreviewH265     = errors.New("preview: this camera sends H.265 and this browser does not offer H.265 over WebRTC (Chromium and Firefox decode it only on some platforms, with hardware support); recorders get it unchanged")
	errPreviewH264     = errors.New("preview: this browser does not offer H.264 over WebRTC")
	errPreviewNoAnswer = errors.New("preview: no ICE candidate on the admin listener's address")
)

// previewMaxOffer bounds an SDP offer.
const previewMaxOffer = 64 << 10

func newPreviewServer(p *Proxy, cfg Preview, adminAddr net.Addr, log *slog.Logger) (*previewServer, error) {
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	codecs := []struct {
		fmtp string
		pt   webrtc.PayloadType
	}{
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 106},
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102},
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", 127},
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f", 112},
	}
	for _, c := range codecs {
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: c.fmtp, RTCPFeedback: fb},
			PayloadType:        c.pt,
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("preview: %w", err)
		}
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000, RTCPFeedback: fb},
		PayloadType:        116,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("preview: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, ir); err != nil {
		return nil, fmt.Errorf("preview: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("preview: %w", err)
	}

	ap, err := netip.ParseAddrPort(adminAddr.String())
	if err != nil {
		return nil, fmt.Errorf("preview: admin address %s: %w", adminAddr, err)
	}
	s := &previewServer{p: p, cfg: cfg, log: log, me: me, ir: ir, adminIP: ap.Addr().Unmap(), sessions: map[string]*previewSession{}}
	if cfg.UDPPort > 0 {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: s.adminIP.AsSlice(), Port: cfg.UDPPort})
		if err != nil {
			return nil, fmt.Errorf("preview: %w", &ListenError{Key: "preview.udp_port", Addr: fmt.Sprint(cfg.UDPPort), Err: err})
		}
		s.mux = webrtc.NewICEUDPMux(pionLogs{log}.NewLogger("ice"), conn)
	}
	if !s.adminIP.IsUnspecified() {
		s.api = s.newAPI(s.adminIP)
	}
	return s, nil
}

// newAPI returns a pion API whose ICE candidates are UDP host candidates
// on ip only (loopback included when ip is), on preview.udp_port or in
// preview.udp_port_min..max.
func (s *previewServer) newAPI(ip netip.Addr) *webrtc.API {
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{s.log}}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// disconnected after half the idle timeout without an answer, failed
	// (closed) after the other half.
	se.SetICETimeouts(s.cfg.IdleTimeout/2, s.cfg.IdleTimeout/2, time.Second)
	se.SetIncludeLoopbackCandidate(ip.IsLoopback())
	se.SetIPFilter(func(x net.IP) bool {
		a, ok := netip.AddrFromSlice(x)
		return ok && a.Unmap() == ip
	})
	switch {
	case s.mux != nil:
		se.SetICEUDPMux(s.mux)
	case s.cfg.UDPPortMin > 0:
		se.SetEphemeralUDPPortRange(uint16(s.cfg.UDPPortMin), uint16(s.cfg.UDPPortMax)) // validated: min <= max
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(s.me), webrtc.WithInterceptorRegistry(s.ir), webrtc.WithSettingEngine(se))
}

// apiFor returns the API of a preview asked for by r. On an admin
// listener bound to every interface, the candidates are on the address
// the browser reached (never the other interfaces, the camera network's
// among them).
func (s *previewServer) apiFor(r *http.Request) (*webrtc.API, error) {
	if s.api != nil {
		return s.api, nil
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return nil, errors.New("preview: the request's local address is unknown")
	}
	ap, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return nil, fmt.Errorf("preview: the request's local address: %w", err)
	}
	return s.newAPI(ap.Addr().Unmap()), nil
}

// close ends every preview and releases the UDP port.
func (s *previewServer) close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*previewSession, 0, len(s.sessions))
	for _, ps := range s.sessions {
		all = append(all, ps)
	}
	s.mu.Unlock()
	for _, ps := range all {
		ps.close("proxy shutting down")
	}
	if s.mux != nil {
		s.mux.Close()
	}
}

// previewTrack returns the stream's video track and the WebRTC codec it
// needs.
func (s *stream) previewTrack() (*rebuild.Track, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plan == nil {
		return nil, "", errCameraDown
	}
	for _, t := range s.plan.Tracks {
		if t.Media().Type != description.MediaTypeVideo {
			continue
		}
		switch t.Media().Formats[0].(type) {
		case *format.H264:
			return t, webrtc.MimeTypeH264, nil
		case *format.H265:
			return t, webrtc.MimeTypeH265, nil
		case *format.MJPEG:
			return nil, "", errPreviewMJPEG
		}
	}
	return nil, "", errPreviewNoVideo
}

// offers reports whether an SDP offer lists codec (an rtpmap encoding
// name, such as "H264").
func offers(sdp, codec string) bool {
	for line := range strings.SplitSeq(sdp, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "a=rtpmap:"); ok {
			_, enc, _ := strings.Cut(rest, " ")
			name, _, _ := strings.Cut(enc, "/")
			if strings.EqualFold(name, codec) {
				return true
			}
		}
	}
	return false
}

// refuse answers an offer the proxy does not serve, logs it and counts it.
func (s *previewServer) refuse(w http.ResponseWriter, r *http.Request, code int, err error) {
	s.refused.Add(1)
	s.log.Info("preview refused", "camera", r.PathValue("name"), "user", adminUser(r), "remote", r.RemoteAddr,
		"status", code, "reason", err)
	previewError(w, code, err)
}

func previewError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{err.Error()})
}

// handleOffer answers POST /v1/cameras/{name}/whep (the admin guard has
// checked the credentials and the CSRF token).
func (s *previewServer) handleOffer(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Off {
		s.refuse(w, r, http.StatusNotFound, errPreviewOff)
		return
	}
	c := s.p.camera(r.PathValue("name"))
	if c == nil {
		s.refuse(w, r, http.StatusNotFound, errors.New("no camera of that name"))
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/sdp" {
		s.refuse(w, r, http.StatusUnsupportedMediaType, errors.New("preview: the offer must be application/sdp"))
		return
	}
	offer, err := io.ReadAll(http.MaxBytesReader(w, r.Body, previewMaxOffer))
	if err != nil {
		s.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Errorf("preview: offer: %w", err))
		return
	}
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	if n >= s.cfg.MaxSessions {
		s.refuse(w, r, http.StatusServiceUnavailable, errPreviewBusy)
		return
	}
	sst, err := c.streamFor(s.p.servers[0], c.tmo.OnDemandStart)
	if err != nil {
		s.refuse(w, r, http.StatusServiceUnavailable, fmt.Errorf("preview: %w", err))
		return
	}
	video, mimeType, err := c.stream.previewTrack()
	if err != nil {
		s.refuse(w, r, http.StatusUnsupportedMediaType, err)
		return
	}
	switch {
	case mimeType == webrtc.MimeTypeH265 && !offers(string(offer), "H265"):
		s.refuse(w, r, http.StatusUnsupportedMediaType, errPreviewH265)
		return
	case mimeType == webrtc.MimeTypeH264 && !offers(string(offer), "H264"):
		s.refuse(w, r, http.StatusUnsupportedMediaType, errPreviewH264)
		return
	}
	ps, answer, code, err := s.start(r, c, sst, video, mimeType, string(offer))
	if err != nil {
		s.refuse(w, r, code, err)
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/v1/previews/"+ps.id)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// start negotiates a preview and attaches it to the camera's stream.
func (s *previewServer) start(r *http.Request, c *camera, sst *gortsplib.ServerStream, video *rebuild.Track, mimeType, offer string) (*previewSession, string, int, error) {
	pc, track, answer, code, err := s.negotiate(r, mimeType, offer)
	if err != nil {
		return nil, "", code, err
	}
	ps, code, err := s.attach(r, c, sst, pc, video, track)
	if err != nil {
		pc.Close()
		return nil, "", code, err
	}
	s.started.Add(1)
	s.log.Info("preview started", "camera", ps.camera, "user", ps.user, "remote", r.RemoteAddr, "codec", mimeType)
	return ps, answer, 0, nil
}

// negotiate answers offer with a peer connection that sends one video
// track of mimeType, its candidates gathered (no trickle). On error, it
// returns the HTTP status to answer with, the peer connection closed.
func (s *previewServer) negotiate(r *http.Request, mimeType, offer string) (*webrtc.PeerConnection, *webrtc.TrackLocalStaticRTP, string, int, error) {
	api, err := s.apiFor(r)
	if err != nil {
		return nil, nil, "", http.StatusInternalServerError, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{}) // no ICE servers: host candidates only
	if err != nil {
		return nil, nil, "", http.StatusInternalServerError, fmt.Errorf("preview: %w", err)
	}
	fail := func(code int, err error) (*webrtc.PeerConnection, *webrtc.TrackLocalStaticRTP, string, int, error) {
		pc.Close()
		return nil, nil, "", code, err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mimeType, ClockRate: 90000}, "video", "cordon")
	if err != nil {
		return fail(http.StatusInternalServerError, fmt.Errorf("preview: %w", err))
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fail(http.StatusInternalServerError, fmt.Errorf("preview: %w", err))
	}
	go func() { // RTCP from the browser (NACK, PLI, reports) feeds the interceptors
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Sender().Read(buf); err != nil {
				return
			}
		}
	}()
	answer, code, err := answerOffer(r, pc, offer)
	if err != nil {
		return fail(code, err)
	}
	if len(tr.Sender().GetParameters().Codecs) == 0 {
		if mimeType == webrtc.MimeTypeH265 {
			return fail(http.StatusUnsupportedMediaType, errPreviewH265)
		}
		return fail(http.StatusUnsupportedMediaType, errPreviewH264)
	}
	return pc, track, answer, 0, nil
}

// answerOffer sets offer on pc and returns the answer once every ICE
// candidate is in it, or the HTTP status and error to answer with.
func answerOffer(r *http.Request, pc *webrtc.PeerConnection, offer string) (string, int, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("preview: offer: %w", err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", http.StatusUnsupportedMediaType, fmt.Errorf("preview: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", http.StatusInternalServerError, fmt.Errorf("preview: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return "", http.StatusServiceUnavailable, errPreviewNoAnswer
	case <-r.Context().Done():
		return "", http.StatusServiceUnavailable, r.Context().Err()
	}
	local := pc.LocalDescription()
	if local == nil || !strings.Contains(local.SDP, "a=candidate:") {
		return "", http.StatusServiceUnavailable, errPreviewNoAnswer
	}
	return local.SDP, 0, nil
}

// attach makes the negotiated peer connection pc a reader of c's stream
// (counted against preview.max_sessions) and arranges for it to end
// when the browser goes or never connects. On error, it returns the HTTP
// status to answer with; the caller closes pc.
func (s *previewServer) attach(r *http.Request, c *camera, sst *gortsplib.ServerStream, pc *webrtc.PeerConnection, video *rebuild.Track, track *webrtc.TrackLocalStaticRTP) (*previewSession, int, error) {
	ps := &previewSession{id: randomID(), camera: c.cfg.Name, user: adminUser(r), srv: s, cam: c, pc: pc}
	ps.out = newWebRTCOutput(video, track)
	ps.r = &reader{user: ps.user, remote: r.RemoteAddr, since: time.Now(), transport: "webrtc", out: ps.out,
		close: func() { ps.close("closed by the proxy") }}
	ps.out.r = ps.r
	s.mu.Lock()
	if s.closed || len(s.sessions) >= s.cfg.MaxSessions {
		s.mu.Unlock()
		return nil, http.StatusServiceUnavailable, errPreviewBusy
	}
	s.sessions[ps.id] = ps
	s.mu.Unlock()
	if err := c.addReader(ps.r, sst); err != nil {
		s.mu.Lock()
		delete(s.sessions, ps.id)
		s.mu.Unlock()
		return nil, http.StatusServiceUnavailable, fmt.Errorf("preview: %w", err)
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ps.out.connected.Store(true)
			s.log.Debug("preview connected", "camera", ps.camera, "user", ps.user)
		case webrtc.PeerConnectionStateFailed:
			ps.close("the browser stopped answering (ICE failed or idle)")
		case webrtc.PeerConnectionStateClosed:
			ps.close("connection closed")
		}
	})
	time.AfterFunc(s.cfg.IdleTimeout, func() {
		if !ps.out.connected.Load() {
			ps.close("no WebRTC connection within preview.idle_timeout")
		}
	})
	go func() {
		err := contained(func() error { return ps.out.run() })
		ps.close(err.Error())
	}()
	return ps, 0, nil
}

// contained runs f, turning a panic into an error.
func contained(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("internal error: %v", v)
		}
	}()
	return f()
}

// close ends the preview: detaches it from the stream and closes the
// peer connection.
func (ps *previewSession) close(reason string) {
	ps.once.Do(func() {
		ps.out.stop()
		ps.cam.removeReader(ps.r)
		s := ps.srv
		s.mu.Lock()
		delete(s.sessions, ps.id)
		s.mu.Unlock()
		go ps.pc.Close() // may wait for the connection's goroutines, one of which may be calling here
		mean, maxWait, n := ps.out.delay.stats()
		s.log.Info("preview ended", "camera", ps.camera, "user", ps.user, "reason", reason,
			"packets", n, "not_video_packets", ps.out.notVideo.Load(), "proxy_delay_mean", mean, "proxy_delay_max", maxWait)
	})
}

// handleDelete answers DELETE /v1/previews/{id}: the page ends its preview.
func (s *previewServer) handleDelete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ps := s.sessions[r.PathValue("id")]
	s.mu.Unlock()
	if ps == nil {
		previewError(w, http.StatusNotFound, errors.New("no preview of that id"))
		return
	}
	ps.close("closed by the browser")
	w.WriteHeader(http.StatusNoContent)
}

// PreviewStatus is one preview in /v1/previews.
type PreviewStatus struct {
	ID        string    `json:"id"`
	Camera    string    `json:"camera"`
	User      string    `json:"user"`
	Since     time.Time `json:"since"`
	Connected bool      `json:"connected"`
	Packets   uint64    `json:"packets"`
	// ProxyDelayMeanMS and ProxyDelayMaxMS are how long packets waited in
	// the proxy: arrival from the camera → handed to the WebRTC stack.
	ProxyDelayMeanMS float64 `json:"proxy_delay_mean_ms"`
	ProxyDelayMaxMS  float64 `json:"proxy_delay_max_ms"`
	// NotVideoPackets counts the camera's other tracks' packets (audio),
	// which a preview does not carry.
	NotVideoPackets uint64 `json:"not_video_packets"`
}

// count returns the number of previews running.
func (s *previewServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *previewServer) status() []PreviewStatus {
	s.mu.Lock()
	all := make([]*previewSession, 0, len(s.sessions))
	for _, ps := range s.sessions {
		all = append(all, ps)
	}
	s.mu.Unlock()
	out := []PreviewStatus{}
	for _, ps := range all {
		mean, mx, n := ps.out.delay.stats()
		out = append(out, PreviewStatus{ID: ps.id, Camera: ps.camera, User: ps.user, Since: ps.r.since,
			Connected: ps.out.connected.Load(), Packets: n,
			ProxyDelayMeanMS: float64(mean) / 1e6, ProxyDelayMaxMS: float64(mx) / 1e6, NotVideoPackets: ps.out.notVideo.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pionLogs sends pion's warnings and errors to the proxy's log at debug
// level (ICE and DTLS chatter is not an operator's concern; failures end
// the preview, which is logged).
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}
func (l pionLogger) Debug(string)          {}
func (l pionLogger) Debugf(string, ...any) {}
func (l pionLogger) Info(string)           {}
func (l pionLogger) Infof(string, ...any)  {}
func (l pionLogger) Warn(m string)         { l.log.Debug(m) }
func (l pionLogger) Warnf(f string, a ...any) {
	l.log.Debug(fmt.Sprintf(f, a...))
}
func (l pionLogger) Error(m string) { l.log.Debug(m) }
func (l pionLogger) Errorf(f string, a ...any) {
	l.log.Debug(fmt.Sprintf(f, a...))
}

// adminUserKey holds the admin account of a request (adminGuard).
type adminUserKey struct{}

// adminUser is the admin account that made r, or "anonymous" on a
// loopback listener without admin_users.
func adminUser(r *http.Request) string {
	if u, ok := r.Context().Value(adminUserKey{}).(string); ok {
		return u
	}
	return "anonymous"
}

func withAdminUser(r *http.Request, user string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), adminUserKey{}, user))
}

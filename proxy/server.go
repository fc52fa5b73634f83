package proxy

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
)

// handler answers the core side: readers only. It implements no
// ANNOUNCE/RECORD handler, so gortsplib refuses publishing (501), and
// answers GET_PARAMETER/SET_PARAMETER itself: nothing a reader sends is
// relayed to a camera.
type handler struct {
	p      *Proxy
	srv    *gortsplib.Server
	secure bool
}

var (
	_ gortsplib.ServerHandlerOnRequest      = (*handler)(nil)
	_ gortsplib.ServerHandlerOnResponse     = (*handler)(nil)
	_ gortsplib.ServerHandlerOnDescribe     = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSetup        = (*handler)(nil)
	_ gortsplib.ServerHandlerOnPlay         = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSessionClose = (*handler)(nil)
	_ gortsplib.ServerHandlerOnGetParameter = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSetParameter = (*handler)(nil)
)

func remoteOf(sc *gortsplib.ServerConn) (netip.Addr, string) {
	ra := sc.NetConn().RemoteAddr()
	if ta, ok := ra.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return ap.Addr().Unmap(), ra.String()
	}
	return netip.Addr{}, ra.String()
}

func cameraName(path string) string { return strings.Trim(path, "/") }

func status(code base.StatusCode) *base.Response { return &base.Response{StatusCode: code} }

// OnRequest logs and counts attempts to publish towards the proxy.
func (h *handler) OnRequest(sc *gortsplib.ServerConn, req *base.Request) {
	switch req.Method {
	case base.Announce, base.Record:
		h.p.refusedPublish.Add(1)
		_, remote := remoteOf(sc)
		h.p.log.Warn("refused a publish attempt: the core side is read-only", "method", string(req.Method), "remote", remote)
	}
}

// authorize checks the request's credentials for camera name. It returns a
// non-nil response when the request must be refused.
func (h *handler) authorize(sc *gortsplib.ServerConn, req *base.Request, name string) (string, *base.Response, error) {
	acc := *h.p.accts.Load()
	if len(acc) == 0 {
		return "", nil, nil
	}
	ip, remote := remoteOf(sc)
	var hdr headers.Authorization
	if err := hdr.Unmarshal(req.Header["Authorization"]); err != nil || hdr.Username == "" {
		// No credentials yet: gortsplib answers 401 with a challenge. The
		// (failing) check creates the connection's Digest nonce the challenge
		// carries.
		sc.VerifyCredentials(req, "\x00", "")
		return "", status(base.StatusUnauthorized), liberrors.ErrServerAuth{}
	}
	a := acc[hdr.Username]
	ok := false
	if a != nil {
		if a.password != "" {
			ok = sc.VerifyCredentials(req, a.user, a.password)
		} else if hdr.Method == headers.AuthMethodBasic {
			ok = a.checkHash(hdr.BasicPass)
		}
	}
	if !ok {
		h.p.authFailures.Add(1)
		h.p.log.Warn("reader login failed", "user", hdr.Username, "remote", remote, "camera", name)
		h.p.failedLoginDelay()
		return "", status(base.StatusUnauthorized), liberrors.ErrServerAuth{}
	}
	if !a.allowsAddr(ip) {
		h.p.refusedNetwork.Add(1)
		h.p.log.Warn("reader refused: source address outside its networks", "user", a.user, "remote", remote)
		return "", status(base.StatusForbidden), nil
	}
	if !a.allowsCamera(name) {
		h.p.refusedCamera.Add(1)
		h.p.log.Warn("reader refused: camera not in its list", "user", a.user, "remote", remote, "camera", name)
		return "", status(base.StatusForbidden), nil
	}
	return a.user, nil, nil
}

func (h *handler) stream(name string) (*camera, *gortsplib.ServerStream, *base.Response) {
	cam := h.p.camera(name)
	if cam == nil {
		return nil, nil, status(base.StatusNotFound)
	}
	st, err := cam.streamFor(h.srv, cam.tmo.OnDemandStart)
	if err != nil {
		return nil, nil, status(base.StatusServiceUnavailable)
	}
	return cam, st, nil
}

// OnDescribe serves the SDP generated from the camera's clean plan.
func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	name := cameraName(ctx.Path)
	if _, res, err := h.authorize(ctx.Conn, ctx.Request, name); res != nil {
		return res, nil, err
	}
	_, st, res := h.stream(name)
	if res != nil {
		return res, nil, nil
	}
	return status(base.StatusOK), st, nil
}

// OnSetup attaches the session to the camera's stream.
func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	name := cameraName(ctx.Path)
	user, res, err := h.authorize(ctx.Conn, ctx.Request, name)
	if res != nil {
		return res, nil, err
	}
	r, ok := ctx.Session.UserData().(*reader)
	if ok {
		if r.cam.cfg.Name != name {
			return status(base.StatusBadRequest), nil, errors.New("proxy: one session may read one camera")
		}
	} else {
		cam, st, res := h.stream(name)
		if res != nil {
			return res, nil, nil
		}
		_, remote := remoteOf(ctx.Conn)
		if user == "" {
			user = "anonymous"
		}
		r = &reader{ss: ctx.Session, cam: cam, stream: st, user: user, remote: remote, since: time.Now(),
			chans: map[*description.Media]uint8{}, ssrcs: map[*description.Media]uint32{}}
		ctx.Session.SetUserData(r)
	}
	// OnResponse reads the interleaved channel and SSRC of this media from
	// the SETUP response, for frame-batched output.
	r.pendingMedia = setupMedia(r.stream.Desc, ctx.Request.URL.String())
	ctx.Conn.SetUserData(r)
	return status(base.StatusOK), r.stream, nil
}

// setupMedia finds the media a SETUP URL names (".../trackID=N", as in the
// SDP the proxy generates).
func setupMedia(desc *description.Session, url string) *description.Media {
	i := strings.LastIndex(url, "trackID=")
	if i < 0 {
		if len(desc.Medias) == 1 {
			return desc.Medias[0]
		}
		return nil
	}
	n, err := strconv.Atoi(strings.TrimRight(url[i+len("trackID="):], "/"))
	if err != nil || n < 0 || n >= len(desc.Medias) {
		return nil
	}
	return desc.Medias[n]
}

// OnResponse records the interleaved channel and SSRC gortsplib chose for a
// reader's media (TCP transport).
func (h *handler) OnResponse(sc *gortsplib.ServerConn, res *base.Response) {
	r, ok := sc.UserData().(*reader)
	if !ok || r.pendingMedia == nil {
		return
	}
	m := r.pendingMedia
	r.pendingMedia = nil
	if res.StatusCode != base.StatusOK {
		return
	}
	var tr headers.Transport
	if tr.Unmarshal(res.Header["Transport"]) != nil || tr.Protocol != headers.TransportProtocolTCP || tr.InterleavedIDs == nil {
		return
	}
	r.chans[m] = uint8(tr.InterleavedIDs[0])
	if tr.SSRC != nil {
		r.ssrcs[m] = *tr.SSRC
	}
}

// OnPlay starts delivery (from the cached keyframe) unless max_readers is reached.
func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	r, ok := ctx.Session.UserData().(*reader)
	if !ok {
		return status(base.StatusBadRequest), nil
	}
	if tc, ok := ctx.Conn.NetConn().(*trackedConn); ok && h.p.batching && r.bw == nil &&
		ctx.Session.Transport().Protocol == gortsplib.ProtocolTCP && len(r.chans) == len(ctx.Session.Medias()) {
		r.bw = newBatchWriter(tc, h.p.writeTmo, int64(h.p.queueSize)*1500, &r.packets, &r.bytes, func(err error) {
			h.p.log.Debug("reader write failed; closing its session", "remote", r.remote, "error", err)
			r.ss.Close()
		})
		r.bw.delay = func(d time.Duration) { h.p.frameDelay.Observe(d.Seconds()) }
	}
	err := r.cam.addReader(r)
	if err != nil && r.bw != nil {
		r.bw.stop()
		r.bw = nil
	} else if r.bw != nil {
		go func() {
			defer r.cam.recoverReader(r)
			r.bw.run()
		}()
	}
	switch {
	case errors.Is(err, errTooManyReaders):
		h.p.refusedFull.Add(1)
		h.p.log.Warn("reader refused: camera has reached max_readers", "camera", r.cam.cfg.Name, "user", r.user, "remote", r.remote,
			"max_readers", r.cam.cfg.MaxReaders)
		return status(base.StatusServiceUnavailable), nil
	case err != nil:
		return status(base.StatusServiceUnavailable), nil
	}
	h.p.log.Info("reader attached", "camera", r.cam.cfg.Name, "user", r.user, "remote", r.remote,
		"transport", ctx.Session.Transport().Protocol.String(), "secure", h.secure)
	return status(base.StatusOK), nil
}

// OnSessionClose detaches the reader.
func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	r, ok := ctx.Session.UserData().(*reader)
	if !ok {
		return
	}
	r.cam.removeReader(r)
	h.p.log.Info("reader detached", "camera", r.cam.cfg.Name, "user", r.user, "remote", r.remote,
		"bytes", r.bytes.Load(), "dropped_packets", r.dropped.Load(), "reason", errString(ctx.Error))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// OnGetParameter answers keep-alives locally; nothing is relayed to cameras.
func (h *handler) OnGetParameter(*gortsplib.ServerHandlerOnGetParameterCtx) (*base.Response, error) {
	return status(base.StatusOK), nil
}

// OnSetParameter accepts and ignores the request; nothing is relayed to cameras.
func (h *handler) OnSetParameter(*gortsplib.ServerHandlerOnSetParameterCtx) (*base.Response, error) {
	return status(base.StatusOK), nil
}

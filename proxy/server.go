package proxy

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
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
	udp    udpSockets // the UDP transport's sockets, once listening
	digest sync.Map   // *gortsplib.ServerConn → *digestState
	setups setupGates
}

func (h *handler) digestOf(sc *gortsplib.ServerConn) *digestState {
	if d, ok := h.digest.Load(sc); ok {
		return d.(*digestState)
	}
	d, _ := h.digest.LoadOrStore(sc, &digestState{})
	return d.(*digestState)
}

// OnConnClose forgets the connection's Digest state and gives back the
// SETUP gate it may hold.
func (h *handler) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	h.digest.Delete(ctx.Conn)
	h.setups.release(ctx.Conn)
}

// setupGranted takes the stream's SETUP gate (see server_setup_gate.go)
// for a SETUP about to be answered 200 on st, or returns the 503 answer
// when it cannot in time.
func (h *handler) setupGranted(ctx *gortsplib.ServerHandlerOnSetupCtx, st *gortsplib.ServerStream) (*base.Response, *gortsplib.ServerStream, error) {
	// Only a UDP session's first SETUP reads other sessions (readerAdd).
	excl := ctx.Transport.Protocol == gortsplib.ProtocolUDP && ctx.Session.State() == gortsplib.ServerSessionStateInitial
	_, remote := remoteOf(ctx.Conn)
	expired := func() {
		h.p.log.Error("a reader's SETUP held its camera's SETUP gate too long; released", "remote", remote, "path", ctx.Path)
	}
	if !h.setups.acquire(ctx.Conn, st, excl, setupWaitMax, setupHoldMax, expired) {
		h.p.log.Warn("reader refused: its camera's SETUP gate stayed busy", "remote", remote, "path", ctx.Path, "waited", setupWaitMax)
		return status(base.StatusServiceUnavailable), nil, nil
	}
	return status(base.StatusOK), st, nil
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
	_ gortsplib.ServerHandlerOnConnClose    = (*handler)(nil)
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

// foreignSession replaces the Session header of a request that names a
// session its connection did not create. It is not a valid session ID
// (gortsplib's are hexadecimal), so gortsplib answers 454 Session Not Found.
const foreignSession = "-"

// OnRequest refuses requests that name another connection's session, and
// logs and counts attempts to publish towards the proxy.
//
// A session belongs to the connection that created it (SETUP): PLAY,
// PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER and OPTIONS naming it from
// any other connection get 454 Session Not Found. gortsplib itself only
// checks the source address, and the handlers below check credentials only
// on DESCRIBE and SETUP, so without this a second, unauthenticated
// connection could PLAY (or TEARDOWN) a reader's session by its ID.
func (h *handler) OnRequest(sc *gortsplib.ServerConn, req *base.Request) {
	if v := req.Header["Session"]; len(v) > 0 && sc.Session() == nil {
		h.p.refusedSession.Add(1)
		_, remote := remoteOf(sc)
		h.p.log.Warn("reader refused: request names a session of another connection", "method", string(req.Method), "remote", remote)
		req.Header["Session"] = base.HeaderValue{foreignSession}
	}
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
	acct := "" // the budget of configured accounts only (no map entry per guessed name)
	if a != nil {
		acct = a.user
	}
	lim := h.p.logins
	throttled := func(scope string) (string, *base.Response, error) {
		h.p.countThrottled(scope)
		h.p.failedLoginDelay()
		if scope == throttleBusy {
			return "", status(base.StatusServiceUnavailable), nil
		}
		return "", status(base.StatusUnauthorized), liberrors.ErrServerAuth{}
	}
	if scope := lim.blocked(ip, acct); scope != "" {
		// In a failure delay: 401 without checking (or hashing) anything.
		return throttled(scope)
	}
	reason, scope := h.checkPassword(sc, req, &hdr, a, ip, acct)
	if scope != "" {
		return throttled(scope)
	}
	if reason != "" {
		h.p.authFailures.Add(1)
		srcDelay, acctDelay := lim.fail(ip, acct)
		h.p.log.Warn("reader login failed", "user", hdr.Username, "remote", remote, "camera", name, "reason", reason)
		if srcDelay > 0 || acctDelay > 0 {
			h.p.log.Warn("reader logins throttled after repeated failures", "user", hdr.Username, "remote", remote,
				"source_delay", srcDelay, "account_delay", acctDelay)
		}
		h.p.failedLoginDelay()
		return "", status(base.StatusUnauthorized), liberrors.ErrServerAuth{}
	}
	lim.succeed(ip, acct)
	if !a.allowsAddr(ip) {
		h.p.refusedNetwork.Add(1)
		h.p.log.Warn("reader refused: source address outside its networks", "user", a.user, "remote", remote, "reason", "network not allowed")
		return "", status(base.StatusForbidden), nil
	}
	if !a.allowsCamera(name) {
		h.p.refusedCamera.Add(1)
		h.p.log.Warn("reader refused: camera not in its list", "user", a.user, "remote", remote, "camera", name)
		return "", status(base.StatusForbidden), nil
	}
	return a.user, nil, nil
}

// checkPassword checks the request's credentials against account a (nil:
// no such account, which fails) with checkLogin. It returns why a login
// failed ("" when it did not), or, in scope, that the check was not made:
// the login is throttled.
func (h *handler) checkPassword(sc *gortsplib.ServerConn, req *base.Request, hdr *headers.Authorization, a *account, ip netip.Addr, acct string) (reason, scope string) {
	lim := h.p.logins
	return checkLogin(req, *hdr, a, h.digestOf(sc), func() (func(), string) {
		release, err := lim.acquire(ip)
		if err != nil {
			return nil, throttleBusy
		}
		// Earlier guesses of this source may have used up its budget
		// while this one waited for its turn.
		if scope := lim.blocked(ip, acct); scope != "" {
			release()
			return nil, scope
		}
		return release, ""
	})
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
	if v := ctx.Request.Header["Session"]; len(v) == 1 && v[0] == foreignSession {
		// gortsplib created a session for this unknown ID; the error closes
		// the connection and with it that session.
		return status(base.StatusSessionNotFound), nil, liberrors.ErrServerSessionNotFound{}
	}
	name := cameraName(ctx.Path)
	user, res, err := h.authorize(ctx.Conn, ctx.Request, name)
	if res != nil {
		return res, nil, err
	}
	if rs, ok := ctx.Session.UserData().(*readerSession); ok {
		if rs.cam.cfg.Name != name {
			return status(base.StatusBadRequest), nil, errors.New("proxy: one session may read one camera")
		}
		return h.setupGranted(ctx, rs.stream)
	}
	cam, st, res := h.stream(name)
	if res != nil {
		return res, nil, nil
	}
	_, remote := remoteOf(ctx.Conn)
	if user == "" {
		user = "anonymous"
	}
	res, st, err = h.setupGranted(ctx, st)
	if res.StatusCode == base.StatusOK {
		ctx.Session.SetUserData(newReaderSession(ctx.Session, cam, st, user, remote))
	}
	return res, st, err
}

// OnResponse puts the proxy's own Digest challenge in 401 answers,
// records what a reader's SETUP was granted and completes its PLAY
// answer's RTP-Info (see readerSession).
func (h *handler) OnResponse(sc *gortsplib.ServerConn, res *base.Response) {
	// Whatever the answer, gortsplib is done with the request: a SETUP's
	// gate goes back.
	h.setups.release(sc)
	if res.StatusCode == base.StatusUnauthorized {
		// The proxy's own Digest challenge (qop, replay protection).
		for i, v := range res.Header["WWW-Authenticate"] {
			if strings.HasPrefix(v, "Digest ") {
				res.Header["WWW-Authenticate"][i] = h.digestOf(sc).challenge()
			}
		}
	}
	_, setup := res.Header["Transport"] // only SETUP answers carry one
	_, play := res.Header["RTP-Info"]   // only PLAY answers carry one
	if !setup && !play {
		return
	}
	if ss := sc.Session(); ss != nil {
		if rs, ok := ss.UserData().(*readerSession); ok {
			if setup {
				rs.setupAnswered(res)
			} else {
				rs.playAnswered(res)
			}
		}
	}
}

// OnPlay starts delivery (from the cached keyframe) unless max_readers is reached.
func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	rs, ok := ctx.Session.UserData().(*readerSession)
	if !ok {
		return status(base.StatusBadRequest), nil
	}
	r, fresh := rs.r, rs.r.out == nil
	if fresh {
		r.out = rs.output(ctx.Conn, h.p, &h.udp)
		r.transport = readerTransport(ctx.Session.Transport(), h.secure)
	}
	err := rs.cam.addReader(r, rs.stream)
	if bo, ok := r.out.(*batchOutput); ok && fresh {
		if err != nil {
			bo.stop()
			r.out = nil
		} else {
			go func() {
				defer rs.cam.recoverReader(r)
				bo.w.run()
			}()
		}
	}
	switch {
	case errors.Is(err, errTooManyReaders):
		h.p.refusedFull.Add(1)
		h.p.log.Warn("reader refused: camera has reached max_readers", "camera", rs.cam.cfg.Name, "user", r.user, "remote", r.remote,
			"max_readers", rs.cam.cfg.MaxReaders)
		return status(base.StatusServiceUnavailable), nil
	case err != nil:
		return status(base.StatusServiceUnavailable), nil
	}
	if fresh {
		rs.starts = rs.cam.stream.rtpInfo(r, ctx.Session.Medias())
	}
	h.p.log.Info("reader attached", "camera", rs.cam.cfg.Name, "user", r.user, "remote", r.remote,
		"transport", ctx.Session.Transport().Protocol.String(), "secure", h.secure)
	return status(base.StatusOK), nil
}

// OnSessionClose detaches the reader.
func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	rs, ok := ctx.Session.UserData().(*readerSession)
	if !ok {
		return
	}
	r := rs.r
	rs.cam.removeReader(r)
	h.p.log.Info("reader detached", "camera", rs.cam.cfg.Name, "user", r.user, "remote", r.remote,
		"bytes", r.bytes.Load(), "dropped_packets", r.dropped.Load(), "skipped_packets", r.skipped.Load(),
		"reported_lost_packets", r.lost(), "reason", errString(ctx.Error))
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

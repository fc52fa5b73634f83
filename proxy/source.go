package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// healthySession is how long a session must deliver media before its end
// resets the reconnect backoff: packets must arrive both within it after
// PLAY and after it. A camera that accepts PLAY and then closes, or sends a
// few packets and stalls, is retried with a growing delay, not at 1 Hz.
const healthySession = 10 * time.Second

// source pulls one camera over RTSP: it dials (bound to the camera side,
// through the redirect guard, TLS pinned), runs DESCRIBE/SETUP/PLAY and
// hands the media description and every packet that arrives to its stream
// (streamInput). It measures what arrives (bytes, packets, loss, jitter,
// bitrate) and knows nothing about readers. The camera runs its sessions in
// retryLoop (backoff.go), with the lockout-safe wait after a refusal of the
// credentials (camera_auth.go).
type source struct {
	cfg      Camera
	tmo      Timeouts
	bind     string        // camera-side local address; "" for any
	coalesce time.Duration // camera_side.read_coalesce (for the tap's connections)
	log      *slog.Logger
	counters *rebuild.Counters // the camera's drop counters (sdp_media here)
	stream   streamInput
	parent   sourceParent

	dial       func(ctx context.Context, network, address string) (net.Conn, error) // test hook; nil: a net.Dialer
	packetHook func(pkt *rtp.Packet)                                                // test hook; nil: none
	noTap      bool                                                                 // test hook: no camera tap

	bytesIn, packetsIn, lost, decodeErrors atomic.Uint64
	tapped                                 atomic.Uint64                   // packets the camera tap took (of packetsIn)
	jitterBits                             atomic.Uint64                   // float64 bits, of the first track
	bitrate                                atomic.Uint64                   // bit/s, from sampleBitrate
	sdpWarned, tlsWarned                   atomic.Bool                     // logged once per camera
	lastBytes                              uint64                          // sampleBitrate only
	lastSample                             time.Time                       // sampleBitrate only
	jitter                                 map[*rebuild.Track]*jitterState // session goroutine only

	mu    sync.Mutex
	abort func(error) // ends the current session; nil between sessions

	tap atomic.Pointer[cameraTap] // of the session's last plain-RTSP connection (camera_tap.go)
}

// sourceParent is what a source reports to (the camera).
type sourceParent interface {
	// setState records the camera's state; errMsg, when not empty, is
	// its last error.
	setState(state, errMsg string)
	// contained counts and logs a recovered panic and marks the stream's
	// cleaner state as not to be reused.
	contained(where string, v any) *panicError
}

// safeSession is session with any panic contained: it becomes the
// session's error.
func (s *source) safeSession(ctx context.Context) (played bool, err error) {
	defer s.recoverSession("camera session", &played, &err)
	return s.session(ctx)
}

// session runs one camera session until it fails or ctx is done. It
// reports whether the session was healthy (see healthySession); a refusal
// of the credentials is an *authError.
func (s *source) session(ctx context.Context) (healthy bool, err error) {
	defer func() { err = asAuthError(err) }()
	s.parent.setState(stateConnecting, "")
	u, err := base.ParseURL(s.cfg.URL.reveal())
	if err != nil {
		return false, errors.New("camera url cannot be parsed")
	}
	cl, guard, capture := s.client(u)
	if err := cl.Start(); err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer cl.Close()
	unwatch := context.AfterFunc(ctx, cl.Close)
	defer unwatch()

	desc, err := s.describe(cl, u, guard, capture)
	if err != nil {
		return false, err
	}
	plan, err := s.stream.bind(desc)
	if err != nil {
		return false, err
	}
	refused := s.armAbort(cl)
	defer s.disarmAbort()
	if err := s.setupPlay(cl, desc, plan); err != nil {
		return false, err
	}
	healthy, werr := s.wait(cl)
	select {
	case err := <-refused:
		// A refused stream did not work: the backoff goes on growing.
		return false, fmt.Errorf("stream refused: %w", err)
	default:
		return healthy, werr
	}
}

// client returns the RTSP client of one session towards u, with its
// redirect guard and the capture of its SDP (for the lenient path).
func (s *source) client(u *base.URL) (*gortsplib.Client, *redirectGuard, *sdpCapture) {
	cl := &gortsplib.Client{
		Scheme:        u.Scheme,
		Host:          u.Host,
		ReadTimeout:   s.tmo.Camera,
		WriteTimeout:  s.tmo.Camera,
		UserAgent:     "cordon",
		OnPacketsLost: func(n uint64) { s.lost.Add(n) },
		OnDecodeError: s.decodeError,
	}
	switch s.cfg.Transport {
	case TransportTCP:
		v := gortsplib.ProtocolTCP
		cl.Protocol = &v
	case TransportUDP:
		v := gortsplib.ProtocolUDP
		cl.Protocol = &v
	}
	if u.Scheme == "rtsps" {
		cl.TLSConfig = s.tlsConfig()
	}
	guard := newRedirectGuard(u)
	cl.DialContext = s.dialer(guard, u.Scheme == "rtsp" && !s.noTap)
	if s.bind != "" {
		cl.ListenPacket = func(network, address string) (net.PacketConn, error) {
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.ListenPacket(network, net.JoinHostPort(s.bind, port))
		}
	}
	capture := &sdpCapture{}
	cl.OnResponse = func(res *base.Response) {
		capture.onResponse(res)
		guard.onResponse(res)
		if dropTransportSource(res) {
			s.log.Debug("camera named a UDP source address in its SETUP answer; ignored (UDP stays with the camera's address)")
		}
	}
	return cl, guard, capture
}

// decodeError counts a camera packet that could not be decoded.
func (s *source) decodeError(err error) {
	if s.decodeErrors.Add(1)%1000 == 1 {
		s.log.Debug("camera sent a packet that could not be decoded", "error", redactError(err, s.cfg.URL))
	}
}

// dialer dials the camera from the camera-side address, each dial checked
// by guard first. With tap (plain RTSP, not TLS), each connection gets a
// camera tap, kept in s.tap.
func (s *source) dialer(guard *redirectGuard, tap bool) func(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{}
	if s.bind != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(s.bind)}
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if err := guard.check(address); err != nil {
			return nil, err // before any byte: no credentials to another host
		}
		dial := d.DialContext
		if s.dial != nil {
			dial = s.dial
		}
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		c := newReadAheadConn(conn)
		if rc, ok := c.(*readAheadConn); ok && tap {
			rc.tap = &cameraTap{onError: s.decodeError}
			rc.coalesce = s.coalesce
			rc.onMoveError = func(err error) {
				s.log.Warn("camera socket left with Go's netpoller: camera_side.read_coalesce not applied to this connection", "error", err)
			}
			s.tap.Store(rc.tap)
		}
		return c, nil
	}
}

// describe asks the camera for its media, keeping the sections that parse
// when some do not (lenient path).
func (s *source) describe(cl *gortsplib.Client, u *base.URL, guard *redirectGuard, capture *sdpCapture) (*description.Session, error) {
	desc, _, err := cl.Describe(u)
	if loc, rerr := guard.refusal(); rerr != nil {
		s.log.Error("camera redirect refused; check the camera's url", "error", rerr, "location", loc)
		return nil, rerr
	}
	var sdpErr liberrors.ErrClientSDPInvalid
	if errors.As(err, &sdpErr) && cl.Protocol != nil && u.Scheme == "rtsp" {
		// Lenient path: keep the media sections that parse. (Not with
		// transport auto or RTSPS, where gortsplib needs its own DESCRIBE
		// state to switch transports or set up SRTP.)
		d, dropped, lerr := lenientDescription(capture.body)
		if lerr != nil {
			return nil, fmt.Errorf("DESCRIBE: %w; %v", err, lerr)
		}
		d.BaseURL = baseURL(d, capture.contentBase, u)
		if s.sdpWarned.CompareAndSwap(false, true) {
			s.log.Warn("camera SDP has media sections that cannot be parsed; reading the others",
				"dropped_sections", dropped, "error", redactError(sdpErr.Err, s.cfg.URL))
		}
		for range dropped {
			s.counters.Drop("sdp_media", 0)
		}
		desc, err = d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("DESCRIBE: %w", err)
	}
	return desc, nil
}

// setupPlay sets up every track of plan, routes its packets to onPacket
// and starts playing.
func (s *source) setupPlay(cl *gortsplib.Client, desc *description.Session, plan *rebuild.Plan) error {
	jitter := s.jitterFor(plan)
	tap := s.tap.Swap(nil)
	for i, t := range plan.Tracks {
		res, err := cl.Setup(desc.BaseURL, t.CameraMedia(), 0, 0)
		if err != nil {
			return fmt.Errorf("SETUP: %w", err)
		}
		js := jitter[t]
		first := i == 0
		cl.OnPacketRTP(t.CameraMedia(), t.CameraFormat(), func(pkt *rtp.Packet) { s.onPacket(t, js, first, pkt, time.Now()) })
		ch, ok := interleavedRTPChannel(res)
		if ok && tap != nil {
			tap.add(ch, t.CameraFormat().PayloadType(), func(pkt *rtp.Packet, arrival time.Time) {
				s.tapped.Add(1)
				s.onPacket(t, js, first, pkt, arrival)
			}, func(n uint64) { s.lost.Add(n) }, t.HoldsInput)
		}
	}
	if _, err := cl.Play(nil); err != nil {
		return fmt.Errorf("PLAY: %w", err)
	}
	if tap != nil {
		tap.arm()
	}
	s.parent.setState(stateUp, "")
	// (gortsplib's Client.Stats and Transport are not safe while the client
	// closes itself, so nothing here reads them after PLAY.)
	s.log.Info("camera playing", "tracks", len(plan.Tracks), "transport", s.cfg.Transport)
	return nil
}

// jitterFor returns the jitter state of each track of plan: kept from the
// last session while the plan is the same (without its last arrival: the
// outage is not jitter), new for a new plan. Each track's packets arrive on
// one goroutine at a time and the last session's client is closed, so the
// states need no lock.
func (s *source) jitterFor(plan *rebuild.Plan) map[*rebuild.Track]*jitterState {
	jitter := make(map[*rebuild.Track]*jitterState, len(plan.Tracks))
	for _, t := range plan.Tracks {
		js := s.jitter[t]
		if js == nil {
			js = &jitterState{clock: float64(t.CameraFormat().ClockRate())}
		}
		js.ok = false
		jitter[t] = js
	}
	s.jitter = jitter
	return jitter
}

// wait waits for the playing session to end and reports whether it was
// healthy (see healthySession).
func (s *source) wait(cl *gortsplib.Client) (healthy bool, err error) {
	atPlay := s.packetsIn.Load()
	var atMark atomic.Uint64 // packetsIn at healthySession after PLAY, plus one (0: not yet)
	mark := time.AfterFunc(healthySession, func() { atMark.Store(s.packetsIn.Load() + 1) })
	err = cl.Wait()
	mark.Stop()
	m := atMark.Load()
	return m > 0 && m-1 > atPlay && s.packetsIn.Load() > m-1, err
}

// armAbort lets abortSession end this session: the returned channel gets
// the reason.
func (s *source) armAbort(cl *gortsplib.Client) <-chan error {
	refused := make(chan error, 1)
	s.mu.Lock()
	s.abort = func(err error) {
		select {
		case refused <- err:
		default:
		}
		go cl.Close() // not from the packet callback itself: Close waits for it
	}
	s.mu.Unlock()
	return refused
}

func (s *source) disarmAbort() {
	s.mu.Lock()
	s.abort = nil
	s.mu.Unlock()
}

// onPacket hands one camera packet, read at arrival, to the stream and
// measures its arrival.
func (s *source) onPacket(t *rebuild.Track, js *jitterState, first bool, pkt *rtp.Packet, arrival time.Time) {
	defer s.recoverPacket()
	if s.packetHook != nil {
		s.packetHook(pkt)
	}
	s.packetsIn.Add(1)
	s.bytesIn.Add(uint64(pkt.MarshalSize()))
	ts := pkt.Timestamp // (the cleaner may rewrite pkt)
	if err := s.stream.packet(t, pkt, arrival); errors.Is(err, rebuild.ErrInvalidParameters) {
		s.refuse(err)
		return
	}
	js.update(arrival, ts)
	if first {
		s.jitterBits.Store(math.Float64bits(js.j))
	}
}

// refuse ends the camera session because the camera sent parameter sets
// (SPS/PPS/VPS) that fail validation in-band: nothing from such a stream
// reaches a recorder's decoder. The camera is retried with backoff, readers
// stay attached, and other cameras are not affected.
func (s *source) refuse(err error) {
	// (the cleaner counted the dropped unit under "invalid_sps")
	s.abortSession(err, "camera stream refused: it sent invalid parameter sets; retrying with backoff")
}

// abortSession ends the current session with err, logged once with msg.
func (s *source) abortSession(err error, msg string) {
	s.mu.Lock()
	abort := s.abort
	s.abort = nil
	s.mu.Unlock()
	if abort == nil {
		return // already refused; the session is closing
	}
	s.log.Error(msg, "error", err)
	abort(err)
}

// tlsConfig is the TLS configuration towards an rtsps:// camera. Cameras
// ship self-signed certificates, so there is no chain to verify: with
// tls_fingerprint the leaf certificate must match the pin; without, the
// connection is encrypted (no passive capture on the camera network) but
// the camera is not authenticated, and the fingerprint seen is logged once
// so that an administrator can pin it.
func (s *source) tlsConfig() *tls.Config {
	var pin *[sha256.Size]byte
	if s.cfg.TLSFingerprint != "" {
		fp, err := parseFingerprint(s.cfg.TLSFingerprint) // validated at start
		if err == nil {
			pin = &fp
		}
	}
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified below, by pin
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("camera sent no TLS certificate")
			}
			seen := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if pin == nil {
				if s.tlsWarned.CompareAndSwap(false, true) {
					s.log.Warn("camera TLS certificate not verified; pin it with tls_fingerprint",
						"fingerprint", formatFingerprint(seen), "subject", cs.PeerCertificates[0].Subject.String())
				}
				return nil
			}
			if subtle.ConstantTimeCompare(seen[:], pin[:]) != 1 {
				return fmt.Errorf("camera TLS certificate %s does not match tls_fingerprint %s (another device, or the camera's certificate changed)",
					formatFingerprint(seen), formatFingerprint(*pin))
			}
			return nil
		},
	}
}

// formatFingerprint writes a SHA-256 fingerprint as openssl does.
func formatFingerprint(fp [sha256.Size]byte) string {
	var b strings.Builder
	b.WriteString("sha256:")
	for i, x := range fp {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// jitterState is the RFC 3550 interarrival jitter of one camera track, in
// RTP clock units.
type jitterState struct {
	clock       float64
	lastArrival time.Time
	lastTS      uint32
	j           float64
	ok          bool
}

func (js *jitterState) update(now time.Time, ts uint32) {
	if js.ok {
		d := now.Sub(js.lastArrival).Seconds()*js.clock - float64(int32(ts-js.lastTS))
		js.j += (math.Abs(d) - js.j) / 16
	}
	js.lastArrival, js.lastTS, js.ok = now, ts, true
}

// sampleBitrate updates the incoming bitrate (once a second, from Proxy.tick).
func (s *source) sampleBitrate(now time.Time) {
	b := s.bytesIn.Load()
	if !s.lastSample.IsZero() {
		if dt := now.Sub(s.lastSample).Seconds(); dt > 0 {
			s.bitrate.Store(uint64(float64(b-s.lastBytes) * 8 / dt))
		}
	}
	s.lastBytes, s.lastSample = b, now
}

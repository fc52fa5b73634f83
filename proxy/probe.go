package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// ProbeOptions bound Probe.
type ProbeOptions struct {
	// Timeout bounds each camera's probe. It defaults to timeouts.camera
	// (10 s).
	Timeout time.Duration
	// Concurrency is how many cameras are probed at once. It defaults to 16.
	Concurrency int
	// Logger receives what the probe notices (an unpinned RTSPS
	// certificate). It defaults to discarding it.
	Logger *slog.Logger
}

// ProbeResult is what Probe learned about one camera.
type ProbeResult struct {
	Camera string
	// Reachable: a connection to the camera's address was made (from
	// camera_side.bind when set).
	Reachable bool
	// AuthOK: DESCRIBE succeeded with the URL's credentials.
	AuthOK bool
	// Codecs are the camera's formats by their RTP encoding names, like
	// "H264", "H265" or "mpeg4-generic".
	Codecs []string
	// Width and Height of the first video track, from the SPS in its SDP
	// (sprop-parameter-sets); 0 when the SDP does not carry it.
	Width, Height int
	// Err says why the probe failed; empty when it did not. Camera
	// credentials are redacted.
	Err string
}

// OK reports whether the camera answered DESCRIBE with a usable SDP.
func (r ProbeResult) OK() bool { return r.Reachable && r.AuthOK && r.Err == "" }

// Probe connects to every camera of cfg as the proxy would (from
// camera_side.bind, over its transport's TLS when rtsps://) and sends
// OPTIONS and DESCRIBE with the camera's credentials. It sets nothing up
// and plays nothing. Results are in cfg.Cameras' order.
func Probe(ctx context.Context, cfg Config, o ProbeOptions) []ProbeResult {
	if o.Timeout <= 0 {
		o.Timeout = cfg.Timeouts.Camera
		if o.Timeout <= 0 {
			o.Timeout = 10 * time.Second
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	res := make([]ProbeResult, len(cfg.Cameras))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i, cam := range cfg.Cameras {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res[i] = ProbeResult{Camera: cam.Name, Err: ctx.Err().Error()}
				return
			}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			res[i] = probeCamera(cctx, cam, cfg.CameraSide.Bind, o.Timeout, o.Logger)
		})
	}
	wg.Wait()
	return res
}

func probeCamera(ctx context.Context, cam Camera, bind string, timeout time.Duration, log *slog.Logger) ProbeResult {
	r := ProbeResult{Camera: cam.Name}
	fail := func(format string, err error) ProbeResult {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s (%w)", timeout, err)
		}
		r.Err = redactError(fmt.Errorf(format, err), cam.URL)
		return r
	}
	u, err := base.ParseURL(cam.URL.reveal())
	if err != nil {
		r.Err = "camera url cannot be parsed"
		return r
	}
	var dialed atomic.Bool
	cl := probeClient(u, cam, bind, timeout, &dialed, log)
	capture := &sdpCapture{}
	cl.OnResponse = capture.onResponse
	if err := cl.Start(); err != nil {
		return fail("connect: %w", err)
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, cl.Close)
	defer stop()

	_, err = cl.Options(u)
	r.Reachable = dialed.Load()
	var bad liberrors.ErrClientBadStatusCode
	switch {
	case errors.As(err, &bad) && bad.Code == base.StatusUnauthorized:
		return fail("OPTIONS: %w", probeAuthError(u))
	case errors.As(err, &bad):
		// OPTIONS is optional for cameras; DESCRIBE decides.
	case err != nil:
		return fail("OPTIONS: %w", err)
	}
	desc, _, err := cl.Describe(u)
	r.Reachable = dialed.Load()
	var sdpErr liberrors.ErrClientSDPInvalid
	switch {
	case errors.As(err, &bad) && bad.Code == base.StatusUnauthorized:
		return fail("DESCRIBE: %w", probeAuthError(u))
	case errors.As(err, &sdpErr):
		// Read the media sections that parse, as the proxy would.
		d, dropped, lerr := lenientDescription(capture.body)
		if lerr != nil {
			r.AuthOK = true
			return fail("DESCRIBE: %w", err)
		}
		desc = d
		r.Codecs = append(r.Codecs, fmt.Sprintf("(%d unparsable)", dropped))
	case err != nil:
		return fail("DESCRIBE: %w", err)
	}
	r.AuthOK = true
	r.Codecs = append(describeCodecs(desc), r.Codecs...)
	r.Width, r.Height = videoSize(desc)
	if len(desc.Medias) == 0 {
		r.Err = "DESCRIBE: the camera's SDP has no media"
	}
	return r
}

// probeClient is the RTSP client of a probe; dialed records a connection.
func probeClient(u *base.URL, cam Camera, bind string, timeout time.Duration, dialed *atomic.Bool, log *slog.Logger) *gortsplib.Client {
	cl := &gortsplib.Client{
		Scheme:       u.Scheme,
		Host:         u.Host,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		UserAgent:    "cordon",
	}
	if u.Scheme == "rtsps" {
		// The pin check of the proxy's own camera client.
		cl.TLSConfig = (&source{cfg: cam, log: log.With("camera", cam.Name)}).tlsConfig()
	}
	d := &net.Dialer{}
	if bind != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(bind)}
	}
	cl.DialContext = func(dctx context.Context, network, address string) (net.Conn, error) {
		conn, err := d.DialContext(dctx, network, address)
		if err == nil {
			dialed.Store(true)
		}
		return conn, err
	}
	return cl
}

// probeAuthError says what a 401 means for this URL.
func probeAuthError(u *base.URL) error {
	if u.User == nil {
		return errors.New("401 Unauthorized: the camera wants credentials; put them in the url (rtsp://user:password@camera/...)")
	}
	return errors.New("401 Unauthorized: the camera refused the url's user and password")
}

func describeCodecs(desc *description.Session) []string {
	var out []string
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			// The encoding name of the rtpmap ("H264/90000" → "H264").
			name, _, _ := strings.Cut(f.RTPMap(), "/")
			if name == "" {
				name = fmt.Sprintf("payload type %d", f.PayloadType())
			}
			out = append(out, name)
		}
	}
	return out
}

// videoSize reads the first video track's resolution from the SPS in the SDP.
func videoSize(desc *description.Session) (int, int) {
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			switch f := f.(type) {
			case *format.H264:
				var s h264.SPS
				if len(f.SPS) > 0 && s.Unmarshal(f.SPS) == nil {
					return s.Width(), s.Height()
				}
			case *format.H265:
				var s h265.SPS
				if len(f.SPS) > 0 && s.Unmarshal(f.SPS) == nil {
					return s.Width(), s.Height()
				}
			}
		}
	}
	return 0, 0
}

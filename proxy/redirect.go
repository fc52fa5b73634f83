package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
)

// Redirect policy towards cameras.
//
// gortsplib's Client follows a redirect (301-305 with a Location) to
// DESCRIBE by calling itself again with the new URL, the camera's user and
// password copied into it, and without bound. Followed blindly, a camera
// (or whoever answers on its address) can send the proxy, with the
// camera's credentials, to any host, whose stream readers then get; and a
// camera that redirects to itself is followed until the stack overflows.
//
// Each redirect needs a new connection, and every connection is dialled
// through the session's redirectGuard before any byte is sent: only the
// host:port written in the camera's url is dialled (so credentials never
// leave for another host), and at most maxRedirects redirects are followed
// per session; then the session fails and the camera backs off as after
// any failure.

// maxRedirects is how many same-host redirects one camera session follows.
const maxRedirects = 5

// errTooManyRedirects ends a session whose camera keeps redirecting.
var errTooManyRedirects = fmt.Errorf("camera redirected more than %d times; refused", maxRedirects)

// redirectError is a redirect to another host, refused. Target is the
// host:port the camera named (never credentials, path or query).
type redirectError struct{ target string }

func (e *redirectError) Error() string {
	return "camera redirected to another host (" + e.target + "); refused: credentials are only sent to the camera's own address"
}

// redirectGuard watches one camera session's responses and dials.
type redirectGuard struct {
	addr string // the camera's host:port, as gortsplib dials it

	mu        sync.Mutex
	redirects int
	location  string // the last Location, without credentials or query
	err       error  // why a dial was refused
}

// newRedirectGuard keeps a session on the host:port of u.
func newRedirectGuard(u *base.URL) *redirectGuard {
	return &redirectGuard{addr: dialAddr(u.Scheme, u.Host)}
}

// dialAddr is the address gortsplib dials for scheme and host: the host with
// the scheme's default port when it has none.
func dialAddr(scheme, host string) string {
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = strings.Trim(host, "[]"), "554"
		if scheme == "rtsps" {
			port = "322"
		}
	}
	return net.JoinHostPort(h, port)
}

// onResponse counts redirects (gortsplib calls it before following one).
func (g *redirectGuard) onResponse(res *base.Response) {
	if res.StatusCode < base.StatusMovedPermanently || res.StatusCode > base.StatusUseProxy {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.redirects++
	g.location = ""
	if loc := res.Header["Location"]; len(loc) == 1 {
		if u, err := base.ParseURL(loc[0]); err == nil {
			g.location = (&base.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
		}
	}
}

// check is called before each dial of the session; a non-nil error refuses
// it (and is kept for refusal).
func (g *redirectGuard) check(address string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !strings.EqualFold(address, g.addr):
		g.err = &redirectError{target: address}
	case g.redirects > maxRedirects:
		g.err = errTooManyRedirects
	default:
		return nil
	}
	return g.err
}

// refusal returns the last redirect's location (without credentials or
// query) and why the guard refused a dial of this session, if it did.
func (g *redirectGuard) refusal() (location string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.location, g.err
}

// dropTransportSource removes the source parameter from the Transport
// header of a camera's SETUP answer, in place, before gortsplib reads it.
// With it gortsplib sends UDP (the firewall-opening packets before PLAY,
// then RTCP receiver reports) to that address and accepts RTP only from
// it, so a camera could point the proxy's UDP at any host. Without it, UDP
// goes to and is accepted from the address the RTSP connection was made to,
// which redirectGuard keeps to the camera's. It reports whether it dropped
// one.
func dropTransportSource(res *base.Response) bool {
	v, ok := res.Header["Transport"]
	if !ok {
		return false
	}
	var th headers.Transport
	if th.Unmarshal(v) != nil || th.Source2 == nil {
		return false // (a header gortsplib cannot parse fails the SETUP anyway)
	}
	th.Source2 = nil
	res.Header["Transport"] = th.Marshal()
	return true
}

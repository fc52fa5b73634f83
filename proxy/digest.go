package proxy

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
)

// Digest authentication with replay protection.
//
// gortsplib gives each connection one nonce for its lifetime and checks the
// RFC 2069 response only, so the same Authorization header was accepted
// again and again on a connection. The proxy answers Digest itself:
//
//   - Its challenge offers qop="auth". A client that uses it (ffmpeg does)
//     sends a nonce count (nc) with each request; a (nonce, nc) pair is
//     accepted once, and nc must grow.
//   - A client that answers without qop (RFC 2069: gortsplib's client,
//     live555/VLC) cannot be given a fresh nonce per request (those
//     clients retry a 401 once per connection, not per request), so its
//     response is accepted once per connection for each request kind that
//     grants access: DESCRIBE, and SETUP with a given Transport header (VLC
//     sends every SETUP to the same URL, with different transports).
//     Requests that need no credentials (the session's own PLAY, keep-alive
//     GET_PARAMETER, OPTIONS) are not checked, and a session only answers
//     the connection that created it.

// digestRealm is gortsplib's realm, kept so that clients see one realm.
const digestRealm = "ipcam"

// maxDigestUses bounds the responses remembered per connection; a
// connection that needs more is refused (401).
const maxDigestUses = 256

// digestState is one connection's Digest nonce and the responses it took.
type digestState struct {
	mu     sync.Mutex
	nonce  string
	lastNC uint64              // highest nc accepted (qop=auth)
	used   map[string]struct{} // RFC 2069 responses accepted, with the request kind
}

func (d *digestState) nonceValue() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nonce == "" {
		var b [16]byte
		rand.Read(b[:])
		d.nonce = hex.EncodeToString(b[:])
	}
	return d.nonce
}

// challenge is the Digest WWW-Authenticate value of this connection.
func (d *digestState) challenge() string {
	return `Digest realm="` + digestRealm + `", nonce="` + d.nonceValue() + `", algorithm="MD5", qop="auth"`
}

// digestCreds is a parsed Digest Authorization header.
type digestCreds struct {
	username, realm, nonce, uri, response, algorithm string
	qop, nc, cnonce                                  string
}

var errDigestSyntax = errors.New("proxy: malformed Digest Authorization header")

// parseDigest reads the parameters of a Digest Authorization value.
func parseDigest(v string) (digestCreds, error) {
	var c digestCreds
	rest, ok := strings.CutPrefix(v, "Digest ")
	if !ok || len(v) > 4096 {
		return c, errDigestSyntax
	}
	seen := map[string]bool{}
	for {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, errDigestSyntax
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return c, errDigestSyntax
			}
			val, rest = rest[1:1+end], rest[2+end:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		if seen[key] {
			return c, errDigestSyntax
		}
		seen[key] = true
		switch key {
		case "username":
			c.username = val
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "uri":
			c.uri = val
		case "response":
			c.response = val
		case "algorithm":
			c.algorithm = val
		case "qop":
			c.qop = val
		case "nc":
			c.nc = val
		case "cnonce":
			c.cnonce = val
		}
	}
	if c.username == "" || c.nonce == "" || c.uri == "" || c.response == "" {
		return c, errDigestSyntax
	}
	return c, nil
}

func md5Hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// digestURIMatches accepts the request URL, its path (RFC 2617 allows
// either; Bosch BVMS sends the path) and, for SETUP, the stream URL a track
// URL belongs to (VLC and HappyTime send that).
func digestURIMatches(u *base.URL, got string, setup bool) bool {
	if got == u.String() || (strings.HasPrefix(got, "/") && got == u.RequestURI()) {
		return true
	}
	if setup {
		s := u.String()
		if i := strings.LastIndex(s, "/trackID="); i >= 0 {
			base := s[:i+1]
			return got == base || got+"/" == base
		}
	}
	return false
}

var (
	errDigestStale  = errors.New("proxy: Digest nonce is not this connection's")
	errDigestReplay = errors.New("proxy: Digest response replayed")
	errDigestWrong  = errors.New("proxy: Digest response does not match")
	errDigestParams = errors.New("proxy: Digest realm, algorithm, qop or URI does not match the request")
)

// digestHA1 is RFC 2617's HA1 of user and password in this proxy's realm:
// hex(md5(user ":" realm ":" password)).
func digestHA1(user, pass string) string { return md5Hex(user + ":" + digestRealm + ":" + pass) }

// verify checks a Digest Authorization for user's clear-text password and
// records it, so that the same (nonce, nc) pair — or, without qop, the
// same response for the same kind of request — is not accepted again.
func (d *digestState) verify(req *base.Request, c digestCreds, user, pass string) error {
	return d.verifyHA1(req, c, user, digestHA1(user, pass))
}

// verifyHA1 is verify for a stored HA1 (lower-case hex) instead of the
// password.
func (d *digestState) verifyHA1(req *base.Request, c digestCreds, user, ha1 string) error {
	nonce := d.nonceValue()
	if c.nonce != nonce {
		return errDigestStale
	}
	if c.username != user || c.realm != digestRealm ||
		(c.algorithm != "" && !strings.EqualFold(c.algorithm, "MD5")) ||
		!digestURIMatches(req.URL, c.uri, req.Method == base.Setup) {
		return errDigestParams
	}
	ha2 := md5Hex(string(req.Method) + ":" + c.uri)
	var want string
	var nc uint64
	switch c.qop {
	case "":
		want = md5Hex(ha1 + ":" + nonce + ":" + ha2)
	case "auth":
		var err error
		nc, err = strconv.ParseUint(c.nc, 16, 32)
		if err != nil || len(c.nc) != 8 || c.cnonce == "" {
			return errDigestParams
		}
		want = md5Hex(ha1 + ":" + nonce + ":" + c.nc + ":" + c.cnonce + ":auth:" + ha2)
	default:
		return errDigestParams
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(c.response)), []byte(want)) != 1 {
		return errDigestWrong
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.qop == "auth" {
		if nc <= d.lastNC {
			return errDigestReplay
		}
		d.lastNC = nc
		return nil
	}
	key := string(req.Method) + "\x00" + strings.Join(req.Header["Transport"], ",") + "\x00" + c.response
	if _, ok := d.used[key]; ok {
		return errDigestReplay
	}
	if len(d.used) >= maxDigestUses {
		return errDigestReplay
	}
	if d.used == nil {
		d.used = map[string]struct{}{}
	}
	d.used[key] = struct{}{}
	return nil
}

package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
)

// Actions on the admin listener (start a preview, reconnect a camera) are
// POST or DELETE with a CSRF token. The console's pages set a session
// cookie (SameSite=Strict, HttpOnly) and carry the token for that session
// and admin account in <meta name="csrf-token">; console.js sends it in
// the X-CSRF-Token header. The token is an HMAC of the session and the
// account under a key made at start, so a page of another site can
// neither read it nor have the browser send it; a request whose Origin
// is another site is refused as well. GET and HEAD change nothing.

const (
	consoleCookie = "cordon_console"
	csrfHeader    = "X-CSRF-Token"
)

var (
	errCSRFMissing = errors.New("admin: the console session cookie or the X-CSRF-Token header is missing (reload the console page)")
	errCSRFBad     = errors.New("admin: the CSRF token does not match this console session (reload the console page)")
	errCSRFOrigin  = errors.New("admin: request from another origin")
)

// csrfKey signs console sessions' CSRF tokens.
type csrfKey [32]byte

func newCSRFKey() *csrfKey {
	var k csrfKey
	rand.Read(k[:])
	return &k
}

// token is the CSRF token of a console session for an admin account.
func (k *csrfKey) token(session, user string) string {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("cordon console csrf\x00" + session + "\x00" + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// consoleSession returns r's console session, setting a new session
// cookie on w when r has none.
func consoleSession(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(consoleCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	var b [16]byte
	rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: s, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	return s
}

// check verifies an action's CSRF token and origin.
func (k *csrfKey) check(r *http.Request, user string) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errCSRFOrigin
		}
	}
	c, err := r.Cookie(consoleCookie)
	tok := r.Header.Get(csrfHeader)
	if err != nil || tok == "" {
		return errCSRFMissing
	}
	if !hmac.Equal([]byte(tok), []byte(k.token(c.Value, user))) {
		return errCSRFBad
	}
	return nil
}

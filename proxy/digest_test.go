package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
)

// digestChallenge sends an unauthenticated DESCRIBE and returns the nonce
// of the Digest challenge (which must offer qop=auth).
func (rc *rtspConn) digestChallenge(url string) string {
	rc.t.Helper()
	res, err := rc.do(base.Describe, url, nil)
	if err != nil || res.StatusCode != base.StatusUnauthorized {
		rc.t.Fatalf("unauthenticated DESCRIBE: %v %v", res, err)
	}
	for _, v := range res.Header["WWW-Authenticate"] {
		if strings.HasPrefix(v, "Digest ") {
			if !strings.Contains(v, `qop="auth"`) {
				rc.t.Errorf("challenge %q does not offer qop=auth", v)
			}
			var a headers.Authenticate
			if err := a.Unmarshal(base.HeaderValue{v}); err != nil {
				rc.t.Fatal(err)
			}
			return a.Nonce
		}
	}
	rc.t.Fatalf("no Digest challenge in %v", res.Header)
	return ""
}

// digestAuth is a Digest Authorization value; nc "" means RFC 2069 (no qop).
func digestAuth(method base.Method, uri, user, pass, nonce, nc string) base.HeaderValue {
	ha1 := md5Hex(user + ":" + digestRealm + ":" + pass)
	ha2 := md5Hex(string(method) + ":" + uri)
	if nc == "" {
		return base.HeaderValue{fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s"`,
			user, digestRealm, nonce, uri, md5Hex(ha1+":"+nonce+":"+ha2))}
	}
	const cnonce = "0a4f113b"
	return base.HeaderValue{fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", qop=auth, nc=%s, cnonce="%s", response="%s", algorithm=MD5`,
		user, digestRealm, nonce, uri, nc, cnonce, md5Hex(ha1+":"+nonce+":"+nc+":"+cnonce+":auth:"+ha2))}
}

// A Digest response replayed on its connection is refused: with qop=auth a
// (nonce, nc) pair is accepted once and nc must grow; without qop, the
// response of a DESCRIBE (or of a SETUP with the same transport) is
// accepted once per connection.
func TestDigestReplayRefused(t *testing.T) {
	sim := startCamsim(t, "a")
	log, _ := newLog(t)
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL(sim.URL("a"))})
	cfg.Readers = []Reader{{User: "nvr", Password: "good", Cameras: []string{"*"}}}
	cfg.AllowAnonymous = false
	p := startProxy(t, cfg, log)
	p.sleep = func(time.Duration) {}
	url := readerURL(p, "a")
	addr := p.RTSPAddr().String()
	waitFor(t, "camera up", 10*time.Second, func() bool { return p.Status()[0].State == stateUp })
	describe := func(rc *rtspConn, auth base.HeaderValue) base.StatusCode {
		return rc.status(base.Describe, url, base.Header{"Authorization": auth})
	}

	// qop=auth, as ffmpeg answers.
	rc := dialRTSP(t, addr)
	nonce := rc.digestChallenge(url)
	for i, step := range []struct {
		nc   string
		want base.StatusCode
	}{{"00000001", 200}, {"00000002", 200}, {"00000002", 401}} {
		if got := describe(rc, digestAuth(base.Describe, url, "nvr", "good", nonce, step.nc)); got != step.want {
			t.Errorf("qop step %d (nc %s): %d, want %d", i, step.nc, got, step.want)
		}
	}
	rc = dialRTSP(t, addr)
	nonce = rc.digestChallenge(url)
	if got := describe(rc, digestAuth(base.Describe, url, "nvr", "good", nonce, "00000005")); got != 200 {
		t.Fatalf("nc 5: %d", got)
	}
	if got := describe(rc, digestAuth(base.Describe, url, "nvr", "good", nonce, "00000003")); got != 401 {
		t.Errorf("a lower nc after 5: %d, want 401", got)
	}

	// RFC 2069 (no qop), as gortsplib's client and live555 answer.
	rc = dialRTSP(t, addr)
	nonce = rc.digestChallenge(url)
	auth := digestAuth(base.Describe, url, "nvr", "good", nonce, "")
	if got := describe(rc, auth); got != 200 {
		t.Fatalf("RFC 2069 DESCRIBE: %d", got)
	}
	if got := describe(rc, auth); got != 401 {
		t.Errorf("the same DESCRIBE again on its connection: %d, want 401", got)
	}
	// A nonce of another connection is refused.
	rc2 := dialRTSP(t, addr)
	rc2.digestChallenge(url)
	if got := describe(rc2, auth); got != 401 {
		t.Errorf("another connection's nonce: %d, want 401", got)
	}
}

// Without qop, SETUPs to the same URL with different transports (VLC sends
// each track's SETUP to the stream URL) are each accepted once.
func TestDigestSetupPerTransport(t *testing.T) {
	var d digestState
	nonce := d.nonceValue()
	u, _ := base.ParseURL("rtsp://proxy:8554/a/trackID=1")
	uri := "rtsp://proxy:8554/a/"
	setup := func(transport string) error {
		h := base.Header{"Transport": base.HeaderValue{transport}}
		req := &base.Request{Method: base.Setup, URL: u, Header: h}
		c, err := parseDigest(digestAuth(base.Setup, uri, "nvr", "good", nonce, "")[0])
		if err != nil {
			t.Fatal(err)
		}
		return d.verify(req, c, "nvr", "good")
	}
	for i, tc := range []struct {
		transport string
		want      error
	}{
		{"RTP/AVP/TCP;unicast;interleaved=0-1", nil},
		{"RTP/AVP/TCP;unicast;interleaved=2-3", nil},
		{"RTP/AVP/TCP;unicast;interleaved=2-3", errDigestReplay},
	} {
		if err := setup(tc.transport); err != tc.want {
			t.Errorf("SETUP %d: %v, want %v", i, err, tc.want)
		}
	}
	c, _ := parseDigest(digestAuth(base.Setup, uri, "nvr", "bad", nonce, "")[0])
	if err := d.verify(&base.Request{Method: base.Setup, URL: u}, c, "nvr", "good"); err != errDigestWrong {
		t.Errorf("wrong password: %v", err)
	}
}

func TestParseDigest(t *testing.T) {
	c, err := parseDigest(`Digest username="nvr", realm="ipcam", nonce="abc", uri="rtsp://h/a", qop=auth, nc=00000001, cnonce="x,y", response="0123", algorithm="MD5"`)
	if err != nil {
		t.Fatal(err)
	}
	want := digestCreds{username: "nvr", realm: "ipcam", nonce: "abc", uri: "rtsp://h/a", response: "0123", algorithm: "MD5", qop: "auth", nc: "00000001", cnonce: "x,y"}
	if c != want {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	for _, bad := range []string{
		"Basic abc", `Digest username="nvr"`, `Digest username="a", nonce="n", uri="u", response="r", response="s"`,
		`Digest username="a, nonce=n`, `Digest =x`,
	} {
		if _, err := parseDigest(bad); err == nil {
			t.Errorf("parseDigest(%q) accepted", bad)
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add(`Digest username="nvr", realm="ipcam", nonce="abc", uri="rtsp://h/a", qop=auth, nc=00000001, cnonce="x", response="0123"`)
	f.Add(`Digest username="a", nonce="n", uri="u", response="r"`)
	f.Add(`Digest a="`)
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseDigest(v)
		if err == nil && (c.username == "" || c.nonce == "" || c.uri == "" || c.response == "") {
			t.Fatalf("accepted without the required fields: %+v", c)
		}
	})
}

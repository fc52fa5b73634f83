package proxy

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"golang.org/x/crypto/argon2"

	"github.com/cordon-vms/cordon/internal/testutil"
)

func TestDigestHash(t *testing.T) {
	h := DigestHash("nvr", "secret")
	// RFC 2617's HA1 of nvr:ipcam:secret, as md5sum prints it.
	if want := "$digest-md5$realm=ipcam$" + md5Hex("nvr:ipcam:secret"); h != want {
		t.Fatalf("DigestHash = %s, want %s", h, want)
	}
	accts, err := newAccounts([]Reader{{User: "nvr", PasswordHash: strings.ToUpper(h[len("$digest-md5$realm=ipcam$"):])}})
	if err == nil || accts != nil {
		t.Fatal("a bare HA1 was accepted")
	}
	accts, err = newAccounts([]Reader{{User: "nvr", PasswordHash: h, Cameras: []string{"*"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := accts["nvr"]
	if !a.hash.verify("secret") || a.hash.verify("Secret") {
		t.Error("HA1 hash checks Basic passwords wrongly")
	}
	for _, tc := range []struct{ hash, want string }{
		{"$digest-md5$realm=other$" + md5Hex("nvr:other:secret"), `for realm "other"; this proxy's realm is "ipcam"`},
		{"$digest-md5$realm=ipcam$abc", "32 hex digits"},
		{"$digest-md5$realm=ipcam$" + strings.Repeat("g", 32), "32 hex digits"},
		{"$digest-md5$" + md5Hex("nvr:ipcam:secret"), "must be $digest-md5$realm=ipcam$"},
	} {
		if _, err := parseHash(tc.hash); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.hash, err, tc.want)
		}
	}
	// The helper's argon2id output parses and checks.
	ah, err := parseHash(Argon2idHash("pw"))
	if err != nil || !ah.verify("pw") || ah.verify("pW") {
		t.Errorf("Argon2idHash: %v", err)
	}
}

// loginFixture has one reader of each kind: clear-text password, Digest
// HA1, argon2id.
func loginFixture(t *testing.T) accounts {
	t.Helper()
	accts, err := newAccounts([]Reader{
		{User: "clear", Password: "pw1", Cameras: []string{"*"}},
		{User: "ha1", PasswordHash: DigestHash("ha1", "pw2"), Cameras: []string{"*"}},
		{User: "argon", PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + argonKey(t, "pw3"), Cameras: []string{"*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return accts
}

// argonKey is the key part of a cheap argon2id hash of pw (salt "saltsalt").
func argonKey(t *testing.T, pw string) string {
	t.Helper()
	return base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte(pw), []byte("saltsalt"), 1, 64, 1, 16))
}

func TestCheckLogin(t *testing.T) {
	accts := loginFixture(t)
	u, _ := base.ParseURL("rtsp://127.0.0.1:8554/cam")
	noTurn := func() (func(), string) { return func() {}, "" }
	for _, tc := range []struct {
		name, user, pass string
		digest           bool
		want             string
	}{
		{"clear digest", "clear", "pw1", true, ""},
		{"clear basic", "clear", "pw1", false, ""},
		{"clear digest wrong", "clear", "nope", true, loginWrongPassword},
		{"clear basic wrong", "clear", "nope", false, loginWrongPassword},
		{"ha1 digest", "ha1", "pw2", true, ""},
		{"ha1 basic", "ha1", "pw2", false, ""},
		{"ha1 digest wrong", "ha1", "pw1", true, loginWrongPassword},
		{"ha1 basic wrong", "ha1", "pw1", false, loginWrongPassword},
		{"argon basic", "argon", "pw3", false, ""},
		{"argon basic wrong", "argon", "pw2", false, loginWrongPassword},
		{"argon digest", "argon", "pw3", true, loginBasicOnlyHash},
		{"unknown", "who", "pw1", true, loginUnknownUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &digestState{}
			req := &base.Request{Method: base.Describe, URL: u, Header: base.Header{}}
			if tc.digest {
				req.Header["Authorization"] = digestAuth(base.Describe, u.String(), tc.user, tc.pass, d.nonceValue(), "00000001")
			} else {
				req.Header["Authorization"] = headers.Authorization{Method: headers.AuthMethodBasic, Username: tc.user, BasicPass: tc.pass}.Marshal()
			}
			var hdr headers.Authorization
			if err := hdr.Unmarshal(req.Header["Authorization"]); err != nil {
				t.Fatal(err)
			}
			reason, scope := checkLogin(req, hdr, accts[tc.user], d, noTurn)
			if reason != tc.want || scope != "" {
				t.Fatalf("reason %q scope %q, want %q", reason, scope, tc.want)
			}
			if tc.digest && tc.want == "" {
				// The same (nonce, nc) again is a replay.
				if reason, _ := checkLogin(req, hdr, accts[tc.user], d, noTurn); reason != loginReplay {
					t.Errorf("replay: %q", reason)
				}
			}
		})
	}
	// An argon2id check that may not run reports the throttle scope.
	req := &base.Request{Method: base.Describe, URL: u, Header: base.Header{
		"Authorization": headers.Authorization{Method: headers.AuthMethodBasic, Username: "argon", BasicPass: "x"}.Marshal()}}
	var hdr headers.Authorization
	_ = hdr.Unmarshal(req.Header["Authorization"])
	if reason, scope := checkLogin(req, hdr, accts["argon"], &digestState{}, func() (func(), string) { return nil, throttleBusy }); reason != "" || scope != throttleBusy {
		t.Errorf("busy: %q %q", reason, scope)
	}
	// A Digest header of another connection's nonce, and a malformed one.
	d := &digestState{}
	req.Header["Authorization"] = digestAuth(base.Describe, u.String(), "ha1", "pw2", "0123", "00000001")
	_ = hdr.Unmarshal(req.Header["Authorization"])
	if reason, _ := checkLogin(req, hdr, accts["ha1"], d, noTurn); reason != loginStaleNonce {
		t.Errorf("stale nonce: %q", reason)
	}
	req.Header["Authorization"] = base.HeaderValue{`Digest username="ha1", realm="ipcam", nonce="` + d.nonceValue() + `", uri="x"`}
	_ = hdr.Unmarshal(req.Header["Authorization"])
	if reason, _ := checkLogin(req, hdr, accts["ha1"], d, noTurn); reason != loginMalformed {
		t.Errorf("malformed: %q", reason)
	}
}

// digestResponder is a minimal RTSP server that answers DESCRIBE the way
// the proxy does (the proxy's own Digest challenge, checkLogin), so real
// clients' Digest implementations are checked against it. It answers 404
// after a successful login (the client then stops) and records each
// login's reason.
type digestResponder struct {
	ln      net.Listener
	accts   accounts
	mu      sync.Mutex
	reasons []string
}

func startDigestResponder(t *testing.T, accts accounts) *digestResponder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &digestResponder{ln: ln, accts: accts}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *digestResponder) serve(c net.Conn) {
	defer c.Close()
	d := &digestState{}
	br := bufio.NewReader(c)
	for {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var req base.Request
		if err := req.Unmarshal(br); err != nil {
			return
		}
		res := base.Response{StatusCode: base.StatusOK, Header: base.Header{"CSeq": req.Header["CSeq"]}}
		switch req.Method {
		case base.Options:
			res.Header["Public"] = base.HeaderValue{"DESCRIBE, SETUP, PLAY, TEARDOWN"}
		case base.Describe:
			var hdr headers.Authorization
			if err := hdr.Unmarshal(req.Header["Authorization"]); err != nil {
				res.StatusCode = base.StatusUnauthorized
				res.Header["WWW-Authenticate"] = base.HeaderValue{d.challenge()}
				break
			}
			reason, _ := checkLogin(&req, hdr, r.accts[hdr.Username], d, func() (func(), string) { return func() {}, "" })
			r.mu.Lock()
			r.reasons = append(r.reasons, reason)
			r.mu.Unlock()
			res.StatusCode = base.StatusNotFound
			if reason != "" {
				res.StatusCode = base.StatusUnauthorized
				res.Header["WWW-Authenticate"] = base.HeaderValue{d.challenge()}
			}
		default:
			res.StatusCode = base.StatusNotImplemented
		}
		b, _ := res.Marshal()
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

func (r *digestResponder) logins() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reasons...)
}

// TestDigestHashFFprobe: ffprobe (Digest with qop=auth) logs in to a reader
// whose password is stored as a $digest-md5$ hash; a wrong password and an
// argon2id account (Basic only) fail with their reasons.
func TestDigestHashFFprobe(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "ffprobe")
	for _, tc := range []struct{ user, pass, want string }{
		{"ha1", "pw2", ""},
		{"clear", "pw1", ""},
		{"ha1", "wrong", loginWrongPassword},
		{"argon", "pw3", loginBasicOnlyHash},
	} {
		r := startDigestResponder(t, loginFixture(t))
		url := fmt.Sprintf("rtsp://%s:%s@%s/cam", tc.user, tc.pass, r.ln.Addr())
		out, _ := runTool(t, 10*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", "tcp", url)
		got := r.logins()
		if len(got) == 0 || got[0] != tc.want {
			t.Errorf("%s/%s: logins %q, want first %q; ffprobe said:\n%s", tc.user, tc.pass, got, tc.want, out)
		}
		if tc.want == "" && !strings.Contains(out, "404") {
			t.Errorf("%s: ffprobe did not get past the login:\n%s", tc.user, out)
		}
	}
}

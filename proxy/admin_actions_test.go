package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// consoleClient is a console session: HTTP Basic, the session cookie and
// the page's CSRF token.
type consoleClient struct {
	t                *testing.T
	base, user, pass string
	cookie, token    string
	client           *http.Client
}

var csrfMetaRE = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// open loads the cameras page and keeps its cookie and token.
func (c *consoleClient) open() {
	c.t.Helper()
	res := c.do("GET", "/", "", nil)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := csrfMetaRE.FindSubmatch(body)
	if res.StatusCode != 200 || m == nil {
		c.t.Fatalf("GET /: %d, token found: %v", res.StatusCode, m != nil)
	}
	c.token = string(m[1])
	for _, ck := range res.Cookies() {
		if ck.Name == consoleCookie {
			c.cookie = ck.Value
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				c.t.Errorf("session cookie %+v: want HttpOnly and SameSite=Strict", ck)
			}
		}
	}
	if c.cookie == "" {
		c.t.Fatal("GET /: no session cookie")
	}
}

func (c *consoleClient) do(method, path, token string, hdr map[string]string) *http.Response {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(""))
	req.SetBasicAuth(c.user, c.pass)
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: consoleCookie, Value: c.cookie})
	}
	if token != "" {
		req.Header.Set(csrfHeader, token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	cl := c.client
	if cl == nil {
		cl = http.DefaultClient
	}
	res, err := cl.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return res
}

func (c *consoleClient) status(method, path, token string, hdr map[string]string) int {
	c.t.Helper()
	res := c.do(method, path, token, hdr)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// TestAdminActionsCSRF: actions are POSTs that need the console
// session's token (cookie + header, same account, same origin); a
// reconnect is logged with the account and ends the camera's session.
func TestAdminActionsCSRF(t *testing.T) {
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "door"}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	cfg := testConfig(Camera{Name: "door", URL: MustParseSecretURL(sim.URL("door"))})
	cfg.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}, {User: "ops2", PasswordHash: testAdminHash}}
	log, lb := newLog(t)
	p := startProxy(t, cfg, log)
	waitFor(t, "door up", 10*time.Second, func() bool { return cameraState(p, "door") == stateUp })
	base := "http://" + p.AdminAddr().String()
	c := &consoleClient{t: t, base: base, user: "ops", pass: "console-pw"}
	c.open()
	other := &consoleClient{t: t, base: base, user: "ops2", pass: "console-pw"}
	other.open()

	const path = "/v1/cameras/door/reconnect"
	for _, tc := range []struct {
		name   string
		cookie string
		token  string
		hdr    map[string]string
		want   int
	}{
		{"no token", c.cookie, "", nil, 403},
		{"no cookie", "", c.token, nil, 403},
		{"wrong token", c.cookie, "x" + c.token[1:], nil, 403},
		{"another session's token", c.cookie, other.token, nil, 403},
		{"another origin", c.cookie, c.token, map[string]string{"Origin": "http://evil.example"}, 403},
	} {
		cl := *c
		cl.cookie = tc.cookie
		if got := cl.status("POST", path, tc.token, tc.hdr); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := c.status("POST", "/v1/cameras", c.token, nil); got != 405 {
		t.Errorf("POST /v1/cameras with a token: %d, want 405", got)
	}
	if got := c.status("GET", path, "", nil); got == 202 {
		t.Errorf("GET %s reconnected the camera", path)
	}
	if p.camera("door").reconnects.Load() != 0 {
		t.Fatal("the camera reconnected before the action")
	}
	origin := map[string]string{"Origin": base}
	if got := c.status("POST", path, c.token, origin); got != 202 {
		t.Fatalf("reconnect with the token: %d, want 202", got)
	}
	waitFor(t, "door reconnected", 10*time.Second, func() bool {
		return p.camera("door").reconnects.Load() == 1 && cameraState(p, "door") == stateUp
	})
	if !strings.Contains(lb.String(), `msg="admin action: reconnect camera" component=proxy camera=door user=ops`) {
		t.Error("the reconnect is not in the log with the account")
	}
	asked := false
	for _, h := range p.camera("door").history() {
		asked = asked || h.State == stateDown && strings.Contains(h.Error, "reconnect asked for")
	}
	if !asked {
		t.Errorf("history after a reconnect: %+v", p.camera("door").history())
	}
	if got := c.status("POST", "/v1/cameras/nope/reconnect", c.token, nil); got != 404 {
		t.Errorf("reconnect of an unknown camera: %d", got)
	}
}

// TestAdminLoginThrottled: after the free failures, a source's logins are
// answered 401 without a check, even with the right password, and
// counted; another account's good source is not locked out.
func TestAdminLoginThrottled(t *testing.T) {
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door"}}, func(c *Config) {
		c.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}}
	})
	c := &consoleClient{t: t, base: "http://" + p.AdminAddr().String(), user: "ops", pass: "wrong"}
	for i := range loginFreeFailures {
		if got := c.status("GET", "/v1/cameras", "", nil); got != 401 {
			t.Fatalf("failure %d: %d", i, got)
		}
	}
	c.pass = "console-pw"
	if got := c.status("GET", "/v1/cameras", "", nil); got != 401 {
		t.Errorf("right password during the failure delay: %d, want 401", got)
	}
	if n := p.adminThrottled.Load(); n != 1 {
		t.Errorf("throttled %d, want 1", n)
	}
	if n := p.adminAuthFailures.Load(); n != loginFreeFailures {
		t.Errorf("failures %d, want %d (the throttled login is not checked)", n, loginFreeFailures)
	}
	c.user, c.pass = "ops", "console-pw"
	p.adminLogins.now = func() time.Time { return time.Now().Add(time.Hour) }
	if m := httpGetAuth(t, c.base+"/metrics", "ops", "console-pw"); !strings.Contains(m, "cordon_admin_auth_throttled_total 1") {
		t.Error("cordon_admin_auth_throttled_total is not 1 in /metrics")
	}
	if got := c.status("GET", "/v1/cameras", "", nil); got != 200 {
		t.Errorf("right password after the delay: %d, want 200", got)
	}
}

func httpGetAuth(t *testing.T, url, user, pw string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// writeAdminCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeAdminCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cordon admin test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestAdminTLS: with admin_tls the admin listener speaks HTTPS only, and
// the console's session cookie is Secure.
func TestAdminTLS(t *testing.T) {
	certFile, keyFile, pool := writeAdminCert(t)
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door"}}, func(c *Config) {
		c.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}}
		c.AdminTLS = TLS{Cert: certFile, Key: keyFile}
	})
	addr := p.AdminAddr().String()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c := &consoleClient{t: t, base: "https://" + addr, user: "ops", pass: "console-pw", client: cl}
	res := c.do("GET", "/", "", nil)
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Fatalf("GET / over TLS: %d", res.StatusCode)
	}
	secure := false
	for _, ck := range res.Cookies() {
		secure = secure || ck.Name == consoleCookie && ck.Secure
	}
	if !secure {
		t.Error("the session cookie is not Secure over TLS")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		if r2, err := http.Get("http://" + addr + "/healthz"); err == nil && r2.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS admin listener")
		}
	}
}

// TestAdminTLSConfig: admin_tls needs both files, and Check loads them.
func TestAdminTLSConfig(t *testing.T) {
	certFile, keyFile, _ := writeAdminCert(t)
	for _, tc := range []struct {
		tls  TLS
		want string
	}{
		{TLS{Cert: certFile}, "admin_tls needs both cert and key"},
		{TLS{Cert: certFile, Key: certFile}, "admin_tls.cert/admin_tls.key: tls: "},
		{TLS{Cert: filepath.Join(t.TempDir(), "nope.crt"), Key: keyFile}, `admin_tls.cert "`},
	} {
		cfg := testConfig(Camera{Name: "door", URL: MustParseSecretURL("rtsp://127.0.0.1:1/door")})
		cfg.AdminTLS = tc.tls
		_, err := cfg.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.tls, err, tc.want)
		}
	}
}

// TestAdminCameraACL: an admin account with cameras may preview and
// reconnect those only; it still sees every camera in the API.
func TestAdminCameraACL(t *testing.T) {
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door"}, {Name: "yard"}}, func(c *Config) {
		c.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash, Cameras: []string{"door"}}}
	})
	waitFor(t, "cameras up", 10*time.Second, func() bool { return cameraState(p, "door") == stateUp && cameraState(p, "yard") == stateUp })
	c := &consoleClient{t: t, base: "http://" + p.AdminAddr().String(), user: "ops", pass: "console-pw"}
	c.open()
	if got := c.status("POST", "/v1/cameras/yard/reconnect", c.token, nil); got != 403 {
		t.Errorf("reconnect of a camera the account does not list: %d, want 403", got)
	}
	if got := c.status("POST", "/v1/cameras/yard/whep", c.token, map[string]string{"Content-Type": "application/sdp"}); got != 403 {
		t.Errorf("preview of a camera the account does not list: %d, want 403", got)
	}
	if got := c.status("POST", "/v1/cameras/door/reconnect", c.token, nil); got != 202 {
		t.Errorf("reconnect of a listed camera: %d, want 202", got)
	}
	if got := c.status("GET", "/v1/cameras/yard", "", nil); got != 200 {
		t.Errorf("GET of a camera the account does not list: %d, want 200", got)
	}
	if p.camera("yard").reconnects.Load() != 0 {
		t.Error("yard reconnected")
	}
}

package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// startConsoleProxy starts camsim cameras (with credentials) and a proxy
// pulling them through "localhost", so that the camera's address and
// password are known strings that no answer may contain.
func startConsoleProxy(t *testing.T, cams []camsim.Camera, edit func(*Config)) (*Proxy, *camsim.Server) {
	t.Helper()
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: cams, User: "camuser", Password: "Cam-S3cret"}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	_, port, _ := strings.Cut(sim.Addr, ":")
	var cc []Camera
	for _, c := range cams {
		cc = append(cc, Camera{Name: c.Name, URL: MustParseSecretURL("rtsp://camuser:Cam-S3cret@localhost:" + port + "/" + c.Name)})
	}
	cfg := testConfig(cc...)
	if edit != nil {
		edit(&cfg)
	}
	log, _ := newLog(t)
	return startProxy(t, cfg, log), sim
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if v != nil && res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, b)
		}
	}
	return res.StatusCode
}

func TestAPICameraCodecSizeRateAndReaders(t *testing.T) {
	p, _ := startConsoleProxy(t, []camsim.Camera{
		{Name: "door", Codec: "h264", Width: 640, Height: 360, FPS: 25},
		{Name: "yard", Codec: "h265", Width: 1280, Height: 720, FPS: 10},
	}, nil)
	base := "http://" + p.AdminAddr().String()
	waitFor(t, "cameras up", 15*time.Second, func() bool {
		var st struct{ Cameras []CameraStatus }
		getJSON(t, base+"/v1/cameras", &st)
		up := 0
		for _, c := range st.Cameras {
			if c.State == stateUp && c.FPSMeasured > 0 {
				up++
			}
		}
		return up == 2
	})
	want := map[string]struct {
		codec string
		w, h  int
		fps   float64
	}{"door": {"H264", 640, 360, 25}, "yard": {"H265", 1280, 720, 10}}
	for name, w := range want {
		var c CameraStatus
		if code := getJSON(t, base+"/v1/cameras/"+name, &c); code != http.StatusOK {
			t.Fatalf("/v1/cameras/%s: %d", name, code)
		}
		if c.Name != name || c.Codec != w.codec || c.Width != w.w || c.Height != w.h {
			t.Errorf("%s: codec %q %dx%d, want %q %dx%d", name, c.Codec, c.Width, c.Height, w.codec, w.w, w.h)
		}
		// camsim's clips declare 25 fps in their SPS VUI whatever rate
		// camsim sends them at: fps is the declaration, fps_measured what
		// arrives.
		if c.FPSSource != "sps" || c.FPS != 25 {
			t.Errorf("%s: fps %.2f from %q, want 25 from the SPS", name, c.FPS, c.FPSSource)
		}
		if c.FPSMeasured < w.fps*0.9 || c.FPSMeasured > w.fps*1.1 {
			t.Errorf("%s: measured %.2f fps, want %.0f", name, c.FPSMeasured, w.fps)
		}
		t.Logf("%s: %s %dx%d %.2f fps (%s), measured %.2f, %d bit/s", name, c.Codec, c.Width, c.Height, c.FPS, c.FPSSource, c.FPSMeasured, c.Bitrate)
	}
	if code := getJSON(t, base+"/v1/cameras/nope", nil); code != http.StatusNotFound {
		t.Errorf("/v1/cameras/nope: %d, want 404", code)
	}

	waitReader(t, "reader", 10*time.Second, readerURL(p, "door"))
	var rs struct{ Readers []ReaderEntry }
	waitFor(t, "reader bytes", 10*time.Second, func() bool {
		getJSON(t, base+"/v1/readers", &rs)
		return len(rs.Readers) == 1 && rs.Readers[0].BytesOut > 0
	})
	got := rs.Readers[0]
	if got.Camera != "door" || got.User != "anonymous" || got.Transport != "tcp" || !strings.HasPrefix(got.Remote, "127.0.0.1:") {
		t.Errorf("reader %+v", got)
	}
}

// TestAPINoCameraAddressOrPassword: no page or API answer holds the
// camera's host name or password, errors included.
func TestAPINoCameraAddressOrPassword(t *testing.T) {
	p, sim := startConsoleProxy(t, []camsim.Camera{{Name: "door"}}, nil)
	base := "http://" + p.AdminAddr().String()
	waitFor(t, "up", 15*time.Second, func() bool { return p.Status()[0].State == stateUp })
	waitReader(t, "reader", 10*time.Second, readerURL(p, "door"))
	sim.Close() // the camera goes away: last_error is set
	waitFor(t, "down with an error", 15*time.Second, func() bool {
		s := p.Status()[0]
		return s.State != stateUp && s.LastError != ""
	})
	for _, path := range []string{"/v1/cameras", "/v1/cameras/door", "/v1/readers", "/", "/cameras/door", "/readers", "/metrics", "/v1/previews", "/v1/trunks"} {
		body := httpGet(t, base+path)
		for _, secret := range []string{"Cam-S3cret", "localhost", "camuser"} {
			if strings.Contains(body, secret) {
				t.Errorf("%s holds %q:\n%s", path, secret, body)
			}
		}
	}
	t.Logf("last_error: %s", p.Status()[0].LastError)
	var one CameraStatus
	getJSON(t, base+"/v1/cameras/door", &one)
	var states []string
	for _, h := range one.History {
		states = append(states, h.State)
	}
	// Newest first: down (with the error), up, connecting.
	if n := len(states); n < 3 || states[n-1] != stateConnecting || states[n-2] != stateUp || states[n-3] == stateUp || one.History[n-3].Error == "" {
		t.Errorf("history %+v", one.History)
	}
}

func TestHideCamera(t *testing.T) {
	u := MustParseSecretURL("rtsp://admin:p%40ss@cam7.lan:554/live")
	for _, tc := range []struct{ in, want string }{
		{"dial tcp cam7.lan:554: connection refused", "dial tcp <camera>: connection refused"},
		{"DESCRIBE rtsp://admin:xxxxx@cam7.lan:554/live: 404", "DESCRIBE <camera url>: 404"},
		{"bad password p@ss or p%40ss", "bad password xxxxx or xxxxx"},
		{"lookup cam7.lan: no such host", "lookup <camera>: no such host"},
	} {
		if got := hideCamera(tc.in, u); got != tc.want {
			t.Errorf("hideCamera(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAdminGuard(t *testing.T) {
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door"}}, func(c *Config) {
		c.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}}
	})
	base := "http://" + p.AdminAddr().String()
	do := func(method, path, user, pw string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	for _, tc := range []struct {
		method, path, user, pw string
		want                   int
	}{
		{"GET", "/", "", "", 401},
		{"GET", "/v1/cameras", "", "", 401},
		{"GET", "/metrics", "", "", 401},
		{"GET", "/static/console.js", "", "", 401},
		{"GET", "/v1/cameras", "ops", "wrong", 401},
		{"GET", "/v1/cameras", "nobody", "console-pw", 401},
		{"GET", "/v1/cameras", "ops", "console-pw", 200},
		{"GET", "/v1/cameras", "ops", "console-pw", 200}, // remembered
		{"GET", "/", "ops", "console-pw", 200},
		{"GET", "/static/console.js", "ops", "console-pw", 200},
		{"GET", "/static/console.css", "ops", "console-pw", 200},
		{"GET", "/static/layout.html", "ops", "console-pw", 404},
		{"GET", "/cameras/nope", "ops", "console-pw", 404},
		{"HEAD", "/", "ops", "console-pw", 200},
		{"POST", "/v1/cameras", "ops", "console-pw", 403}, // no CSRF token (admin_actions_test.go)
		{"PUT", "/v1/cameras", "ops", "console-pw", 405},
		{"GET", "/healthz", "", "", 200},
	} {
		res := do(tc.method, tc.path, tc.user, tc.pw)
		if res.StatusCode != tc.want {
			t.Errorf("%s %s as %q: %d, want %d", tc.method, tc.path, tc.user, res.StatusCode, tc.want)
		}
		if tc.want == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s %s: 401 without a Basic challenge", tc.method, tc.path)
		}
		for h, v := range map[string]string{
			"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
		} {
			if got := res.Header.Get(h); got != v {
				t.Errorf("%s %s: %s %q, want %q", tc.method, tc.path, h, got, v)
			}
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self';") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s %s: CSP %q", tc.method, tc.path, csp)
		}
	}
	if n := p.adminAuthFailures.Load(); n != 2 {
		t.Errorf("admin auth failures %d, want 2", n)
	}
}

// TestAdminWithoutUsersOffLoopback: without admin_users, a request that
// arrived on a non-loopback local address is refused (Validate already
// refuses such a listen.admin; this is the second line).
func TestAdminWithoutUsersOffLoopback(t *testing.T) {
	p := &Proxy{}
	h := p.adminGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	for _, tc := range []struct {
		local string
		want  int
	}{{"127.0.0.1", 200}, {"::1", 200}, {"192.0.2.2", 401}, {"10.0.0.5", 401}} {
		req := httptest.NewRequest("GET", "/v1/cameras", nil)
		req = req.WithContext(context.WithValue(req.Context(), adminLocalAddrKey{}, netip.MustParseAddr(tc.local)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("on %s: %d, want %d", tc.local, rec.Code, tc.want)
		}
	}
}

// TestAdminUsersReload: admin_users apply on reload, both ways.
func TestAdminUsersReload(t *testing.T) {
	sim := startCamsim(t, "door")
	cfg := testConfig(Camera{Name: "door", URL: MustParseSecretURL(sim.URL("door"))})
	log, _ := newLog(t)
	p := startProxy(t, cfg, log)
	url := "http://" + p.AdminAddr().String() + "/v1/cameras"
	status := func() int {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := status(); got != 200 {
		t.Fatalf("loopback without admin_users: %d", got)
	}
	cfg.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}}
	if err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != 401 {
		t.Errorf("after adding admin_users: %d, want 401", got)
	}
	cfg.AdminUsers = nil
	if err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != 200 {
		t.Errorf("after removing admin_users: %d, want 200", got)
	}
}

func TestStateHistoryRing(t *testing.T) {
	var h stateHistory
	if got := h.list(); len(got) != 0 {
		t.Fatalf("empty: %v", got)
	}
	for i := range historySize + 5 {
		h.add(StateChange{State: fmt.Sprint(i)})
	}
	got := h.list()
	if len(got) != historySize || got[0].State != fmt.Sprint(historySize+4) || got[historySize-1].State != "5" {
		t.Errorf("list: %d entries, newest %q, oldest %q", len(got), got[0].State, got[len(got)-1].State)
	}
}

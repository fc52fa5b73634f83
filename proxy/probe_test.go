package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// TestProbe probes in-test cameras: two that answer (H.264 and H.265, with
// the right password), one with a wrong password, one without credentials
// and one that nobody listens for.
func TestProbe(t *testing.T) {
	sim := &camsim.Server{
		Addr: "127.0.0.1:0", User: "admin", Password: "right",
		Cameras: []camsim.Camera{
			{Name: "c264", Codec: "h264", Width: 1280, Height: 720},
			{Name: "c265", Codec: "h265", Width: 640, Height: 360},
		},
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	cred := func(user, pass, name string) SecretURL {
		return MustParseSecretURL("rtsp://" + user + ":" + pass + "@" + sim.Addr + "/" + name)
	}
	cfg := testConfig(
		Camera{Name: "lobby", URL: cred("admin", "right", "c264")},
		Camera{Name: "garage", URL: cred("admin", "right", "c265")},
		Camera{Name: "wrongpw", URL: cred("admin", "wrong-secret", "c264")},
		Camera{Name: "nocreds", URL: MustParseSecretURL("rtsp://" + sim.Addr + "/c264")},
		Camera{Name: "gone", URL: MustParseSecretURL("rtsp://admin:gone-secret@" + closed + "/x")},
	)
	cfg.CameraSide.Bind = "127.0.0.1"
	start := time.Now()
	res := Probe(context.Background(), cfg, ProbeOptions{Timeout: 5 * time.Second, Concurrency: 2})
	t.Logf("probe took %s", time.Since(start))
	if len(res) != 5 {
		t.Fatalf("%d results", len(res))
	}
	for _, tc := range []struct {
		name            string
		ok, reach, auth bool
		codecs          string
		w, h            int
		err             string
	}{
		{"lobby", true, true, true, "H264", 1280, 720, ""},
		{"garage", true, true, true, "H265", 640, 360, ""},
		{"wrongpw", false, true, false, "", 0, 0, "the camera refused the url's user and password"},
		{"nocreds", false, true, false, "", 0, 0, "the camera wants credentials"},
		{"gone", false, false, false, "", 0, 0, "connection refused"},
	} {
		var r ProbeResult
		for _, x := range res {
			if x.Camera == tc.name {
				r = x
			}
		}
		t.Logf("%+v", r)
		if r.OK() != tc.ok || r.Reachable != tc.reach || r.AuthOK != tc.auth || strings.Join(r.Codecs, ",") != tc.codecs ||
			r.Width != tc.w || r.Height != tc.h || !strings.Contains(r.Err, tc.err) || (tc.err == "") != (r.Err == "") {
			t.Errorf("%s: %+v", tc.name, r)
		}
		if strings.Contains(r.Err, "secret") {
			t.Errorf("%s: error leaks the password: %s", tc.name, r.Err)
		}
	}
	if res[0].Camera != "lobby" || res[4].Camera != "gone" {
		t.Errorf("results out of order: %+v", res)
	}
}

// TestProbeTimeout: a camera that accepts the connection and never answers
// fails within the timeout.
func TestProbeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := testConfig(Camera{Name: "mute", URL: MustParseSecretURL("rtsp://" + ln.Addr().String() + "/x")})
	start := time.Now()
	res := Probe(context.Background(), cfg, ProbeOptions{Timeout: 300 * time.Millisecond})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("probe took %s with a 300ms timeout", d)
	}
	t.Logf("%+v", res[0])
	if r := res[0]; r.OK() || !r.Reachable || r.AuthOK || !strings.Contains(r.Err, "OPTIONS") {
		t.Errorf("%+v", r)
	}
}

// TestProbeLenient: a camera whose SDP gortsplib rejects as a whole is read
// as the proxy reads it (the sections that parse), and the probe says how
// many sections it could not parse; nothing is set up.
func TestProbeLenient(t *testing.T) {
	url, requests := fakeVendorCamera(t)
	cfg := testConfig(Camera{Name: "vendor", URL: MustParseSecretURL(url)})
	r := Probe(context.Background(), cfg, ProbeOptions{Timeout: 5 * time.Second})[0]
	t.Logf("%+v", r)
	if !r.OK() || r.Width == 0 || !strings.HasPrefix(strings.Join(r.Codecs, ","), "H264,") || !strings.HasSuffix(strings.Join(r.Codecs, ","), "unparsable)") {
		t.Errorf("%+v", r)
	}
	if rs := requests(); len(rs) != 0 {
		t.Errorf("the probe sent %v; it must only ask (OPTIONS, DESCRIBE)", rs)
	}
}

package proxy

import (
	"context"
	"encoding/base64"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// TestGarbageInterleavedFrames: a camera that sends interleaved frames of
// 65,535 bytes of garbage after PLAY, with RTP headers that route them to
// its H.264 track, while a reader is attached. The frames used to panic
// the process in rebuild mode (rebuildAU indexed an empty NAL unit, fixed
// in package rebuild); now they are dropped and counted, nothing panics
// (not even a contained panic), and the good packets that follow reach the
// reader.
func TestGarbageInterleavedFrames(t *testing.T) {
	for _, mode := range []rebuild.Mode{rebuild.ModeRebuild, rebuild.ModePassthrough} {
		t.Run(string(mode), func(t *testing.T) {
			cam := &scriptCam{afterPlay: func(ctx context.Context, w *camWriter) {
				rng := rand.New(rand.NewPCG(1, 2))
				junk := make([]byte, 65535)
				time.Sleep(300 * time.Millisecond) // a reader attaches
				w.h264(ctx, 100*time.Millisecond)
				for range 64 {
					for i := range junk {
						junk[i] = byte(rng.Uint32())
					}
					// An RTP header that gortsplib routes to the H.264 track
					// (version 2, payload type 96), random flags and body.
					junk[0] = 0x80 | junk[0]&0x3f
					junk[1] = junk[1]&0x80 | 96
					if ctx.Err() != nil || w.frame(0, junk) != nil {
						return
					}
				}
				w.h264(ctx, time.Second)
			}}
			addr := cam.listen(t)
			log, _ := newLog(t)
			p := startProxy(t, testConfig(Camera{Name: "g", URL: MustParseSecretURL("rtsp://" + addr + "/cam"), Mode: Mode(mode)}), log)
			r := waitReader(t, "a reader", 10*time.Second, readerURL(p, "g"))
			waitFor(t, "a second session", 20*time.Second, func() bool { return cam.conns.Load() >= 2 })
			st := p.Status()
			if len(st) != 1 || st[0].PacketsIn == 0 {
				t.Fatalf("status: %+v", st)
			}
			if st[0].Panics != 0 {
				t.Errorf("%d panics contained, want none", st[0].Panics)
			}
			if r.packets.Load() == 0 {
				t.Error("the reader received nothing")
			}
		})
	}
}

// startBubbleCamera runs one camera of a proxy that listens nowhere, its
// connections served by cam over net.Pipe: inside a synctest bubble, where
// time only passes while every goroutine waits, hours of reconnects take
// milliseconds. stop ends the camera and waits for its goroutines.
func startBubbleCamera(t *testing.T, cam *scriptCam, cc Camera) (p *Proxy, stop func()) {
	t.Helper()
	p, err := New(Config{Cameras: []Camera{cc}, Listen: Listen{RTSP: "127.0.0.1:0", Admin: "off", UDPRTP: "off"}, AllowAnonymous: true}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	c := newCamera(p, p.cfg.Cameras[0])
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.src.dial = func(context.Context, string, string) (net.Conn, error) {
		a, b := net.Pipe()
		wg.Go(func() { cam.serve(ctx, b) })
		return a, nil
	}
	p.mu.Lock()
	p.cams[cc.Name] = c
	p.mu.Unlock()
	c.start()
	return p, func() {
		c.stopWait("test over")
		cancel()
		wg.Wait()
	}
}

// gaps returns the time between consecutive connections.
func gaps(ts []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i].Sub(ts[i-1]))
	}
	return out
}

// TestReconnectStorm: cameras that accept PLAY and then close at once,
// after 2 s of media, or stay silent until the read timeout, are retried
// with the growing backoff (1 s doubling to 30 s): a PLAY alone no longer
// resets it, so they are not retried at ~1 Hz forever.
func TestReconnectStorm(t *testing.T) {
	for _, tc := range []struct {
		name      string
		afterPlay func(ctx context.Context, w *camWriter)
	}{
		{"closes at once", func(context.Context, *camWriter) {}},
		{"plays 2 s", func(ctx context.Context, w *camWriter) { w.h264(ctx, 2*time.Second) }},
		{"silent", func(ctx context.Context, w *camWriter) { <-ctx.Done() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cam := &scriptCam{afterPlay: tc.afterPlay}
				_, stop := startBubbleCamera(t, cam, Camera{Name: "s", URL: MustParseSecretURL("rtsp://cam.invalid/cam")})
				time.Sleep(5 * time.Minute)
				stop()
				g := gaps(cam.startTimes())
				t.Logf("%d sessions in 5 minutes", len(g)+1)
				// 1+2+4+8+16 s, then 30 s (±20 %), plus the sessions' own time.
				if len(g) < 5 || len(g) > 18 {
					t.Fatalf("%d sessions in 5 minutes, want 6 to 18; gaps %v", len(g)+1, g)
				}
				if last := g[len(g)-1]; last < 24*time.Second {
					t.Errorf("the backoff did not grow: last gap %v; gaps %v", last, g)
				}
			})
		})
	}
}

// TestHealthySessionResetsBackoff: a camera that delivers media for 20 s
// each session is retried about 1 s after each end.
func TestHealthySessionResetsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &scriptCam{afterPlay: func(ctx context.Context, w *camWriter) { w.h264(ctx, 20*time.Second) }}
		_, stop := startBubbleCamera(t, cam, Camera{Name: "h", URL: MustParseSecretURL("rtsp://cam.invalid/cam")})
		time.Sleep(5 * time.Minute)
		stop()
		g := gaps(cam.startTimes())
		if len(g) < 10 {
			t.Fatalf("%d sessions in 5 minutes; gaps %v", len(g)+1, g)
		}
		for _, d := range g {
			if d > 20*time.Second+1300*time.Millisecond {
				t.Fatalf("a healthy session did not reset the backoff: gaps %v", g)
			}
		}
	})
}

// TestAuthFailureBackoff: a camera that refuses the credentials (401 or
// 403) is tried once per auth_failure_backoff (10 min ±20 %), not every
// ≤ 30 s (Hikvision and Dahua lock the account after a few failures); its
// state is auth_failed in /v1/cameras and in cordon_camera_state, and the
// error says to check the credentials.
func TestAuthFailureBackoff(t *testing.T) {
	for _, code := range []base.StatusCode{base.StatusUnauthorized, base.StatusForbidden} {
		t.Run(strconv.Itoa(int(code)), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cam := &scriptCam{respond: func(_ int64, req *base.Request) *base.Response {
					if req.Method != base.Describe {
						return nil
					}
					if code == base.StatusUnauthorized || len(req.Header["Authorization"]) == 0 {
						return &base.Response{StatusCode: base.StatusUnauthorized, Header: base.Header{
							"WWW-Authenticate": base.HeaderValue{`Basic realm="cam"`},
						}}
					}
					return &base.Response{StatusCode: code}
				}}
				p, stop := startBubbleCamera(t, cam, Camera{Name: "a", URL: MustParseSecretURL("rtsp://admin:wrong@cam.invalid/cam")})
				defer stop()
				time.Sleep(time.Second)
				st := p.Status()[0]
				if st.State != stateAuthFailed || !strings.Contains(st.LastError, "check the user and password") ||
					!strings.Contains(st.LastError, strconv.Itoa(int(code))) {
					t.Errorf("state %q, last_error %q", st.State, st.LastError)
				}
				if !gaugeIs(t, p, "cordon_camera_state", map[string]string{"camera": "a", "state": stateAuthFailed}, 1) {
					t.Error(`cordon_camera_state{state="auth_failed"} is not 1`)
				}
				time.Sleep(time.Hour)
				logins := 0
				for _, r := range cam.requests() {
					if strings.HasPrefix(r, "DESCRIBE") && strings.Contains(r, "Basic ") {
						logins++
					}
				}
				t.Logf("%d failed logins in an hour", logins)
				if logins < 5 || logins > 8 {
					t.Errorf("%d failed logins in an hour, want one per 10 min ±20 %%; gaps %v", logins, gaps(cam.startTimes()))
				}
			})
		})
	}
}

// gaugeIs reports whether the proxy's metric name with labels has value v.
func gaugeIs(t *testing.T, p *Proxy, name string, labels map[string]string, v float64) bool {
	t.Helper()
	mfs, err := p.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetGauge().GetValue() == v
		}
	}
	return false
}

// TestAuthFailedReload: a camera waiting after an authentication failure
// is not retried by a reload that leaves it unchanged, and is retried at
// once by a reload that changes it (the fixed password), long before
// auth_failure_backoff (10 min) has passed.
func TestAuthFailedReload(t *testing.T) {
	good := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:right"))
	cam := &scriptCam{respond: func(_ int64, req *base.Request) *base.Response {
		if req.Method == base.Describe && (len(req.Header["Authorization"]) != 1 || req.Header["Authorization"][0] != good) {
			return &base.Response{StatusCode: base.StatusUnauthorized, Header: base.Header{
				"WWW-Authenticate": base.HeaderValue{`Basic realm="cam"`},
			}}
		}
		return nil
	}, afterPlay: func(ctx context.Context, w *camWriter) { w.h264(ctx, time.Minute) }}
	addr := cam.listen(t)
	log, lb := newLog(t)
	cfg := testConfig(Camera{Name: "a", URL: MustParseSecretURL("rtsp://admin:wrong@" + addr + "/cam")})
	p := startProxy(t, cfg, log)
	waitFor(t, "auth_failed", 10*time.Second, func() bool { return cameraState(p, "a") == stateAuthFailed })
	if !strings.Contains(lb.String(), "camera refused the proxy's credentials; check the user and password") {
		t.Error("the log does not say to check the credentials")
	}
	failed := func() int {
		n := 0
		for _, r := range cam.requests() {
			if strings.HasPrefix(r, "DESCRIBE") && strings.Contains(r, "Basic ") {
				n++
			}
		}
		return n
	}

	unchanged := cfg
	unchanged.Readers = []Reader{{User: "nvr", Password: "pw", Cameras: []string{"*"}}}
	unchanged.AllowAnonymous = false
	if err := p.Reload(unchanged); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := failed(); n != 1 || cameraState(p, "a") != stateAuthFailed {
		t.Fatalf("%d failed logins, state %s after a reload that left the camera alone; want 1, auth_failed", n, cameraState(p, "a"))
	}

	fixed := unchanged
	fixed.Cameras = []Camera{{Name: "a", URL: MustParseSecretURL("rtsp://admin:right@" + addr + "/cam")}}
	start := time.Now()
	if err := p.Reload(fixed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the camera up after the fixed password", 5*time.Second, func() bool { return cameraState(p, "a") == stateUp })
	t.Logf("up %v after the reload", time.Since(start).Round(time.Millisecond))
}

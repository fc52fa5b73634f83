package proxy

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// previewFlags let headless Chromium use WebRTC on loopback (it leaves
// loopback interfaces out of ICE otherwise) and play without a gesture.
var previewFlags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("allow-loopback-in-peer-connection", true),
	chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
}

type previewState struct {
	State       string
	Error       string
	Decoded     int
	CurrentTime float64
	Width       int
	Status      string
}

const previewStateJS = `({State: window.cordonPreview ? window.cordonPreview.state : "",
	Error: window.cordonPreview ? window.cordonPreview.error : "",
	Decoded: window.cordonPreview ? window.cordonPreview.decoded : 0,
	CurrentTime: document.getElementById("preview").currentTime,
	Width: document.getElementById("preview").videoWidth,
	Status: document.getElementById("preview-status").textContent})`

// frameTiming is one decoded frame as requestVideoFrameCallback saw it.
type frameTiming struct {
	RTP     uint32  `json:"rtp"`
	Receive float64 `json:"receive"`
	Present float64 `json:"present"`
	Origin  float64 `json:"origin"`
}

// TestPreviewInBrowser plays a camera's live preview (WebRTC) in
// headless Chromium: the <video> advances more than 3 s of media with no
// error, the preview is a reader with transport "webrtc" while the page
// is open and goes away with the page, an H.265 camera shows a message
// rather than a black box, and the latency from a frame's first packet
// reaching the proxy to the frame at the browser is measured.
func TestPreviewInBrowser(t *testing.T) {
	ctx := browser(t, previewFlags...)
	cams := []camsim.Camera{
		{Name: "door", Codec: "h264", Width: 640, Height: 360, FPS: 25},
		{Name: "yard", Codec: "h265", Width: 640, Height: 360, FPS: 25},
	}
	gate := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "gate", Codec: "h264", Width: 640, Height: 360, FPS: 25}}}
	if err := gate.Start(); err != nil {
		t.Fatal(err)
	}
	p, _ := startConsoleProxy(t, cams, func(c *Config) {
		c.Cameras = append(c.Cameras, Camera{Name: "gate", URL: MustParseSecretURL(gate.URL("gate"))})
		c.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}}
	})
	base := "http://" + p.AdminAddr().String()
	waitAllUp(t, p, 15*time.Second)
	signIn(t, ctx, "ops", "console-pw")
	errs := pageErrors(ctx)

	st := checkDoorPreviewPlays(t, ctx, p, base)
	measurePreviewLatency(t, ctx, p)
	shoot(t, ctx, "console-camera.png")
	checkPreviewSurvivesReconnect(t, ctx, p, st.CurrentTime)
	checkH265PreviewMessage(t, ctx, base)
	checkPreviewWaitsForCamera(t, ctx, p, base, gate)

	// The door preview ended with its page.
	waitFor(t, "door's preview gone", 5*time.Second, func() bool {
		for _, r := range webrtcReaders(p) {
			if r.Camera == "door" {
				return false
			}
		}
		return true
	})
	if bad := pageErrorsBut(errs(), "status of 415"); len(bad) > 0 { // the H.265 offer's answer, shown in the page
		t.Errorf("page errors (CSP or script): %q", bad)
	}
}

// signIn makes the browser send user's credentials (HTTP Basic) with
// every request.
func signIn(t *testing.T, ctx context.Context, user, password string) {
	t.Helper()
	auth := network.Headers{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: auth}); err != nil {
		t.Fatal(err)
	}
}

// pollPreview reads the page's preview state every 100 ms until done
// says so or timeout passes, and returns the last state read.
func pollPreview(t *testing.T, ctx context.Context, timeout time.Duration, done func(previewState) bool) previewState {
	t.Helper()
	var st previewState
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if st, err = chromedp.Run(ctx, chromedp.Evaluate[previewState](previewStateJS)); err != nil {
			t.Fatal(err)
		}
		if done(st) {
			break
		}
	}
	return st
}

// checkDoorPreviewPlays opens door's page: its preview plays more than
// 3 s of 640-wide video, and is the one "webrtc" reader, by ops.
func checkDoorPreviewPlays(t *testing.T, ctx context.Context, p *Proxy, base string) previewState {
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/cameras/door"), chromedp.WaitVisible("#preview")); err != nil {
		t.Fatal(err)
	}
	var firstFrame time.Duration
	st := pollPreview(t, ctx, 20*time.Second, func(st previewState) bool {
		if st.Decoded > 0 && firstFrame == 0 {
			firstFrame = time.Since(start)
		}
		return st.Error != "" || st.CurrentTime > 3.5
	})
	t.Logf("preview: %+v; first frame %s after navigating", st, firstFrame.Round(time.Millisecond))
	if st.Error != "" || st.CurrentTime <= 3 || st.Width != 640 {
		t.Fatalf("preview of door: %+v; want more than 3 s of 640-wide video and no error", st)
	}
	readers := webrtcReaders(p)
	if len(readers) != 1 || readers[0].Camera != "door" || readers[0].User != "ops" || readers[0].PacketsOut == 0 {
		t.Errorf("webrtc readers %+v, want one of door by ops with packets", readers)
	}
	return st
}

// measurePreviewLatency logs the latency from a frame's first packet
// reaching the proxy to the frame received (last packet) and presented
// in the browser (same host, same clock), matching the page's frames to
// the proxy's arrivals by RTP timestamp.
func measurePreviewLatency(t *testing.T, ctx context.Context, p *Proxy) {
	frames, err := chromedp.Run(ctx, chromedp.Evaluate[[]frameTiming](`window.cordonPreview.frames`))
	if err != nil {
		t.Fatal(err)
	}
	var arrivals map[uint32]time.Time
	var proxyMean, proxyMax time.Duration
	p.preview.mu.Lock()
	for _, ps := range p.preview.sessions {
		arrivals = ps.out.delay.arrivals()
		proxyMean, proxyMax, _ = ps.out.delay.stats()
	}
	p.preview.mu.Unlock()
	var toReceive, toPresent []float64
	for _, f := range frames {
		a, ok := arrivals[f.RTP]
		if !ok || f.Receive == 0 {
			continue
		}
		am := float64(a.UnixNano()) / 1e6
		toReceive = append(toReceive, f.Origin+f.Receive-am)
		toPresent = append(toPresent, f.Origin+f.Present-am)
	}
	if len(toPresent) < 20 {
		t.Fatalf("only %d of %d frames matched by RTP timestamp (%d arrivals kept)", len(toPresent), len(frames), len(arrivals))
	}
	slices.Sort(toReceive)
	slices.Sort(toPresent)
	pct := func(v []float64, q float64) float64 { return v[int(q*float64(len(v)-1))] }
	summary := fmt.Sprintf("preview latency over %d frames, camera packet at the proxy → browser: received (last packet) median %.1f ms, p95 %.1f ms; presented median %.1f ms, p95 %.1f ms; in the proxy: mean %s, max %s",
		len(toPresent), pct(toReceive, .5), pct(toReceive, .95), pct(toPresent, .5), pct(toPresent, .95), proxyMean, proxyMax)
	t.Log(summary)
	if pct(toPresent, .5) <= 0 || pct(toPresent, .5) > 1000 {
		t.Errorf("median latency %.1f ms is not plausible", pct(toPresent, .5))
	}
}

// checkPreviewSurvivesReconnect clicks Reconnect camera on door's page
// (a POST with its CSRF token): the camera's session restarts and the
// preview, at before seconds, goes on for 3 s more.
func checkPreviewSurvivesReconnect(t *testing.T, ctx context.Context, p *Proxy, before float64) {
	if err := chromedp.Do(ctx, chromedp.Click("#reconnect")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "door reconnected", 10*time.Second, func() bool {
		return p.camera("door").reconnects.Load() == 1 && cameraState(p, "door") == stateUp
	})
	msg, err := chromedp.Run(ctx, chromedp.Text("#reconnect-status"))
	if err != nil {
		t.Fatal(err)
	}
	if msg != "session ended; reconnecting" {
		t.Errorf("reconnect status %q", msg)
	}
	st := pollPreview(t, ctx, 10*time.Second, func(st previewState) bool { return st.Error != "" || st.CurrentTime > before+3 })
	if st.Error != "" || st.CurrentTime <= before+3 || len(webrtcReaders(p)) != 1 {
		t.Errorf("preview after the camera reconnected: %+v (was at %.1f s), previews %d", st, before, len(webrtcReaders(p)))
	}
}

// checkH265PreviewMessage opens yard's page, an H.265 camera: Chromium's
// WebRTC (headless, software) does not offer H.265; the page says so
// instead of showing a black box.
func checkH265PreviewMessage(t *testing.T, ctx context.Context, base string) {
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/cameras/yard"), chromedp.WaitVisible("#preview")); err != nil {
		t.Fatal(err)
	}
	st := pollPreview(t, ctx, 10*time.Second, func(st previewState) bool { return st.Error != "" || st.CurrentTime > 1 })
	t.Logf("H.265 preview: %+v", st)
	switch {
	case st.CurrentTime > 1 && st.Error == "":
		t.Logf("this Chromium plays H.265 over WebRTC")
	case !strings.Contains(st.Status, "H.265"):
		t.Errorf("H.265 camera: status %q, want a message naming H.265", st.Status)
	}
}

// checkPreviewWaitsForCamera stops gate's camera and opens its page: the
// page says the camera is down, and the preview starts once a camera
// server is back on the same address.
func checkPreviewWaitsForCamera(t *testing.T, ctx context.Context, p *Proxy, base string, gate *camsim.Server) {
	gate.Close()
	waitFor(t, "gate down", 10*time.Second, func() bool { return cameraState(p, "gate") != stateUp })
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/cameras/gate"), chromedp.WaitVisible("#preview")); err != nil {
		t.Fatal(err)
	}
	var st previewState
	waitFor(t, "the page saying it waits for the camera", 5*time.Second, func() bool {
		var err error
		st, err = chromedp.Run(ctx, chromedp.Evaluate[previewState](previewStateJS))
		return err == nil && (st.Error != "" || strings.HasPrefix(st.Status, "waiting for the camera, which is down"))
	})
	if st.Error != "" {
		t.Errorf("preview of a camera that is down: %+v", st)
	}
	again := &camsim.Server{Addr: gate.Addr, Cameras: gate.Cameras}
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Close) // after the test, as the page stays on gate's preview
	st = pollPreview(t, ctx, 15*time.Second, func(st previewState) bool { return st.CurrentTime > 1 })
	if st.CurrentTime <= 1 || st.State != "playing" {
		t.Errorf("gate's preview after the camera came back: %+v", st)
	}
}

// TestPreviewOverTLSInBrowser: with admin_tls the console is served over
// HTTPS (its session cookie Secure) and the preview plays there too.
func TestPreviewOverTLSInBrowser(t *testing.T) {
	ctx := browser(t, append(previewFlags, chromedp.Flag("ignore-certificate-errors", true))...) // the test's self-signed certificate
	certFile, keyFile, _ := writeAdminCert(t)
	p, _ := startConsoleProxy(t, []camsim.Camera{{Name: "door", Codec: "h264"}}, func(c *Config) {
		c.AdminUsers = []AdminUser{{User: "ops", PasswordHash: testAdminHash}}
		c.AdminTLS = TLS{Cert: certFile, Key: keyFile}
	})
	waitFor(t, "door up", 10*time.Second, func() bool { return cameraState(p, "door") == stateUp })
	signIn(t, ctx, "ops", "console-pw")
	if err := chromedp.Do(ctx, chromedp.Navigate("https://"+p.AdminAddr().String()+"/cameras/door"), chromedp.WaitVisible("#preview")); err != nil {
		t.Fatal(err)
	}
	st := pollPreview(t, ctx, 15*time.Second, func(st previewState) bool { return st.Error != "" || st.CurrentTime > 1.5 })
	if st.Error != "" || st.CurrentTime <= 1.5 {
		t.Errorf("preview over HTTPS: %+v", st)
	}
}

package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// gstCamera is GStreamer's RTSP server (testdata/gstcam.py) playing a camera.
type gstCamera struct {
	cmd  *exec.Cmd
	port int
}

// startGstCamera starts a GStreamer RTSP camera on port (0: any) serving
// path, with Basic auth when user is not empty.
func startGstCamera(t *testing.T, port int, path, user, pass, codec string) *gstCamera {
	t.Helper()
	testutil.NeedTool(t, "/usr/bin/python3", "gst-launch-1.0")
	args := []string{"testdata/gstcam.py", fmt.Sprint(port), path}
	if user != "" {
		args = append(args, user, pass)
	}
	args = append(args, codec)
	cmd := exec.Command("/usr/bin/python3", args...)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gstCamera{cmd: cmd}
	t.Cleanup(g.kill)
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "READY ") {
			t.Fatalf("gstcam.py did not start (python3-gi and gir1.2-gst-rtsp-server-1.0 needed): %q", l)
		}
		fmt.Sscan(strings.TrimPrefix(l, "READY "), &g.port)
	case <-time.After(10 * time.Second):
		t.Fatal("gstcam.py did not start within 10 s")
	}
	return g
}

func (g *gstCamera) kill() {
	if g.cmd.Process != nil {
		g.cmd.Process.Kill()
		g.cmd.Wait()
	}
}

func (g *gstCamera) url(user, pass, path string) string {
	if user != "" {
		return fmt.Sprintf("rtsp://%s:%s@127.0.0.1:%d/%s", user, pass, g.port, path)
	}
	return fmt.Sprintf("rtsp://127.0.0.1:%d/%s", g.port, path)
}

// runTool runs an external reader with a deadline and returns its output.
func runTool(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	t.Logf("%s took %v", name, time.Since(start).Round(time.Millisecond))
	return string(out), err
}

// TestInteropReaders reads the proxy with ffprobe, ffmpeg and GStreamer's
// rtspsrc, over TCP and UDP, from a camsim camera and a GStreamer camera.
func TestInteropReaders(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	testutil.NeedTool(t, "ffmpeg", "ffprobe", "gst-launch-1.0")
	sim := startCamsim(t, "sim")
	sim265 := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "hevc", Codec: "h265", FPS: 25}}}
	if err := sim265.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim265.Close)
	gst := startGstCamera(t, 0, "live", "", "", "h264")
	log, _ := newLog(t)
	cfg := withUDP(t, testConfig(
		Camera{Name: "sim", URL: MustParseSecretURL(sim.URL("sim"))},
		Camera{Name: "gst", URL: MustParseSecretURL(gst.url("", "", "live")), Transport: TransportUDP},
		Camera{Name: "hevc", URL: MustParseSecretURL(sim265.URL("hevc"))},
		Camera{Name: "auto", URL: MustParseSecretURL(sim.URL("sim")), Transport: TransportAuto},
	))
	p := startProxy(t, cfg, log)
	for _, cam := range []string{"sim", "gst", "hevc", "auto"} {
		waitFor(t, cam+" up", 10*time.Second, func() bool {
			c := p.camera(cam)
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.state == stateUp
		})
	}
	for _, cam := range []string{"sim", "gst"} {
		url := readerURL(p, cam)
		for _, tr := range []string{"tcp", "udp"} {
			t.Run(cam+"/"+tr, func(t *testing.T) {
				if cam == "sim" { // ffmpeg below covers the GStreamer camera
					out, err := runTool(t, 10*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", tr,
						"-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", url)
					if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "h264,") {
						t.Fatalf("ffprobe: %v\n%s", err, out)
					}
				}
				out, err := runTool(t, 10*time.Second, "ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", tr, "-i", url,
					"-frames:v", "10", "-f", "null", "-")
				// -v error: any output is a decode error, such as a reader
				// that did not start on a keyframe.
				if err != nil || strings.TrimSpace(out) != "" {
					t.Fatalf("ffmpeg decoding 10 frames: %v\n%s", err, out)
				}
				proto := map[string]string{"tcp": "tcp", "udp": "udp"}[tr]
				out, err = runTool(t, 10*time.Second, "gst-launch-1.0", "-q", "rtspsrc", "location="+url, "protocols="+proto, "latency=0",
					"!", "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!", "identity", "eos-after=10", "!", "fakesink")
				if err != nil {
					t.Fatalf("gst-launch rtspsrc decoding 10 frames: %v\n%s", err, out)
				}
			})
		}
	}
	// transport auto pulls over UDP first (camsim serves UDP).
	waitFor(t, "packets from the auto-transport camera", 5*time.Second, func() bool {
		for _, s := range p.Status() {
			if s.Name == "auto" {
				return s.PacketsIn > 25
			}
		}
		return false
	})
	// H.265 (keyframes flagged by the cleaner's H.265 path): ffmpeg over TCP.
	out, err := runTool(t, 10*time.Second, "ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", readerURL(p, "hevc"),
		"-frames:v", "10", "-f", "null", "-")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("ffmpeg decoding 10 H.265 frames: %v\n%s", err, out)
	}
}

// TestCameraRestart kills the GStreamer camera during playback and starts it
// again on the same port: the reader stays attached and keeps receiving. The
// camera's password never shows in logs, /metrics or /v1/cameras.
func TestCameraRestart(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	const secret = "Sup3rS3cret-pw"
	gst := startGstCamera(t, 0, "cam", "admin", secret, "h264")
	port := gst.port
	log, lb := newLog(t)
	cfg := testConfig(Camera{Name: "door", URL: MustParseSecretURL(gst.url("admin", secret, "cam"))})
	p := startProxy(t, cfg, log)

	r := waitReader(t, "camera up", 10*time.Second, readerURL(p, "door"))
	waitFor(t, "packets", 5*time.Second, func() bool { return r.packets.Load() > 20 })

	gst.kill()
	time.Sleep(500 * time.Millisecond)
	before := r.packets.Load()
	waitFor(t, "camera down", 5*time.Second, func() bool { return p.Status()[0].State != stateUp })
	startGstCamera(t, port, "cam", "admin", secret, "h264")
	waitFor(t, "packets after the camera returned", 15*time.Second, func() bool { return r.packets.Load() > before+20 })
	if st := p.Status()[0]; st.Reconnects == 0 || len(st.Readers) != 1 {
		t.Errorf("after restart: reconnects=%d readers=%d; want >0 and 1", st.Reconnects, len(st.Readers))
	}

	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	api := httpGet(t, fmt.Sprintf("http://%s/v1/cameras", p.AdminAddr()))
	for what, text := range map[string]string{"log": lb.String(), "/metrics": metrics, "/v1/cameras": api} {
		if strings.Contains(text, secret) {
			t.Errorf("camera password appears in %s", what)
		}
	}
	if strings.Contains(api, "admin:xxxxx@") || strings.Contains(api, `"url"`) {
		t.Errorf("/v1/cameras shows the camera's URL:\n%s", api)
	}
	if !strings.Contains(metrics, `cordon_camera_reconnects_total{camera="door"}`) || !strings.Contains(metrics, `cordon_camera_up{camera="door"} 1`) {
		t.Errorf("/metrics lacks camera series:\n%s", metrics)
	}
	// The TCP reader's frames went through the frame-batched path, each
	// observed in the delay histogram.
	if m := regexp.MustCompile(`(?m)^cordon_reader_frame_delay_seconds_count (\d+)$`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
		t.Errorf("/metrics: no frame observed in cordon_reader_frame_delay_seconds (%v)", m)
	}
}

// TestSDPIsGenerated checks that the SDP a reader gets names no camera
// address, path, title or vendor attribute.
func TestSDPIsGenerated(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	gst := startGstCamera(t, 0, "vendor-path-xyz", "", "", "h264")
	log, _ := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "c", URL: MustParseSecretURL(gst.url("", "", "vendor-path-xyz"))}), log)
	var sdp string
	waitFor(t, "DESCRIBE", 10*time.Second, func() bool {
		res, err := rawRequest(p.RTSPAddr().String(), base.Describe, readerURL(p, "c"), nil)
		sdp = string(res.Body)
		return err == nil && res.StatusCode == base.StatusOK
	})
	for _, bad := range []string{fmt.Sprint(gst.port), "vendor-path-xyz", "GStreamer", "a=tool", "a=range"} {
		if strings.Contains(sdp, bad) {
			t.Errorf("reader SDP contains %q:\n%s", bad, sdp)
		}
	}
	t.Logf("reader SDP:\n%s", sdp)
	if !strings.Contains(sdp, "a=control:trackID=0") {
		t.Errorf("reader SDP has no generated control:\n%s", sdp)
	}
}

// rawRequest sends one RTSP request on a fresh connection and reads the reply.
func rawRequest(addr string, method base.Method, url string, header base.Header) (*base.Response, error) {
	u, err := base.ParseURL(url)
	if err != nil {
		return nil, err
	}
	h := base.Header{"CSeq": base.HeaderValue{"1"}}
	for k, v := range header {
		h[k] = v
	}
	return rawRequestReq(addr, &base.Request{Method: method, URL: u, Header: h})
}

func rawRequestReq(addr string, req *base.Request) (*base.Response, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := req.Marshal()
	if _, err := nc.Write(b); err != nil {
		return nil, err
	}
	var res base.Response
	err = res.Unmarshal(bufio.NewReader(nc))
	return &res, err
}

// TestIsolation: ANNOUNCE/RECORD are refused; wrong passwords get 401 (and
// are counted); a reader from outside its networks and a reader of a camera
// not in its list get 403; max_readers is enforced.
func TestIsolation(t *testing.T) {
	t.Parallel() // waits on external peers, not timing-sensitive
	p, delays := startIsolationProxy(t)
	base1 := "rtsp://%s@" + p.RTSPAddr().String() + "/%s"
	waitFor(t, "cameras up", 10*time.Second, func() bool {
		st := p.Status()
		return st[0].State == stateUp && st[1].State == stateUp
	})
	checkIsolationLogins(t, p, base1)
	checkPublishRefused(t, base1)

	// max_readers: 1 on camera a.
	first, err := dialReaderAuth(t, fmt.Sprintf(base1, "nvr:good", "a"))
	if err != nil {
		t.Fatal(err)
	}
	_ = first
	if _, err := dialReaderAuth(t, fmt.Sprintf(base1, "nvr:good", "a")); rtspCode(err) != 503 {
		t.Errorf("second reader of a max_readers=1 camera: %v, want 503", err)
	}

	slept := delays()
	if len(slept) != 4 {
		t.Errorf("%d failed logins were delayed, want 4", len(slept))
	}
	for _, d := range slept {
		// AuthFailureDelay is 20 ms in testConfig: delays are random in [10, 20] ms.
		if d < 10*time.Millisecond || d > 20*time.Millisecond {
			t.Errorf("failed-login delay %v outside [10ms, 20ms]", d)
		}
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	for _, want := range []string{
		"cordon_reader_auth_failures_total 4",
		`cordon_reader_refused_total{reason="network"} 1`,
		`cordon_reader_refused_total{reason="camera"} 2`,
		`cordon_reader_refused_total{reason="max_readers"} 1`,
		`cordon_reader_refused_total{reason="publish"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// startIsolationProxy starts cameras a (max_readers 1) and b, readers nvr
// (camera a), hashed (argon2id) and far (from 10.0.0.0/8 only), no
// anonymous access; delays returns the failed-login delays slept so far.
func startIsolationProxy(t *testing.T) (p *Proxy, delays func() []time.Duration) {
	t.Helper()
	sim := startCamsim(t, "a", "b")
	log, _ := newLog(t)
	cfg := testConfig(
		Camera{Name: "a", URL: MustParseSecretURL(sim.URL("a")), MaxReaders: 1},
		Camera{Name: "b", URL: MustParseSecretURL(sim.URL("b"))},
	)
	cfg.Readers = []Reader{
		{User: "nvr", Password: "good", Cameras: []string{"a"}},
		{User: "hashed", PasswordHash: testArgonHash, Cameras: []string{"*"}},
		{User: "far", Password: "good", Cameras: []string{"*"}, Networks: []string{"10.0.0.0/8"}},
	}
	cfg.AllowAnonymous = false
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	var delayMu sync.Mutex
	var slept []time.Duration
	p.sleep = func(d time.Duration) {
		delayMu.Lock()
		slept = append(slept, d)
		delayMu.Unlock()
		time.Sleep(d)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, func() []time.Duration {
		delayMu.Lock()
		defer delayMu.Unlock()
		return slices.Clone(slept)
	}
}

// rtspCode is the status code of a gortsplib client's answer: 200, the
// code of a refusal, or -1 for another error.
func rtspCode(err error) int {
	var bad liberrors.ErrClientBadStatusCode
	if errors.As(err, &bad) {
		return int(bad.Code)
	}
	if err != nil {
		return -1
	}
	return 200
}

// checkIsolationLogins checks who may DESCRIBE which camera with which
// credentials, over Digest (gortsplib, ffprobe) and Basic.
func checkIsolationLogins(t *testing.T, p *Proxy, base1 string) {
	t.Helper()
	describe := func(userinfo, cam string) int {
		u, _ := base.ParseURL(fmt.Sprintf(base1, userinfo, cam))
		cl := &gortsplib.Client{Scheme: "rtsp", Host: u.Host}
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		_, _, err := cl.Describe(u)
		return rtspCode(err)
	}
	for _, tc := range []struct {
		userinfo, cam string
		want          int
	}{
		{"nvr:good", "a", 200},
		{"nvr:wrong", "a", 401},
		{"nobody:good", "a", 401},
		{"nvr:good", "b", 403},    // camera not in the reader's list
		{"far:good", "a", 403},    // 127.0.0.1 is outside 10.0.0.0/8
		{"nvr:good", "nope", 403}, // no hint whether a camera exists
	} {
		if got := describe(tc.userinfo, tc.cam); got != tc.want {
			t.Errorf("DESCRIBE %s as %s = %d, want %d", tc.cam, tc.userinfo, got, tc.want)
		}
	}
	// A hashed password can only be checked with Basic (the gortsplib client
	// above would choose Digest).
	for _, tc := range []struct {
		userinfo, cam string
		want          base.StatusCode
	}{
		{"hashed:s3cret", "b", 200}, // argon2id hash
		{"hashed:s3cret", "nope", 404},
		{"hashed:wrong", "b", 401},
	} {
		h := base.Header{"Authorization": base.HeaderValue{"Basic " + base64.StdEncoding.EncodeToString([]byte(tc.userinfo))}}
		res, err := rawRequest(p.RTSPAddr().String(), base.Describe, readerURL(p, tc.cam), h)
		if err != nil || res.StatusCode != tc.want {
			t.Errorf("Basic DESCRIBE %s as %s = %v %v, want %d", tc.cam, tc.userinfo, res, err, tc.want)
		}
	}
	// Digest (ffmpeg prefers it when offered).
	if out, err := runTool(t, 10*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=codec_name",
		"-of", "csv=p=0", fmt.Sprintf(base1, "nvr:good", "a")); err != nil {
		t.Errorf("ffprobe with Digest credentials: %v\n%s", err, out)
	}
	if out, err := runTool(t, 10*time.Second, "ffprobe", "-v", "error", "-rtsp_transport", "tcp",
		fmt.Sprintf(base1, "nvr:bad", "a")); err == nil || !strings.Contains(out, "401") {
		t.Errorf("ffprobe with a wrong password: %v\n%s", err, out)
	}
}

// checkPublishRefused: ANNOUNCE/RECORD is answered 501.
func checkPublishRefused(t *testing.T, base1 string) {
	t.Helper()
	u, _ := base.ParseURL(fmt.Sprintf(base1, "nvr:good", "a"))
	pub := &gortsplib.Client{}
	err := pub.StartRecording(u.String(), &description.Session{Medias: []*description.Media{{
		Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}},
	}}})
	if err == nil {
		pub.Close()
		t.Fatal("ANNOUNCE/RECORD accepted")
	}
	if c := rtspCode(err); c != 501 {
		t.Errorf("ANNOUNCE answered %d (%v), want 501", c, err)
	}
}

func dialReaderAuth(t *testing.T, url string) (*rtspReader, error) {
	return dialReader(t, url, gortsplib.ProtocolTCP)
}

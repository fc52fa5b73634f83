package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// trunkKeys is one end's key pair, made by GenerateTrunkKey.
type trunkKeys struct{ cert, key, fp string }

func newTrunkKeys(t *testing.T, name string) trunkKeys {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fp, err := GenerateTrunkKey(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return trunkKeys{filepath.Join(dir, TrunkCertFile), filepath.Join(dir, TrunkKeyFile), fp}
}

// countingForwarder relays TCP connections to target and counts them: the
// camera's view of how many sessions were opened towards it.
type countingForwarder struct {
	ln       net.Listener
	accepted atomic.Int64
}

// camsimHost is the host:port sim serves its cameras on.
func camsimHost(sim *camsim.Server) string {
	return strings.TrimPrefix(strings.Split(sim.URL("cam1"), "/cam1")[0], "rtsp://")
}

// url is the URL of the camera at path through f.
func (f *countingForwarder) url(path string) string {
	return "rtsp://" + f.ln.Addr().String() + "/" + path
}

func startForwarder(t *testing.T, target string) *countingForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &countingForwarder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
			}()
		}
	}()
	return f
}

// edgeConfig is an edge with camera cam1 (at camURL) that lets the core
// with fingerprint coreFP connect to listen.
func edgeConfig(camURL, listen string, k trunkKeys, coreFP string) Config {
	cfg := testConfig(Camera{Name: "cam1", URL: MustParseSecretURL(camURL)})
	cfg.Trunk = TrunkEnd{Listen: listen, Cert: k.cert, Key: k.key, Peers: []string{coreFP}}
	return cfg
}

// coreConfig is a core with one trunk "site-a" to the edge at addr.
func coreConfig(addr string, k trunkKeys, edgeFP string, cameras ...string) Config {
	cfg := testConfig()
	cfg.Trunk = TrunkEnd{Cert: k.cert, Key: k.key}
	cfg.Trunks = []Trunk{{Name: "site-a", Address: addr, Fingerprint: edgeFP, Cameras: cameras}}
	return cfg
}

func trunksStatus(t *testing.T, p *Proxy) TrunksStatus {
	t.Helper()
	var st TrunksStatus
	if err := json.Unmarshal([]byte(httpGet(t, fmt.Sprintf("http://%s/v1/trunks", p.AdminAddr()))), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// ffprobeTrunk checks, in a subtest, that ffprobe (within timeout, showing
// entries) finds H.264 at the trunk camera url.
func ffprobeTrunk(t *testing.T, url string, timeout time.Duration, entries string) {
	t.Run("ffprobe", func(t *testing.T) {
		testutil.NeedTool(t, "ffprobe")
		out, err := runTool(t, timeout, "ffprobe", "-v", "error", "-rtsp_transport", "tcp",
			"-show_entries", entries, "-of", "csv=p=0", url)
		if err != nil || !strings.Contains(out, "h264") {
			t.Errorf("ffprobe through the trunk: %v\n%s", err, out)
		}
	})
}

// TestTrunk: camsim → edge → QUIC → core → readers (in-process and
// ffprobe); the camera sees one session whatever the core's readers do;
// /v1/trunks and the metrics show the trunk; the edge restarts and the
// core's reader gets packets again without reconnecting.
func TestTrunk(t *testing.T) {
	sim := startCamsim(t, "cam1")
	fwd := startForwarder(t, camsimHost(sim))
	camURL := fwd.url("cam1")
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	elog, _ := newLog(t)
	edge := startProxy(t, edgeConfig(camURL, "127.0.0.1:0", edgeK, coreK.fp), elog)
	edgeAddr := edge.TrunkAddr().String()
	clog, _ := newLog(t)
	core := startProxy(t, coreConfig(edgeAddr, coreK, edgeK.fp, "*"), clog)

	url := readerURL(core, "site-a/cam1")
	r1 := waitReader(t, "a core reader of site-a/cam1", 10*time.Second, url)
	waitFor(t, "packets at the core reader", 5*time.Second, func() bool { return r1.packets.Load() > 20 })
	if first := firstPacket(r1); !startsWithSPS(first) {
		t.Errorf("the core reader's first packet is not a keyframe's SPS: % x", first[:min(8, len(first))])
	}
	// The admin API and console serve remote cameras under their full name.
	if a := core.AdminAddr(); a != nil {
		for _, path := range []string{"/v1/cameras/site-a/cam1", "/cameras/site-a/cam1"} {
			if body := httpGet(t, "http://"+a.String()+path); !strings.Contains(body, "site-a/cam1") {
				t.Errorf("%s does not show site-a/cam1:\n%s", path, body)
			}
		}
		if body := httpGet(t, "http://"+a.String()+"/v1/trunks"); !strings.Contains(body, "site-a") {
			t.Errorf("/v1/trunks does not show the trunk:\n%s", body)
		}
	}
	r2 := waitReader(t, "a second core reader", 5*time.Second, url)
	waitFor(t, "packets at the second reader", 5*time.Second, func() bool { return r2.packets.Load() > 20 })
	if !startsWithSPS(firstPacket(r2)) {
		t.Error("the second core reader did not start at a keyframe (the core's GOP cache)")
	}
	if rs := edge.Status()[0].Readers; len(rs) != 1 || rs[0].User != "trunk:"+coreK.fp || rs[0].PacketsOut == 0 {
		t.Errorf("edge readers of cam1 with two core readers: %+v; want the trunk alone", rs)
	}
	r2.cl.Close()

	ffprobeTrunk(t, url, 10*time.Second, "stream=codec_name,width,height")
	if n := fwd.accepted.Load(); n != 1 {
		t.Errorf("the camera saw %d connections; want 1 whatever the core's readers do", n)
	}

	st := trunksStatus(t, core)
	if len(st.Trunks) != 1 || st.Trunks[0].State != trunkUp || st.Trunks[0].Cameras != 1 || st.Trunks[0].MediaBytes == 0 || st.Trunks[0].RTT <= 0 {
		t.Errorf("core /v1/trunks: %+v", st.Trunks)
	}
	if tr := st.Trunks; len(tr) == 1 && tr[0].MediaBytes > 0 {
		t.Logf("trunk: media %d B, QUIC received %d B (%.1f %% overhead incl. acks and handshake), RTT %s",
			tr[0].MediaBytes, tr[0].BytesReceived, 100*(float64(tr[0].BytesReceived)/float64(tr[0].MediaBytes)-1), tr[0].RTT)
	}
	est := trunksStatus(t, edge)
	if est.Edge == nil || len(est.Edge.Cores) != 1 || est.Edge.Cores[0].Fingerprint != coreK.fp || est.Edge.Cores[0].Cameras != 1 {
		t.Errorf("edge /v1/trunks: %+v", est.Edge)
	}
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", core.AdminAddr()))
	for _, want := range []string{`cordon_trunk_up{trunk="site-a"} 1`, `cordon_trunk_cameras{trunk="site-a"} 1`, `cordon_camera_up{camera="site-a/cam1"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("core metrics lack %s", want)
		}
	}

	// The edge goes away and comes back on the same address: the core's
	// reader stays attached and gets packets again.
	edge.Close()
	time.Sleep(300 * time.Millisecond)
	before := r1.packets.Load()
	startProxy(t, edgeConfig(camURL, edgeAddr, edgeK, coreK.fp), elog)
	waitFor(t, "packets at the core reader after the edge restarted", 10*time.Second, func() bool { return r1.packets.Load() > before+20 })
	if n := fwd.accepted.Load(); n != 2 {
		t.Errorf("the camera saw %d connections after the edge restarted; want 2", n)
	}
}

// waitRefused waits (for what, up to within) until log holds the refusal
// and the fingerprint fp, then checks that p's first trunk is not up
// (reporting it as up with why).
func waitRefused(t *testing.T, p *Proxy, log *logBuf, what, refusal, fp string, within time.Duration, why string) {
	t.Helper()
	waitFor(t, what, within, func() bool {
		return strings.Contains(log.String(), refusal) && strings.Contains(log.String(), fp)
	})
	if st := p.TrunksStatus().Trunks[0]; st.State == trunkUp {
		t.Errorf("trunk up with %s: %+v", why, st)
	}
}

// TestTrunkRefusals: a core whose certificate the edge does not pin, and
// a core that pins another certificate than the edge's, never get a
// camera, and each refusal is logged with the fingerprint seen; a camera
// the edge does not list is a clean error.
func TestTrunkRefusals(t *testing.T) {
	sim := startCamsim(t, "cam1")
	edgeK, coreK, otherK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core"), newTrunkKeys(t, "other")
	elog, ebuf := newLog(t)
	edge := startProxy(t, edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, coreK.fp), elog)
	addr := edge.TrunkAddr().String()

	t.Run("unknown client certificate", func(t *testing.T) {
		clog, _ := newLog(t)
		core := startProxy(t, coreConfig(addr, otherK, edgeK.fp, "cam1"), clog)
		waitFor(t, "the edge to refuse the core", 5*time.Second, func() bool {
			return strings.Contains(ebuf.String(), "certificate not pinned") && strings.Contains(ebuf.String(), otherK.fp)
		})
		waitFor(t, "the core to see the trunk down", 5*time.Second, func() bool {
			st := core.TrunksStatus().Trunks[0]
			return st.State != trunkUp && st.LastError != ""
		})
		if _, err := dialReader(t, readerURL(core, "site-a/cam1"), gortsplib.ProtocolTCP); err == nil {
			t.Error("a reader got site-a/cam1 through a refused trunk")
		}
		if est := edge.TrunksStatus().Edge; est.Refused == 0 {
			t.Error("edge refused count is 0")
		}
	})
	t.Run("wrong edge fingerprint", func(t *testing.T) {
		clog, cbuf := newLog(t)
		core := startProxy(t, coreConfig(addr, coreK, otherK.fp, "cam1"), clog)
		waitRefused(t, core, cbuf, "the core to refuse the edge", "certificate not pinned", edgeK.fp, 5*time.Second, "a wrong fingerprint")
	})
	t.Run("camera the edge does not list", func(t *testing.T) {
		clog, _ := newLog(t)
		cfg := coreConfig(addr, coreK, edgeK.fp, "nope")
		cfg.Trunks[0].AlwaysOn = true // (on demand, it would try only for a reader)
		core := startProxy(t, cfg, clog)
		want := `camera "nope" is not listed by this edge`
		waitFor(t, "the edge's refusal at the core", 5*time.Second, func() bool {
			for _, s := range core.Status() {
				if s.Name == "site-a/nope" && s.State == stateDown && strings.Contains(s.LastError, want) {
					return true
				}
			}
			return false
		})
		// A core that names a URL, or a path, gets the same answer.
		conn := dialTrunk(t, addr, coreK, edgeK.fp)
		for _, name := range []string{"rtsp://10.0.0.1/stream", "../cam1", "cam1/x"} {
			if ans := ask(t, conn, trunkRequest{Op: trunkOpPlay, Camera: name}); !strings.Contains(ans.Error, "is not listed by this edge") {
				t.Errorf("play %q: %+v", name, ans)
			}
		}
		if ans := ask(t, conn, trunkRequest{Op: trunkOpCatalogue}); len(ans.Cameras) != 1 || ans.Cameras[0].Name != "cam1" {
			t.Errorf("catalogue: %+v", ans)
		}
	})
}

// dialTrunk connects to an edge as a core would, with keys k, pinning edgeFP.
func dialTrunk(t *testing.T, addr string, k trunkKeys, edgeFP string) *quic.Conn {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, trunkTLS(cert, trunkPins(edgeFP), false, testutil.Logger(t), "edge"), trunkQUICConfig(Timeouts{Camera: 3 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

// ask sends one request on a new stream and returns the edge's answer.
func ask(t *testing.T, conn *quic.Conn, req trunkRequest) trunkAnswer {
	t.Helper()
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer st.CancelRead(0)
	st.SetDeadline(time.Now().Add(5 * time.Second))
	if err := writeJSONFrame(st, req); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var ans trunkAnswer
	if err := readJSONFrame(st, maxTrunkAnswer, &ans); err != nil {
		t.Fatal(err)
	}
	return ans
}

// firstPacket is the payload of the first packet r got.
func firstPacket(r *rtspReader) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first[0].Payload
}

// TestTrunkOnDemandEdgeCamera: an on-demand camera of the edge starts when
// a core asks for it through the trunk.
func TestTrunkOnDemandEdgeCamera(t *testing.T) {
	sim := startCamsim(t, "cam1")
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	elog, _ := newLog(t)
	ecfg := edgeConfig(sim.URL("cam1"), "127.0.0.1:0", edgeK, coreK.fp)
	ecfg.Cameras[0].OnDemand = true
	edge := startProxy(t, ecfg, elog)
	if s := edge.Status()[0]; s.State != stateIdle {
		t.Fatalf("edge camera %s before the core asked", s.State)
	}
	clog, _ := newLog(t)
	core := startProxy(t, coreConfig(edge.TrunkAddr().String(), coreK, edgeK.fp, "cam1"), clog)
	r := waitReader(t, "a core reader of the on-demand camera", 10*time.Second, readerURL(core, "site-a/cam1"))
	waitFor(t, "packets", 5*time.Second, func() bool { return r.packets.Load() > 20 })
}

//go:build linux

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// envNetnsEdge makes the test binary run an edge proxy from the named
// configuration file (in the network namespace the test started it in)
// instead of the tests, until SIGTERM or SIGKILL.
const envNetnsEdge = "CORDON_TEST_NETNS_EDGE"

func TestMain(m *testing.M) {
	if cfgPath := os.Getenv(envNetnsEdge); cfgPath != "" {
		os.Exit(runNetnsEdge(cfgPath))
	}
	os.Exit(m.Run())
}

// runNetnsEdge is the edge process of TestTrunkNetns.
func runNetnsEdge(cfgPath string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		log.Error("edge config", "error", err)
		return 2
	}
	p, err := New(cfg, log)
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		log.Error("edge start", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	p.Close()
	return 0
}

// netnsLab is three network namespaces the test creates, named uniquely
// for this run and deleted by t.Cleanup:
//
//	cam  10.201.1.1 ──veth── 10.201.1.2  edge  10.201.2.2 ──veth (netem)── 10.201.2.1  core
//
// The camera network and the WAN are separate links: the core cannot
// reach the camera, only the edge.
type netnsLab struct {
	ip             string
	cam, edge, wan string // namespace names (wan: the core's)
	netem          bool   // the WAN link has netem's delay and loss
}

const (
	labCamAddr  = "10.201.1.1"
	labEdgeCam  = "10.201.1.2"
	labEdgeWAN  = "10.201.2.2"
	labCoreWAN  = "10.201.2.1"
	labTrunkRTP = "7443" // a fixed port is safe: the namespaces are this run's alone
)

func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	testutil.NeedRoot(t, "creates network namespaces, veth pairs and a netem qdisc")
	tools := testutil.NeedTool(t, "ip", "tc")
	var rb [3]byte
	rand.Read(rb[:])
	id := hex.EncodeToString(rb[:]) // veth names are at most 15 bytes
	l := &netnsLab{ip: tools[0], cam: "cdcam" + id, edge: "cdedge" + id, wan: "cdcore" + id}
	run := func(name string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{l.cam, l.edge, l.wan} {
		run(l.ip, "netns", "add", ns)
		t.Cleanup(func() { exec.Command(l.ip, "netns", "del", ns).Run() })
		run(l.ip, "-n", ns, "link", "set", "lo", "up")
	}
	link := func(a, b, nsA, nsB, addrA, addrB string) {
		run(l.ip, "link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB)
		run(l.ip, "-n", nsA, "addr", "add", addrA+"/24", "dev", a)
		run(l.ip, "-n", nsB, "addr", "add", addrB+"/24", "dev", b)
		run(l.ip, "-n", nsA, "link", "set", a, "up")
		run(l.ip, "-n", nsB, "link", "set", b, "up")
	}
	link("vc"+id, "ve"+id, l.cam, l.edge, labCamAddr, labEdgeCam)
	link("vw"+id, "vk"+id, l.edge, l.wan, labEdgeWAN, labCoreWAN)
	// The WAN: 10 ms each way and 1 % loss in each direction, when the
	// kernel has netem (CONFIG_NET_SCH_NETEM; some CI and container
	// kernels do not: then the link is a plain veth, and the test says so).
	l.netem = true
	for _, dev := range [][2]string{{l.edge, "vw" + id}, {l.wan, "vk" + id}} {
		out, err := exec.Command(l.ip, "netns", "exec", dev[0], tools[1], "qdisc", "add", "dev", dev[1], "root", "netem", "delay", "10ms", "loss", "1%").CombinedOutput()
		if err != nil {
			if !strings.Contains(string(out), "qdisc kind is unknown") {
				t.Fatalf("tc qdisc add netem: %v\n%s", err, out)
			}
			t.Logf("no netem in this kernel (%s): the WAN link has no added delay or loss", strings.TrimSpace(string(out)))
			l.netem = false
			break
		}
	}
	return l
}

// inNetns runs f on a thread moved into namespace ns (and never returned
// to the scheduler). Sockets f opens belong to ns, whatever goroutine uses
// them afterwards.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		h, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := unix.Setns(int(h.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// listenPacketIn is a trunkNet.listenPacket that opens sockets in ns.
func listenPacketIn(ns string) func(network, address string) (net.PacketConn, error) {
	return func(network, address string) (pc net.PacketConn, err error) {
		err = inNetns(ns, func() error {
			pc, err = net.ListenPacket(network, address)
			return err
		})
		return pc, err
	}
}

// rtspRequestRE finds RTSP request lines in what a client sends.
var rtspRequestRE = regexp.MustCompile(`(?m)^([A-Z_]+) (\S+) RTSP/1\.0\r$`)

// labCamera is the camera as its network sees it: a TCP port in the
// camera namespace relaying to camsim, which records where each
// connection came from and every RTSP request it carried.
type labCamera struct {
	ln       net.Listener
	mu       sync.Mutex
	remotes  []string
	requests []string // "METHOD URL"
}

func startLabCamera(t *testing.T, ns, target string) *labCamera {
	t.Helper()
	c := &labCamera{}
	if err := inNetns(ns, func() (err error) {
		c.ln, err = net.Listen("tcp", labCamAddr+":554")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ln.Close() })
	go func() {
		for {
			conn, err := c.ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.remotes = append(c.remotes, conn.RemoteAddr().String())
			c.mu.Unlock()
			go c.relay(conn, target)
		}
	}()
	return c
}

func (c *labCamera) relay(conn net.Conn, target string) {
	defer conn.Close()
	up, err := net.Dial("tcp", target) // from this goroutine's thread: the host's loopback
	if err != nil {
		return
	}
	defer up.Close()
	go func() { io.Copy(conn, up); conn.Close() }()
	var seen bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, err := up.Write(buf[:n]); err != nil {
				return
			}
			seen.Write(buf[:n])
			for _, m := range rtspRequestRE.FindAllSubmatch(seen.Bytes(), -1) {
				c.mu.Lock()
				c.requests = append(c.requests, string(m[1])+" "+string(m[2]))
				c.mu.Unlock()
			}
			// Keep only an unfinished line for the next read.
			if i := bytes.LastIndexByte(seen.Bytes(), '\n'); i >= 0 {
				rest := append([]byte(nil), seen.Bytes()[i+1:]...)
				seen.Reset()
				seen.Write(rest)
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *labCamera) seen() (remotes, requests []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.remotes...), append([]string(nil), c.requests...)
}

// writeNetnsEdgeConfig writes the edge's configuration: camera cam1 at
// camURL, key pair k, and trunk (the rest of the trunk: section).
func writeNetnsEdgeConfig(t *testing.T, camURL string, k trunkKeys, trunk string) string {
	t.Helper()
	yml := fmt.Sprintf(`listen:
  rtsp: 127.0.0.1:8554
  admin: "off"
  udp_rtp: "off"
allow_anonymous: true
cameras:
  - name: cam1
    url: %s
timeouts:
  camera: 3s
  backoff_min: 200ms
  backoff_max: 1s
trunk:
  cert: %s
  key: %s
%s`, camURL, k.cert, k.key, trunk)
	path := filepath.Join(t.TempDir(), "edge.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// netnsEdge is the edge proxy, a process in the edge namespace.
type netnsEdge struct {
	cmd *exec.Cmd
	log *logBuf
}

func startNetnsEdge(t *testing.T, l *netnsLab, cfgPath string, log *logBuf) *netnsEdge {
	t.Helper()
	cmd := exec.Command(l.ip, "netns", "exec", l.edge, os.Args[0])
	cmd.Env = append(os.Environ(), envNetnsEdge+"="+cfgPath)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &netnsEdge{cmd: cmd, log: log}
	t.Cleanup(e.kill)
	return e
}

func (e *netnsEdge) kill() {
	if e.cmd.ProcessState == nil {
		e.cmd.Process.Kill()
		e.cmd.Wait()
	}
}

// startNetnsCore starts a core proxy in this process whose trunk sockets
// are in the core's namespace (its RTSP listener, for the test's readers,
// stays on the host's loopback).
func startNetnsCore(t *testing.T, l *netnsLab, cfg Config, log *slog.Logger) *Proxy {
	t.Helper()
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p.trunkNet.listenPacket = listenPacketIn(l.wan)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestTrunkNetns runs the trunk across network namespaces with a lossy,
// delayed WAN: camsim → edge (a process: killed and restarted) → QUIC →
// core → in-process reader and ffprobe; refusals of an unknown core
// certificate, a wrong edge fingerprint and an unlisted camera; and, on
// the camera's side, only the edge's own requests.
func TestTrunkNetns(t *testing.T) {
	l := newNetnsLab(t)
	sim := startCamsim(t, "cam1")
	simHost := camsimHost(sim)
	cam := startLabCamera(t, l.cam, simHost)

	edgeK, coreK, otherK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core"), newTrunkKeys(t, "other")
	camURL := "rtsp://" + labCamAddr + ":554/cam1"
	cfgPath := writeNetnsEdgeConfig(t, camURL, edgeK, fmt.Sprintf("  listen: %s:%s\n  peers: [%q]\n", labEdgeWAN, labTrunkRTP, coreK.fp))
	_, ebuf := newLog(t)
	edge := startNetnsEdge(t, l, cfgPath, ebuf)
	edgeAddr := labEdgeWAN + ":" + labTrunkRTP

	clog, _ := newLog(t)
	core := startNetnsCore(t, l, coreConfig(edgeAddr, coreK, edgeK.fp, "*"), clog)
	url := readerURL(core, "site-a/cam1")
	r := waitReader(t, "a core reader through the namespaces", 20*time.Second, url)
	waitFor(t, "packets at the core reader", 10*time.Second, func() bool { return r.packets.Load() > 20 })
	if !startsWithSPS(firstPacket(r)) {
		t.Error("the core reader did not start at a keyframe")
	}
	if st := core.TrunksStatus().Trunks[0]; l.netem && st.RTT < 15*time.Millisecond {
		t.Errorf("trunk RTT %s across a 2×10 ms netem link", st.RTT)
	} else {
		t.Logf("trunk across the namespaces: RTT %s, lost %d packets, media %d B", st.RTT, st.PacketsLost, st.MediaBytes)
	}

	ffprobeTrunk(t, url, 20*time.Second, "stream=codec_name")

	// The edge is killed and started again: the core's reader stays
	// attached and gets packets again.
	edge.kill()
	time.Sleep(500 * time.Millisecond)
	before := r.packets.Load()
	startNetnsEdge(t, l, cfgPath, ebuf)
	waitFor(t, "packets at the same core reader after the edge restarted", 30*time.Second, func() bool { return r.packets.Load() > before+20 })

	checkNetnsRefusals(t, l, edgeAddr, edgeK, coreK, otherK, ebuf)
	checkLabCameraSaw(t, cam, camURL)
}

// checkNetnsRefusals starts cores that the edge at edgeAddr (key pair
// edgeK, its log in ebuf, trusting coreK) must refuse, or that must
// refuse it: a core with the unknown key pair otherK, a core expecting
// otherK's fingerprint, and a core asking for a camera the edge does not
// list.
func checkNetnsRefusals(t *testing.T, l *netnsLab, edgeAddr string, edgeK, coreK, otherK trunkKeys, ebuf *logBuf) {
	t.Helper()
	t.Run("unknown client certificate", func(t *testing.T) {
		log, _ := newLog(t)
		c := startNetnsCore(t, l, coreConfig(edgeAddr, otherK, edgeK.fp, "cam1"), log)
		waitRefused(t, c, ebuf, "the edge to refuse the unknown core", "trunk peer refused", otherK.fp, 15*time.Second, "an unknown certificate")
	})
	t.Run("wrong fingerprint", func(t *testing.T) {
		log, buf := newLog(t)
		c := startNetnsCore(t, l, coreConfig(edgeAddr, coreK, otherK.fp, "cam1"), log)
		waitRefused(t, c, buf, "the core to refuse the edge", "trunk peer refused", edgeK.fp, 15*time.Second, "a wrong fingerprint")
	})
	t.Run("camera the edge does not list", func(t *testing.T) {
		log, _ := newLog(t)
		cfg := coreConfig(edgeAddr, coreK, edgeK.fp, "nope")
		cfg.Trunks[0].AlwaysOn = true // (on demand, it would ask only for a reader)
		c := startNetnsCore(t, l, cfg, log)
		want := `camera "nope" is not listed by this edge`
		waitFor(t, "the edge's refusal at the core", 15*time.Second, func() bool {
			for _, s := range c.Status() {
				if s.Name == "site-a/nope" && strings.Contains(s.LastError, want) {
					return true
				}
			}
			return false
		})
	})
}

// checkLabCameraSaw checks the camera's view after both edge runs: two
// connections (one per edge run), both from the edge's camera-side
// address, and only the edge's own requests for its configured URL
// (camURL), whatever the core and its readers did.
func checkLabCameraSaw(t *testing.T, cam *labCamera, camURL string) {
	t.Helper()
	remotes, requests := cam.seen()
	if len(remotes) != 2 {
		t.Errorf("the camera saw %d connections; want 2 (one per edge run): %v", len(remotes), remotes)
	}
	for _, a := range remotes {
		if host, _, _ := net.SplitHostPort(a); host != labEdgeCam {
			t.Errorf("the camera saw a connection from %s; only the edge (%s) may reach it", a, labEdgeCam)
		}
	}
	if len(requests) == 0 {
		t.Error("no RTSP request seen on the camera side")
	}
	for _, rq := range requests {
		method, u, _ := strings.Cut(rq, " ")
		switch method {
		case "OPTIONS", "DESCRIBE", "SETUP", "PLAY", "GET_PARAMETER", "TEARDOWN":
		default:
			t.Errorf("the camera got %s", rq)
		}
		if !strings.HasPrefix(u, camURL) {
			t.Errorf("the camera got a request for %s; the edge's config names %s", u, camURL)
		}
	}
	t.Logf("camera side: %d connections from %v, requests %v", len(remotes), remotes, requests)
}

// TestTrunkNetnsEdgeDials: an edge that dials the core (behind NAT)
// across the namespaces; then the edge's WAN address changes (the old
// one removed, a new one in its place) and the trunk migrates to the new
// address without reconnecting: the edge's socket is bound to the
// wildcard address, so its packets leave from the new address and the
// core validates the new path (RFC 9000 section 9).
func TestTrunkNetnsEdgeDials(t *testing.T) {
	l := newNetnsLab(t)
	sim := startCamsim(t, "cam1")
	startLabCamera(t, l.cam, camsimHost(sim))
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")

	ccfg, _ := edgeDialsCore(t, edgeK, coreK, "cam1")
	// Every address of the core's namespace (Check looks for a given
	// address among the host's, and the socket is in the namespace).
	ccfg.Trunk.Listen = ":" + labTrunkRTP
	clog, _ := newLog(t)
	core := startNetnsCore(t, l, ccfg, clog)
	cfgPath := writeNetnsEdgeConfig(t, "rtsp://"+labCamAddr+":554/cam1", edgeK,
		fmt.Sprintf("  dial: [\"%s:%s\"]\n  peers: [%q]\n", labCoreWAN, labTrunkRTP, coreK.fp))
	_, ebuf := newLog(t)
	startNetnsEdge(t, l, cfgPath, ebuf)

	r := waitReader(t, "a core reader of the edge that dialed in", 20*time.Second, readerURL(core, "site-a/cam1"))
	waitFor(t, "packets", 10*time.Second, func() bool { return r.packets.Load() > 20 })
	conn := coreConn(core)
	// What happened before the move (a first connection's hello that
	// raced the trunk's start is retried) is not the migration's.
	reconnects, edgeLog := core.TrunksStatus().Trunks[0].Reconnects, len(ebuf.String())
	if host, _, _ := net.SplitHostPort(conn.RemoteAddr().String()); host != labEdgeWAN {
		t.Fatalf("the core sees the edge at %s; want %s", conn.RemoteAddr(), labEdgeWAN)
	}

	// The edge's WAN address changes: the new one is added, the old one
	// removed (promote_secondaries keeps the new one when the old goes).
	const newAddr = "10.201.2.3"
	dev := "vw" + strings.TrimPrefix(l.edge, "cdedge")
	for _, args := range [][]string{
		{"netns", "exec", l.edge, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/" + dev + "/promote_secondaries"},
		{"-n", l.edge, "addr", "add", newAddr + "/24", "dev", dev},
		{"-n", l.edge, "addr", "del", labEdgeWAN + "/24", "dev", dev},
	} {
		if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	waitFor(t, "the core to follow the edge to "+newAddr, 15*time.Second, func() bool {
		host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
		return host == newAddr
	})
	before := r.packets.Load()
	waitFor(t, "packets after the edge's address changed", 10*time.Second, func() bool { return r.packets.Load() > before+20 })
	if c, n := coreConn(core), core.TrunksStatus().Trunks[0].Reconnects; c != conn || n != reconnects {
		t.Errorf("the trunk reconnected (%d reconnects, %d before the move) instead of migrating", n, reconnects)
	}
	if strings.Contains(ebuf.String()[edgeLog:], "connection to core down") {
		t.Error("the edge saw its connection to the core go down")
	}
}

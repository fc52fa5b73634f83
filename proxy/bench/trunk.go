package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cordon-vms/cordon/proxy/camsim"
)

// Systems of bench trunk: how the cameras go from the edge proxies to the
// core proxy.
const (
	// TrunkRTSP is the core pulling each camera from the edge's RTSP
	// listener over TCP (proxy to proxy, one TCP connection per camera):
	// the reference.
	TrunkRTSP = "rtsp"
	// TrunkStream is the QUIC trunk, each camera on a QUIC stream.
	TrunkStream = "stream"
	// TrunkDatagram is the QUIC trunk, each camera in DATAGRAM frames.
	TrunkDatagram = "datagram"
)

// TrunkOptions configure bench trunk. Zero values take the defaults.
type TrunkOptions struct {
	// Edges is the number of edge proxies, all into one core. It
	// defaults to 1.
	Edges int
	// CamerasPerEdge is the number of simulated cameras behind each edge.
	// It defaults to 100.
	CamerasPerEdge int
	// Bitrate, Width, Height, Codec and ClipCache choose the cameras'
	// real video, as in Options. They default to 2 Mbit/s at 1280x720,
	// h264.
	Bitrate       int
	Width, Height int
	Codec         string
	ClipCache     string
	// FPS is the cameras' frame rate. It defaults to 25; a lower one
	// carries as many cameras and connections with fewer packets (the
	// clip is encoded for the bit rate at that rate).
	FPS int
	// Netem, when set, runs the edge and the core in two network
	// namespaces joined by veth with this tc netem setting on both ends of
	// the link between them (e.g. "delay 20ms loss 1%": 40 ms RTT, 1 %
	// loss each way). Empty: loopback. It needs root and Edges 1.
	Netem string
	// Systems are measured in turn. They default to rtsp, stream, datagram.
	Systems []string
	// Duration is the measured window. It defaults to 20 s.
	Duration time.Duration
	// Warmup runs before the window. It defaults to 5 s.
	Warmup time.Duration
	// LatencySamples is how many cameras also get a direct reader, to
	// measure the latency the two proxies and the link add. It defaults to 10.
	LatencySamples int
	// StallGap is the gap between two frames at a reader that counts as a
	// stall. It defaults to 500 ms.
	StallGap time.Duration
	// Executable is the cordon binary. It defaults to the running one.
	Executable string
	// AltExecutable is the cordon binary of systems with the variant
	// "+alt" (an A/B of two builds in one run).
	AltExecutable string
	Progress      io.Writer
	Logger        *slog.Logger
}

// TrunkResult is one system's measurement.
type TrunkResult struct {
	System          string
	Edges, Cameras  int
	Readers, Wanted int
	Window          time.Duration
	// EdgeCPU is the CPU time of every edge together; CoreCPU the core's;
	// BenchCPU the bench's own (cameras, readers and, with --netem on a
	// kernel without netem, the emulated link).
	EdgeCPU, CoreCPU, BenchCPU time.Duration
	// InBytes is what the cameras sent during the window (estimated from
	// the direct readers); Bytes what the core's readers got.
	InBytes, Bytes uint64
	// Frames are video frames the core's readers got; FramesSent what the
	// cameras sent them (cameras × frame rate × window).
	Frames, FramesSent uint64
	// Stalls are gaps of more than StallGap between two frames at one
	// reader; StalledReaders how many readers had at least one.
	Stalls, StalledReaders int
	Lost                   uint64 // RTP sequence gaps at the readers
	// From the proxies' /v1/trunks at the end (trunk systems): GOPs the
	// edges dropped because the trunk could not keep up; packets of
	// datagram cameras lost on the way (gaps in their numbering) and
	// dropped at the core because a camera's queue was full; QUIC packets
	// the edges sent that were declared lost.
	EdgeGOPDrops, DatagramsLost, DatagramOverflow, QUICLost uint64
	// Datagram cameras with FEC: groups the core rebuilt, and those it
	// could not (more lost than their repair).
	FECRecovered, FECUnrecoverable uint64
	Latency                        []time.Duration // added per matched frame, sorted
	Ref                            *TrunkResult    // the rtsp system of the same run
	// The emulated link (--netem on a kernel without netem), during the
	// window: packets read from either TUN device, lost on purpose,
	// dropped because its queue was full, and that filled the read buffer.
	LinkPackets, LinkLost, LinkFull, LinkTruncated uint64
	// Scale: the time from starting the proxies until the core served
	// every camera (a DESCRIBE answered for each), and until every reader
	// played; at the end of the window, the core's resident memory (and
	// its peak), threads and open files, the edges' resident memory
	// together, and from the core's /v1/trunks the trunk cameras up and
	// the QUIC connections up (trunk systems).
	// Load is the machine's 1-minute load average when the window opened
	// and when it closed (the machine may be shared).
	Load                           [2]float64
	Ready, Playing                 time.Duration
	CoreRSS, CorePeakRSS, EdgesRSS int64
	CoreThreads, CoreFDs           int
	CamerasUp, ConnectionsUp       int
}

// EdgeCPUPerGB and CoreCPUPerGB are CPU seconds per GB the cameras sent.
func (r *TrunkResult) EdgeCPUPerGB() float64 { return perGB(r.EdgeCPU, r.InBytes) }
func (r *TrunkResult) CoreCPUPerGB() float64 { return perGB(r.CoreCPU, r.InBytes) }

// BenchCPUPerGB is the bench's own CPU seconds per GB the cameras sent.
func (r *TrunkResult) BenchCPUPerGB() float64 { return perGB(r.BenchCPU, r.InBytes) }

func perGB(cpu time.Duration, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return cpu.Seconds() / (float64(b) / 1e9)
}

// Quantile is the q-quantile of the added latency.
func (r *TrunkResult) Quantile(q float64) time.Duration {
	return quantile(r.Latency, q)
}

func (o *TrunkOptions) setDefaults() error {
	if o.Edges <= 0 {
		o.Edges = 1
	}
	if o.CamerasPerEdge <= 0 {
		o.CamerasPerEdge = 100
	}
	loadDefaults(&o.Bitrate, &o.Width, &o.Height, &o.Codec, &o.Duration, &o.Warmup, &o.LatencySamples)
	if o.FPS <= 0 {
		o.FPS = 25
	}
	if o.StallGap <= 0 {
		o.StallGap = 500 * time.Millisecond
	}
	o.LatencySamples = min(o.LatencySamples, o.Edges*o.CamerasPerEdge)
	if len(o.Systems) == 0 {
		o.Systems = []string{TrunkRTSP, TrunkStream, TrunkDatagram}
	}
	for _, s := range o.Systems {
		ts, err := trunkSystem(s)
		if err != nil {
			return err
		}
		if ts.variant == "alt" && o.AltExecutable == "" {
			return fmt.Errorf("bench trunk: system %q needs --alt-executable", s)
		}
	}
	if o.Netem != "" && o.Edges > 1 {
		return errors.New("bench trunk: --netem runs one edge; use --edges with loopback")
	}
	return runDefaults("bench trunk", &o.Executable, &o.Progress, &o.Logger)
}

// trunkCam is one simulated camera: the edge it is behind and its name
// there.
type trunkCam struct {
	edge int
	name string // on the edge, and in camsim as e<edge>-<name>
}

func (c trunkCam) simName() string { return fmt.Sprintf("e%d-%s", c.edge, c.name) }

// RunTrunk measures each system in turn against the same cameras and
// network, and removes the network namespaces it made (also when ctx is
// cancelled: Ctrl-C).
func RunTrunk(ctx context.Context, o TrunkOptions) ([]*TrunkResult, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	nw, err := openTrunkNet(ctx, o.Netem)
	if err != nil {
		return nil, err
	}
	defer nw.close()
	dir, err := os.MkdirTemp("", "cordon-bench-trunk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	keys, err := trunkKeygen(ctx, o.Executable, dir)
	if err != nil {
		return nil, err
	}
	var cams []trunkCam
	var simCams []camsim.Camera
	for e := range o.Edges {
		for i := range o.CamerasPerEdge {
			c := trunkCam{edge: e + 1, name: fmt.Sprintf("cam%d", i+1)}
			cams = append(cams, c)
			simCams = append(simCams, camsim.Camera{Name: c.simName(), Codec: o.Codec, Width: o.Width, Height: o.Height, FPS: o.FPS, Bitrate: o.Bitrate})
		}
	}
	po := Options{Cameras: len(cams), FPS: o.FPS, Bitrate: o.Bitrate, Width: o.Width, Height: o.Height, Codec: o.Codec, ClipCache: o.ClipCache, Logger: o.Logger, Progress: o.Progress}
	sim, err := startCamerasOn(ctx, &po, simCams, nw.cameraHost)
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	info := sim.Streams()[0]
	where := "loopback"
	if o.Netem != "" {
		where = fmt.Sprintf("edge and core in network namespaces, link %q each way (%s)", o.Netem, nw.how)
	}
	fmt.Fprintf(o.Progress, "bench trunk: %d edge(s) x %d cameras looping %s (real video, %.2f Mbit/s at %d fps), %s\n",
		o.Edges, o.CamerasPerEdge, info.Clip, float64(info.Bitrate)/1e6, o.FPS, where)
	var results []*TrunkResult
	var ref *TrunkResult
	for _, sys := range o.Systems {
		r, err := runTrunkOne(ctx, &o, sys, nw, dir, keys, sim, cams)
		if err != nil {
			return results, fmt.Errorf("bench trunk %s: %w", sys, err)
		}
		if sys == TrunkRTSP {
			ref = r
		}
		results = append(results, r)
	}
	for _, r := range results {
		if r != ref {
			r.Ref = ref
		}
	}
	return results, nil
}

// startCamerasOn is startCameras with the cameras listening on host.
func startCamerasOn(ctx context.Context, o *Options, cams []camsim.Camera, host string) (*camsim.Server, error) {
	if host == "127.0.0.1" {
		return startCameras(ctx, o, cams)
	}
	// Pick the clip on loopback first (it may encode one), then serve
	// the same cameras where the edge reaches them.
	probe, err := startCameras(ctx, o, cams[:1])
	if err != nil {
		return nil, err
	}
	dir := probe.ClipDir
	probe.Close()
	sim := &camsim.Server{Addr: net.JoinHostPort(host, "0"), Cameras: cams, ClipDir: dir, Logger: o.Logger.With("component", "camsim")}
	if err := sim.Start(); err != nil {
		return nil, err
	}
	return sim, nil
}

// trunkKeys are the key pairs of the edges (one pair for all) and the core.
type trunkKeys struct{ edgeDir, coreDir, edgeFP, coreFP string }

// trunkKeygen runs `cordon trunk keygen` for the edges and the core.
func trunkKeygen(ctx context.Context, exe, dir string) (trunkKeys, error) {
	k := trunkKeys{edgeDir: filepath.Join(dir, "edge-key"), coreDir: filepath.Join(dir, "core-key")}
	for _, d := range []struct {
		dir string
		fp  *string
	}{{k.edgeDir, &k.edgeFP}, {k.coreDir, &k.coreFP}} {
		if err := os.Mkdir(d.dir, 0o700); err != nil {
			return k, err
		}
		out, err := exec.CommandContext(ctx, exe, "trunk", "keygen", "-o", d.dir, "--name", filepath.Base(d.dir)).CombinedOutput()
		if err != nil {
			return k, fmt.Errorf("bench trunk: trunk keygen: %v: %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if fp, ok := strings.CutPrefix(strings.TrimSpace(line), "fingerprint: "); ok {
				*d.fp = fp
			}
		}
		if *d.fp == "" {
			return k, fmt.Errorf("bench trunk: trunk keygen printed no fingerprint: %s", out)
		}
	}
	return k, nil
}

// trunkProc is one running proxy.
type trunkProc struct {
	cmd    *exec.Cmd
	log    string
	stop   func()
	exited chan struct{} // closed when the process has ended
}

func startTrunkProc(ctx context.Context, nw *trunkNet, ns, dir, name, exe string, env []string, cfg []byte) (*trunkProc, error) {
	path := filepath.Join(dir, name+".yml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := nw.command(ctx, ns, exe, "proxy", "-c", path)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &trunkProc{cmd: cmd, log: logf.Name(), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-p.exited
			logf.Close()
		})
	}
	return p, nil
}

// trunk bench ports: in namespaces the proxies have their own network, so
// fixed ports are safe there; on loopback they are picked free.
func (nw *trunkNet) ports(n int) ([]int, error) {
	if nw.edgeNS != "" {
		out := make([]int, n)
		for i := range out {
			out[i] = 18000 + i
		}
		return out, nil
	}
	out := make([]int, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, errors.New("bench trunk: no free ports on loopback")
		}
		// A port free for both TCP (RTSP, admin) and UDP (trunk).
		t, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := t.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		t.Close()
		if err != nil {
			continue
		}
		u.Close()
		if !slices.Contains(out, port) {
			out = append(out, port)
		}
	}
	return out, nil
}

// trunkSite is one system's running proxies.
type trunkSite struct {
	procs    []*trunkProc // the edges, then the core
	edges    []*trunkProc
	core     *trunkProc
	admin    map[*trunkProc]int // each proxy's admin port
	coreAddr string             // the core's RTSP listener
	nw       *trunkNet
}

// stop stops every proxy of the site.
func (s *trunkSite) stop() {
	for _, p := range s.procs {
		p.stop()
	}
}

// startTrunkSite starts o.Edges edge proxies and the core for system sys,
// with their configurations and logs in dir/sys.
func startTrunkSite(ctx context.Context, o *TrunkOptions, sys string, nw *trunkNet, dir string, keys trunkKeys, sim *camsim.Server, cams []trunkCam) (*trunkSite, error) {
	// Ports: per edge RTSP, admin and trunk; the core's RTSP and admin.
	ports, err := nw.ports(3*o.Edges + 2)
	if err != nil {
		return nil, err
	}
	ts, _ := trunkSystem(sys)
	exe := o.Executable
	if ts.variant == "alt" {
		exe = o.AltExecutable
	}
	env := trunkVariants[ts.variant]
	sysDir, err := os.MkdirTemp(dir, sys+"-") // (a system may be measured more than once)
	if err != nil {
		return nil, err
	}
	s := &trunkSite{admin: map[*trunkProc]int{}, nw: nw}
	for e := 1; e <= o.Edges; e++ {
		pe := ports[3*(e-1):]
		cfg := trunkEdgeConfig(nw, pe[0], pe[1], pe[2], ts.transport != TrunkRTSP, keys, sim, cams, e)
		p, err := startTrunkProc(ctx, nw, nw.edgeNS, sysDir, fmt.Sprintf("edge%d", e), exe, env, cfg)
		if err != nil {
			s.stop()
			return nil, err
		}
		s.procs = append(s.procs, p)
		s.edges = append(s.edges, p)
		s.admin[p] = pe[1]
	}
	s.coreAddr = net.JoinHostPort(nw.coreHost, fmt.Sprint(ports[3*o.Edges]))
	cfg := trunkCoreConfig(nw, s.coreAddr, ports[3*o.Edges+1], ports, sys, keys, cams, o.Edges)
	core, err := startTrunkProc(ctx, nw, nw.coreNS, sysDir, "core", exe, env, cfg)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.procs = append(s.procs, core)
	s.core = core
	s.admin[core] = ports[3*o.Edges+1]
	return s, nil
}

// waitReady waits until the core serves every path; a proxy that exits
// (a bad port, say) ends the wait at once, with the end of the core's and
// the first edge's logs in the error.
func (s *trunkSite) waitReady(ctx context.Context, paths []camsim.Camera) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, p := range s.procs {
		go func() {
			select {
			case <-p.exited:
				cancel()
			case <-wctx.Done():
			}
		}()
	}
	if err := waitReadyEach(wctx, s.coreAddr, paths, 120*time.Second, 16); err != nil {
		tail, _ := os.ReadFile(s.core.log)
		etail, _ := os.ReadFile(s.edges[0].log)
		return fmt.Errorf("%w\ncore log:\n%s\nedge log:\n%s", err, lastLines(string(tail), 10), lastLines(string(etail), 10))
	}
	return nil
}

// cpu is the CPU time used so far by every edge together, and by the core.
func (s *trunkSite) cpu() (edge, core time.Duration, err error) {
	for _, p := range s.edges {
		c, err := procCPU(p.cmd.Process.Pid)
		if err != nil {
			return 0, 0, err
		}
		edge += c
	}
	core, err = procCPU(s.core.cmd.Process.Pid)
	return edge, core, err
}

// resources sets res's memory, threads and open files of the proxies.
func (s *trunkSite) resources(res *TrunkResult) {
	pid := s.core.cmd.Process.Pid
	res.CoreRSS, res.CorePeakRSS, res.CoreThreads, _ = procStatus(pid)
	res.CoreFDs, _ = procFDs(pid)
	for _, p := range s.edges {
		rss, _, _, _ := procStatus(p.cmd.Process.Pid)
		res.EdgesRSS += rss
	}
}

// trunkReaders are one reader per camera at the core (proxied, with its
// stall counter) and a direct reader of the first LatencySamples cameras.
type trunkReaders struct {
	proxied, direct []*reader
	stalls          []*frameGaps // of proxied[i]
}

func newTrunkReaders(o *TrunkOptions, coreAddr string, paths []camsim.Camera, sim *camsim.Server, cams []trunkCam) *trunkReaders {
	rs := &trunkReaders{}
	for i, c := range cams {
		r := &reader{url: "rtsp://" + coreAddr + "/" + paths[i].Name, fps: o.FPS}
		g := &frameGaps{stallGap: o.StallGap}
		r.onVideo = g.packet
		rs.stalls = append(rs.stalls, g)
		if i < o.LatencySamples {
			r.frames = newFrameLog()
			rs.direct = append(rs.direct, &reader{url: sim.URL(c.simName()), fps: o.FPS, frames: newFrameLog()})
		}
		rs.proxied = append(rs.proxied, r)
	}
	return rs
}

func (rs *trunkReaders) all() []*reader {
	return append(append([]*reader{}, rs.proxied...), rs.direct...)
}

// start starts every reader and returns how many play; a reader that
// fails to start is logged and left out.
// Up to 16 start at once (a thousand handshakes one after another take
// long on a loaded machine).
func (rs *trunkReaders) start(ctx context.Context, log *slog.Logger) int {
	var up atomic.Int64
	next := make(chan *reader)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for r := range next {
				if err := r.start(ctx); err != nil {
					log.Warn("reader failed to start", "url", r.url, "err", err)
					continue
				}
				up.Add(1)
			}
		})
	}
	for _, r := range rs.all() {
		next <- r
	}
	close(next)
	wg.Wait()
	return int(up.Load())
}

func (rs *trunkReaders) close() {
	for _, r := range rs.all() {
		r.close()
	}
}

func (rs *trunkReaders) setCounting(on bool) {
	for _, r := range rs.all() {
		r.counting.Store(on)
	}
}

// measureWindow counts at the readers for o.Duration and sets res's
// window and CPU times; it returns when the window opened.
func (rs *trunkReaders) measureWindow(ctx context.Context, o *TrunkOptions, site *trunkSite, res *TrunkResult) (time.Time, error) {
	e0, c0, err := site.cpu()
	if err != nil {
		return time.Time{}, err
	}
	b0, err := procCPU(os.Getpid())
	if err != nil {
		return time.Time{}, err
	}
	l0 := site.nw.wan.counters()
	res.Load[0] = loadAvg()
	start := time.Now()
	rs.setCounting(true)
	fmt.Fprintf(o.Progress, "bench trunk %s: measuring for %s\n", res.System, o.Duration)
	if err := sleep(ctx, o.Duration); err != nil {
		return start, err
	}
	e1, c1, err := site.cpu()
	if err != nil {
		return start, err
	}
	b1, err := procCPU(os.Getpid())
	if err != nil {
		return start, err
	}
	res.BenchCPU = b1 - b0
	res.Load[1] = loadAvg()
	l1 := site.nw.wan.counters()
	res.LinkPackets, res.LinkLost, res.LinkFull, res.LinkTruncated = l1[0]-l0[0], l1[1]-l0[1], l1[2]-l0[2], l1[3]-l0[3]
	res.Window = time.Since(start)
	rs.setCounting(false)
	res.EdgeCPU, res.CoreCPU = e1-e0, c1-c0
	return start, nil
}

// addProxied adds what the core's readers got to res.
func (rs *trunkReaders) addProxied(res *TrunkResult) {
	for i, r := range rs.proxied {
		if r.playing {
			res.Readers++
		}
		res.Bytes += r.bytes.Load()
		res.Lost += r.lost.Load()
		f, s := rs.stalls[i].result()
		res.Frames += f
		res.Stalls += s
		if s > 0 {
			res.StalledReaders++
		}
	}
}

// addDirect sets res's input bytes (the direct readers' mean times the
// cameras) and the latency the proxies added to the frames matched after
// start.
func (rs *trunkReaders) addDirect(res *TrunkResult, start time.Time) {
	var directBytes uint64
	directUp := 0
	for _, d := range rs.direct {
		if d.playing {
			directBytes += d.bytes.Load()
			directUp++
		}
	}
	if directUp > 0 {
		res.InBytes = directBytes / uint64(directUp) * uint64(res.Cameras)
	}
	for i, d := range rs.direct {
		res.Latency = append(res.Latency, matchFrames(d.frames, rs.proxied[i].frames, start).added...)
	}
	slices.Sort(res.Latency)
}

// runTrunkOne measures system sys: it starts the proxies, waits for the
// core to serve every camera, plays them all, warms up and measures.
func runTrunkOne(ctx context.Context, o *TrunkOptions, sys string, nw *trunkNet, dir string, keys trunkKeys, sim *camsim.Server, cams []trunkCam) (*TrunkResult, error) {
	t0 := time.Now()
	site, err := startTrunkSite(ctx, o, sys, nw, dir, keys, sim, cams)
	if err != nil {
		return nil, err
	}
	defer site.stop()
	paths := make([]camsim.Camera, len(cams))
	for i, c := range cams {
		paths[i] = camsim.Camera{Name: trunkReaderPath(sys, c)}
	}
	fmt.Fprintf(o.Progress, "bench trunk %s: %d edge(s) and the core started, waiting for %d paths at the core\n", sys, len(site.edges), len(cams))
	if err := site.waitReady(ctx, paths); err != nil {
		return nil, err
	}
	res := &TrunkResult{System: sys, Edges: o.Edges, Cameras: len(cams), Ready: time.Since(t0)}
	rs := newTrunkReaders(o, site.coreAddr, paths, sim, cams)
	defer rs.close()
	up := rs.start(ctx, o.Logger)
	res.Playing, res.Wanted = time.Since(t0), len(rs.proxied)
	fmt.Fprintf(o.Progress, "bench trunk %s: every path served %s after the start, %d readers playing after %s; warming up %s\n",
		sys, res.Ready.Round(10*time.Millisecond), up, res.Playing.Round(10*time.Millisecond), o.Warmup)
	if err := sleep(ctx, o.Warmup); err != nil {
		return nil, err
	}
	start, err := rs.measureWindow(ctx, o, site, res)
	if err != nil {
		return nil, err
	}
	site.resources(res)
	rs.addProxied(res)
	res.FramesSent = uint64(len(cams)) * uint64(res.Window.Seconds()*float64(o.FPS))
	if !isTrunkRTSP(sys) {
		trunkCounters(ctx, nw, res, site.edges, site.admin)
	}
	rs.addDirect(res, start)
	return res, nil
}

// trunkSys is a system name taken apart: rtsp, or a transport (stream,
// datagram) with an optional number of QUIC connections per trunk after
// a colon ("stream:4"; none: the trunk's default); then an optional
// variant after a '+': "alt" (the proxies are AltExecutable), "nogso"
// or "noecn" (the proxies run with quic-go's QUIC_GO_DISABLE_GSO or
// QUIC_GO_DISABLE_ECN set), "nofec" (datagram cameras with fec: off),
// "fec10" (with fec: 10%).
type trunkSys struct {
	transport string
	conns     int
	variant   string
}

// trunkVariants are the variants a system may name after '+'.
var trunkVariants = map[string][]string{"": nil, "alt": nil, "nogso": {"QUIC_GO_DISABLE_GSO=true"}, "noecn": {"QUIC_GO_DISABLE_ECN=true"}, "nofec": nil, "fec10": nil}

// isTrunkRTSP reports whether system sys is rtsp (with any variant).
func isTrunkRTSP(sys string) bool {
	ts, _ := trunkSystem(sys)
	return ts.transport == TrunkRTSP
}

func trunkSystem(sys string) (trunkSys, error) {
	name, variant, _ := strings.Cut(sys, "+")
	if _, ok := trunkVariants[variant]; !ok {
		return trunkSys{}, fmt.Errorf("bench trunk: system %q: unknown variant %q (want alt, nogso, noecn, nofec or fec10)", sys, variant)
	}
	transport, n, ok := strings.Cut(name, ":")
	ts := trunkSys{transport: transport, variant: variant}
	if ok && transport != TrunkRTSP {
		c, err := strconv.Atoi(n)
		if err != nil || c < 1 || c > 128 {
			return trunkSys{}, fmt.Errorf("bench trunk: system %q: the connections after ':' are 1 to 128", sys)
		}
		ts.conns = c
	}
	if (transport != TrunkRTSP || ok) && transport != TrunkStream && transport != TrunkDatagram {
		return trunkSys{}, fmt.Errorf("bench trunk: unknown system %q (want rtsp, stream or datagram, the last two with :N connections)", sys)
	}
	return ts, nil
}

// trunkReaderPath is camera c's path at the core.
func trunkReaderPath(sys string, c trunkCam) string {
	if isTrunkRTSP(sys) {
		return fmt.Sprintf("e%d-%s", c.edge, c.name)
	}
	return fmt.Sprintf("e%d/%s", c.edge, c.name)
}

// trunkEdgeConfig is edge e's configuration: its cameras, its RTSP
// listener (what the rtsp system's core pulls), and the trunk listener.
func trunkEdgeConfig(nw *trunkNet, rtspPort, adminPort, trunkPort int, trunk bool, keys trunkKeys, sim *camsim.Server, cams []trunkCam, e int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  rtsp: %q\n  admin: \"127.0.0.1:%d\"\n  udp_rtp: \"off\"\n  udp_rtcp: \"off\"\nallow_anonymous: true\n", net.JoinHostPort(nw.edgeWAN, fmt.Sprint(rtspPort)), adminPort)
	fmt.Fprintf(&b, "limits:\n  max_connections: %d\n  max_connections_per_source: %d\n", benchConnLimit, benchConnLimit)
	if trunk {
		fmt.Fprintf(&b, "trunk:\n  listen: %q\n  cert: %s\n  key: %s\n  peers: [%q]\n", net.JoinHostPort(nw.edgeWAN, fmt.Sprint(trunkPort)),
			filepath.Join(keys.edgeDir, "trunk.crt"), filepath.Join(keys.edgeDir, "trunk.key"), keys.coreFP)
	}
	b.WriteString("cameras:\n")
	for _, c := range cams {
		if c.edge == e {
			fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    transport: tcp\n", c.name, sim.URL(c.simName()))
		}
	}
	return []byte(b.String())
}

// trunkCoreConfig is the core's configuration: a trunk per edge (always
// on, so that the measurement does not include on-demand starts), or a
// camera per edge camera pulled over RTSP/TCP.
func trunkCoreConfig(nw *trunkNet, addr string, adminPort int, ports []int, sys string, keys trunkKeys, cams []trunkCam, edges int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  rtsp: %q\n  admin: \"127.0.0.1:%d\"\n  udp_rtp: \"off\"\n  udp_rtcp: \"off\"\nallow_anonymous: true\n", addr, adminPort)
	fmt.Fprintf(&b, "limits:\n  max_connections: %d\n  max_connections_per_source: %d\n", benchConnLimit, benchConnLimit)
	if isTrunkRTSP(sys) {
		b.WriteString("cameras:\n")
		for _, c := range cams {
			fmt.Fprintf(&b, "  - name: %s\n    url: rtsp://%s/%s\n    transport: tcp\n", trunkReaderPath(sys, c),
				net.JoinHostPort(nw.edgeWAN, fmt.Sprint(ports[3*(c.edge-1)])), c.name)
		}
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "trunk:\n  cert: %s\n  key: %s\ntrunks:\n", filepath.Join(keys.coreDir, "trunk.crt"), filepath.Join(keys.coreDir, "trunk.key"))
	ts, _ := trunkSystem(sys) // (checked by setDefaults)
	for e := 1; e <= edges; e++ {
		fmt.Fprintf(&b, "  - name: e%d\n    address: %q\n    fingerprint: %q\n    cameras: [\"*\"]\n    transport: %s\n    always_on: true\n",
			e, net.JoinHostPort(nw.edgeWAN, fmt.Sprint(ports[3*(e-1)+2])), keys.edgeFP, ts.transport)
		if ts.conns > 0 {
			fmt.Fprintf(&b, "    connections: %d\n", ts.conns)
		}
		switch {
		case ts.transport != TrunkDatagram:
		case ts.variant == "nofec":
			b.WriteString("    fec: \"off\"\n")
		case ts.variant == "fec10":
			b.WriteString("    fec: 10%\n")
		}
	}
	return []byte(b.String())
}

// frameGaps counts one reader's video frames and stalls (gaps between
// two frames over stallGap) while the window is open. The reader's one
// packet goroutine calls packet.
type frameGaps struct {
	stallGap time.Duration

	mu     sync.Mutex
	have   bool
	lastTS uint32
	last   time.Time
	frames uint64
	stalls int
}

func (g *frameGaps) packet(ts uint32, counting bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.have && ts == g.lastTS {
		return
	}
	now := time.Now()
	if counting {
		g.frames++
		if g.have && now.Sub(g.last) > g.stallGap {
			g.stalls++
		}
	}
	g.have, g.lastTS, g.last = true, ts, now
}

func (g *frameGaps) result() (uint64, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.frames, g.stalls
}

// trunkRatio formats a/b ("-" without b).
func trunkRatio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// WriteTrunkTable prints results with CPU ratios against the rtsp system.
func WriteTrunkTable(w io.Writer, results []*TrunkResult) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tedges\tcameras\treaders\tMbit/s in\tMbit/s out\tedge CPU s/GB\tvs rtsp\tcore CPU s/GB\tvs rtsp\tframes got\tstalls\tstalled readers\tlost pkts\tedge GOP drops\tdgram lost\tdgram overflow\tFEC rebuilt/lost groups\tQUIC lost\tadded p50\tadded p99\tframes matched\t")
	for _, r := range results {
		er, cr := "-", "-"
		if r.Ref != nil {
			er, cr = trunkRatio(r.EdgeCPUPerGB(), r.Ref.EdgeCPUPerGB()), trunkRatio(r.CoreCPUPerGB(), r.Ref.CoreCPUPerGB())
		}
		got := "-"
		if r.FramesSent > 0 {
			got = fmt.Sprintf("%.2f%%", 100*float64(r.Frames)/float64(r.FramesSent))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.3f\t%s\t%.3f\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%d\t\n",
			r.System, r.Edges, r.Cameras, r.Readers,
			float64(r.InBytes)*8/r.Window.Seconds()/1e6, float64(r.Bytes)*8/r.Window.Seconds()/1e6,
			r.EdgeCPUPerGB(), er, r.CoreCPUPerGB(), cr, got, r.Stalls, r.StalledReaders, r.Lost,
			r.EdgeGOPDrops, r.DatagramsLost, r.DatagramOverflow, fmt.Sprintf("%d/%d", r.FECRecovered, r.FECUnrecoverable), r.QUICLost,
			r.Quantile(0.5).Round(100*time.Microsecond), r.Quantile(0.99).Round(100*time.Microsecond), len(r.Latency))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tedges\tcameras\tload\tbench CPU s/GB\tlink pkts\tlink lost\tlink overflow\tlink truncated\tall served after\tall playing after\ttrunk cameras up\tQUIC connections up\tcore RSS MiB\tcore peak RSS MiB\tcore threads\tcore open files\tedges RSS MiB\t")
	for _, r := range results {
		up, conns := "-", "-"
		if !isTrunkRTSP(r.System) {
			up, conns = fmt.Sprint(r.CamerasUp), fmt.Sprint(r.ConnectionsUp)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f-%.1f\t%.3f\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%d\t%d\t%.0f\t\n", r.System, r.Edges, r.Cameras, r.Load[0], r.Load[1], r.BenchCPUPerGB(),
			r.LinkPackets, r.LinkLost, r.LinkFull, r.LinkTruncated,
			r.Ready.Round(10*time.Millisecond), r.Playing.Round(10*time.Millisecond), up, conns,
			float64(r.CoreRSS)/(1<<20), float64(r.CorePeakRSS)/(1<<20), r.CoreThreads, r.CoreFDs, float64(r.EdgesRSS)/(1<<20))
	}
	return tw.Flush()
}

// trunkCounters adds the proxies' trunk counters (their /v1/trunks, read
// with curl in their namespace) to res; what cannot be read is left 0.
func trunkCounters(ctx context.Context, nw *trunkNet, res *TrunkResult, edges []*trunkProc, admin map[*trunkProc]int) {
	get := func(ns string, port int, v any) {
		out, err := nw.command(ctx, ns, "curl", "-s", "--max-time", "5", fmt.Sprintf("http://127.0.0.1:%d/v1/trunks", port)).Output()
		if err == nil {
			_ = json.Unmarshal(out, v)
		}
	}
	type cam struct {
		GOPsCongestion uint64 `json:"gops_dropped_congestion"`
		Lost           uint64 `json:"datagram_packets_lost"`
		Overflow       uint64 `json:"datagram_overflow"`
		FECRecovered   uint64 `json:"fec_groups_recovered"`
		FECLost        uint64 `json:"fec_groups_unrecoverable"`
	}
	for _, e := range edges {
		var st struct {
			Edge struct {
				Cores []struct {
					PacketsLost uint64 `json:"packets_lost"`
					CameraStats []cam  `json:"camera_stats"`
				} `json:"cores"`
			} `json:"edge"`
		}
		get(nw.edgeNS, admin[e], &st)
		for _, c := range st.Edge.Cores {
			res.QUICLost += c.PacketsLost
			for _, s := range c.CameraStats {
				res.EdgeGOPDrops += s.GOPsCongestion
			}
		}
	}
	for p, port := range admin {
		if slices.Contains(edges, p) {
			continue
		}
		var st struct {
			Trunks []struct {
				CamerasUp     int   `json:"cameras_up"`
				ConnectionsUp int   `json:"connections_up"`
				CameraStats   []cam `json:"camera_stats"`
			} `json:"trunks"`
		}
		get(nw.coreNS, port, &st)
		for _, t := range st.Trunks {
			res.CamerasUp += t.CamerasUp
			res.ConnectionsUp += t.ConnectionsUp
			for _, s := range t.CameraStats {
				res.DatagramsLost += s.Lost
				res.DatagramOverflow += s.Overflow
				res.FECRecovered += s.FECRecovered
				res.FECUnrecoverable += s.FECLost
			}
		}
	}
}

// Package bench measures cordon's proxy against a plain gortsplib pass-through
// proxy in the same run: simulated cameras (package camsim) feed each system
// under test, which runs as its own process so that its CPU time and memory
// can be read from /proc, and one TCP reader per camera counts what arrives.
// Results are reported as ratios against the baseline, never as absolute
// targets from a timed test (machines are noisy).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// Systems under test, in the order they run.
const (
	SystemBaseline    = "baseline"    // gortsplib examples/proxy pattern
	SystemPassthrough = "passthrough" // cordon proxy, mode passthrough
	SystemRebuild     = "rebuild"     // cordon proxy, mode rebuild
	// SystemPull is cordon proxy (mode passthrough) pulling every camera
	// with no reader attached: what receiving the cameras alone costs, the
	// floor under any output path. Not run unless asked for.
	SystemPull = "pull"
)

// Options configure a benchmark run. Zero values take the defaults.
type Options struct {
	// Cameras is the number of simulated cameras (and readers). It defaults to 200.
	Cameras int
	// Bitrate is each camera's bit rate. It defaults to 2 Mbit/s.
	Bitrate int
	// Codec is h264 (the default; latency matching needs it) or h265.
	Codec string
	// Duration is the measured window. It defaults to 20 s.
	Duration time.Duration
	// Warmup runs before the window (streams start, GOP caches fill). It defaults to 5 s.
	Warmup time.Duration
	// LatencySamples is how many cameras also get a direct reader, so that
	// frames can be matched to measure the latency the proxy adds. It defaults to 10.
	LatencySamples int
	// Systems lists what to measure. It defaults to baseline, passthrough, rebuild.
	Systems []string
	// Aligned makes the simulated cameras send their frames and keyframes
	// at the same instants (camsim.Server.Aligned): a burst worst case. By
	// default they are free-running, as real cameras are.
	Aligned bool
	// Executable is the cordon binary that runs the systems under test. It
	// defaults to the running executable.
	Executable string
	// Progress receives one line per step; nil discards.
	Progress io.Writer
	Logger   *slog.Logger
}

// Result is one system's measurement.
type Result struct {
	System  string
	Cameras int
	Readers int // readers that played
	Window  time.Duration
	CPU     time.Duration // user+system CPU of the system under test during the window
	Bytes   uint64        // RTP bytes received by readers during the window
	InBytes uint64        // RTP bytes the cameras sent during the window (estimated from the direct readers)
	Packets uint64
	Lost    uint64 // RTP sequence gaps seen by readers during the window
	RSS     int64  // resident memory at the end of the window
	PeakRSS int64
	Latency []time.Duration // added latency per matched frame, sorted
	// Delay is the proxy's own histogram of frame delay (last camera packet
	// in to reader write returned) over the window; nil for the baseline.
	Delay    *histogram
	Baseline *Result // the baseline of the same run, if measured
}

// DelayQuantile returns the q-quantile of the proxy's own frame delay, and
// whether it was measured. over is set when it lies beyond the largest bucket.
func (r *Result) DelayQuantile(q float64) (d time.Duration, over, ok bool) {
	if r.Delay == nil || r.Delay.total() == 0 {
		return 0, false, false
	}
	d, over = r.Delay.quantile(q)
	return d, over, true
}

// CPUPerGB is CPU seconds per gigabyte the cameras sent through the system.
// It is normalised by the input, which is the same for every system, because
// rebuild mode forwards fewer bytes than it receives (it drops filler data
// and SEI), which would make a per-output figure look worse the more it cleans.
func (r *Result) CPUPerGB() float64 {
	b := r.InBytes
	if b == 0 {
		b = r.Bytes
	}
	if b == 0 {
		return 0
	}
	return r.CPU.Seconds() / (float64(b) / 1e9)
}

// Quantile returns the q-quantile of the added latency (0 when nothing matched).
func (r *Result) Quantile(q float64) time.Duration {
	if len(r.Latency) == 0 {
		return 0
	}
	i := int(q * float64(len(r.Latency)-1))
	return r.Latency[i]
}

func (o *Options) setDefaults() error {
	if o.Cameras <= 0 {
		o.Cameras = 200
	}
	if o.Bitrate <= 0 {
		o.Bitrate = 2_000_000
	}
	if o.Codec == "" {
		o.Codec = "h264"
	}
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = 5 * time.Second
	}
	if o.LatencySamples <= 0 {
		o.LatencySamples = 10
	}
	o.LatencySamples = min(o.LatencySamples, o.Cameras)
	if len(o.Systems) == 0 {
		o.Systems = []string{SystemBaseline, SystemPassthrough, SystemRebuild}
	}
	for _, s := range o.Systems {
		switch s {
		case SystemBaseline, SystemPassthrough, SystemRebuild, SystemPull:
		default:
			return fmt.Errorf("bench: unknown system %q (want baseline, passthrough, rebuild or pull)", s)
		}
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: finding the cordon executable: %w", err)
		}
		o.Executable = exe
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run measures each system in turn against the same simulated cameras.
func Run(ctx context.Context, o Options) ([]*Result, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	cams := make([]camsim.Camera, o.Cameras)
	for i := range cams {
		cams[i] = camsim.Camera{Name: fmt.Sprintf("cam%d", i+1), Codec: o.Codec, Width: 1280, Height: 720, FPS: 25, Bitrate: o.Bitrate}
	}
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: cams, Aligned: o.Aligned, Logger: o.Logger.With("component", "camsim")}
	if err := sim.Start(); err != nil {
		return nil, err
	}
	defer sim.Close()
	timing := "free-running"
	if o.Aligned {
		timing = "aligned (all send each frame at once)"
	}
	fmt.Fprintf(o.Progress, "bench: %d simulated %s cameras at %.1f Mbit/s, %s\n", o.Cameras, o.Codec, float64(o.Bitrate)/1e6, timing)

	var results []*Result
	var base *Result
	for _, sys := range o.Systems {
		r, err := runOne(ctx, &o, sys, sim, cams)
		if err != nil {
			return results, fmt.Errorf("bench %s: %w", sys, err)
		}
		if sys == SystemBaseline {
			base = r
		}
		results = append(results, r)
	}
	for _, r := range results {
		if r != base {
			r.Baseline = base
		}
	}
	return results, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runOne(ctx context.Context, o *Options, sys string, sim *camsim.Server, cams []camsim.Camera) (*Result, error) {
	sut, err := startSUT(ctx, o, sys, sim, cams)
	if err != nil {
		return nil, err
	}
	defer sut.stop()
	proxied, direct := benchReaders(o, sys, sut.addr, sim, cams)
	all := append(append([]*reader{}, proxied...), direct...)
	defer func() {
		for _, r := range all {
			r.close()
		}
	}()
	up := 0
	for _, r := range all {
		if err := r.start(ctx); err != nil {
			o.Logger.Warn("reader failed to start", "url", r.url, "err", err)
			continue
		}
		up++
	}
	fmt.Fprintf(o.Progress, "bench %s: %d readers playing; warming up %s\n", sys, up, o.Warmup)
	if err := sleep(ctx, o.Warmup); err != nil {
		return nil, err
	}
	res, windowStart, err := measure(ctx, o, sys, sut, all)
	if err != nil {
		return nil, err
	}
	res.Cameras = len(cams)
	if err := tally(res, sys, proxied, direct, len(cams)); err != nil {
		return nil, err
	}
	for i, d := range direct {
		if i < len(proxied) {
			res.Latency = append(res.Latency, matchFrames(d.frames, proxied[i].frames, windowStart)...)
		}
	}
	slices.Sort(res.Latency)
	return res, nil
}

// sut is a running system under test.
type sut struct {
	cmd       *exec.Cmd
	addr      string // its RTSP address
	adminAddr string // its admin address; "" for the baseline
	stop      func()
}

// startSUT starts the system under test (cordon proxy in the mode sys, or
// the gortsplib baseline) and waits until it serves every camera.
func startSUT(ctx context.Context, o *Options, sys string, sim *camsim.Server, cams []camsim.Camera) (*sut, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dir, err := os.MkdirTemp("", "cordon-bench-")
	if err != nil {
		return nil, err
	}
	s := &sut{addr: addr}
	args, err := s.args(dir, sys, sim, cams)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "sut.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.CommandContext(ctx, o.Executable, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = cmd
	s.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		os.RemoveAll(dir)
	}
	fmt.Fprintf(o.Progress, "bench %s: started pid %d on %s, waiting for %d paths\n", sys, cmd.Process.Pid, addr, len(cams))
	if err := waitReady(ctx, addr, cams, 90*time.Second); err != nil {
		tail, _ := os.ReadFile(logf.Name())
		s.stop()
		return nil, fmt.Errorf("%w\nlast output of the system under test:\n%s", err, lastLines(string(tail), 15))
	}
	return s, nil
}

// args returns the command line of the system under test, writing its
// configuration in dir.
func (s *sut) args(dir, sys string, sim *camsim.Server, cams []camsim.Camera) ([]string, error) {
	if sys == SystemBaseline {
		args := []string{"bench", "proxy-baseline", "--listen", s.addr}
		for _, c := range cams {
			args = append(args, "--source", c.Name+"="+sim.URL(c.Name))
		}
		return args, nil
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	s.adminAddr = fmt.Sprintf("127.0.0.1:%d", adminPort)
	cfg := filepath.Join(dir, "cordon.yml")
	if err := os.WriteFile(cfg, proxyConfig(s.addr, s.adminAddr, sys, sim, cams), 0o600); err != nil {
		return nil, err
	}
	return []string{"proxy", "-c", cfg}, nil
}

// benchReaders returns the readers of the system under test and the
// direct readers of the cameras (for latency samples).
func benchReaders(o *Options, sys, addr string, sim *camsim.Server, cams []camsim.Camera) (proxied, direct []*reader) {
	for i, c := range cams {
		if sys != SystemPull {
			proxied = append(proxied, &reader{url: "rtsp://" + addr + "/" + c.Name})
		}
		if i < o.LatencySamples {
			if sys != SystemPull {
				proxied[i].frames = newFrameLog()
			}
			direct = append(direct, &reader{url: sim.URL(c.Name), frames: newFrameLog()})
		}
	}
	return proxied, direct
}

// measure counts the readers' traffic and the system's CPU time (and
// frame delay) over o.Duration.
func measure(ctx context.Context, o *Options, sys string, s *sut, all []*reader) (*Result, time.Time, error) {
	var delay0 *histogram
	var err error
	if s.adminAddr != "" {
		if delay0, err = scrapeDelay(ctx, s.adminAddr); err != nil {
			return nil, time.Time{}, err
		}
	}
	windowStart := time.Now()
	cpu0, err := procCPU(s.cmd.Process.Pid)
	if err != nil {
		return nil, windowStart, err
	}
	for _, r := range all {
		r.counting.Store(true)
	}
	fmt.Fprintf(o.Progress, "bench %s: measuring for %s\n", sys, o.Duration)
	if err := sleep(ctx, o.Duration); err != nil {
		return nil, windowStart, err
	}
	cpu1, err := procCPU(s.cmd.Process.Pid)
	if err != nil {
		return nil, windowStart, err
	}
	window := time.Since(windowStart)
	for _, r := range all {
		r.counting.Store(false)
	}
	res := &Result{System: sys, Window: window, CPU: cpu1 - cpu0}
	if delay0 != nil {
		delay1, err := scrapeDelay(ctx, s.adminAddr)
		if err != nil {
			return nil, windowStart, err
		}
		if res.Delay, err = delay1.sub(delay0); err != nil {
			return nil, windowStart, err
		}
	}
	res.RSS, res.PeakRSS, _ = procRSS(s.cmd.Process.Pid)
	return res, windowStart, nil
}

// tally adds up what the readers received.
func tally(res *Result, sys string, proxied, direct []*reader, cameras int) error {
	for _, r := range proxied {
		if r.client != nil {
			res.Readers++
		}
		res.Bytes += r.bytes.Load()
		res.Packets += r.packets.Load()
		res.Lost += r.lost.Load()
	}
	if res.Readers == 0 && sys != SystemPull {
		return ErrNoReaders
	}
	var directBytes uint64
	directUp := 0
	for _, d := range direct {
		if d.client != nil {
			directBytes += d.bytes.Load()
			directUp++
		}
	}
	if directUp > 0 {
		res.InBytes = directBytes / uint64(directUp) * uint64(cameras)
	}
	return nil
}

// matchFrames returns, for each frame both readers completed after since, how
// much later the proxied reader got it than the direct reader. An occurrence
// on the direct reader matches the first occurrence of the same content on the
// proxied reader from a little before it up to a second after it (the clip
// loops take longer than that).
func matchFrames(direct, proxied *frameLog, since time.Time) []time.Duration {
	direct.mu.Lock()
	defer direct.mu.Unlock()
	proxied.mu.Lock()
	defer proxied.mu.Unlock()
	const early, late = 100 * time.Millisecond, time.Second
	var out []time.Duration
	for k, tds := range direct.seen {
		tps := proxied.seen[k]
		for _, td := range tds {
			if td.Before(since) {
				continue
			}
			for _, tp := range tps {
				d := tp.Sub(td)
				if d < -early || d > late {
					continue
				}
				out = append(out, max(d, 0)) // d < 0: the proxied reader was scheduled first
				break
			}
		}
	}
	return out
}

func proxyConfig(addr, adminAddr, mode string, sim *camsim.Server, cams []camsim.Camera) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  rtsp: %q\n  admin: %q\n  udp_rtp: \"off\"\n  udp_rtcp: \"off\"\nallow_anonymous: true\ncameras:\n", addr, adminAddr)
	if mode == SystemPull {
		mode = SystemPassthrough
	}
	for _, c := range cams {
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    transport: tcp\n    mode: %s\n", c.Name, sim.URL(c.Name), mode)
	}
	return []byte(b.String())
}

// waitReady waits until every camera path answers DESCRIBE.
func waitReady(ctx context.Context, addr string, cams []camsim.Camera, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, c := range cams {
		for {
			if describe("rtsp://"+addr+"/"+c.Name) == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("path %s not ready after %s", c.Name, timeout)
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

func describe(raw string) error {
	u, err := base.ParseURL(raw)
	if err != nil {
		return err
	}
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, ReadTimeout: 5 * time.Second}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	_, _, err = c.Describe(u)
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WriteTable prints results with ratios against the baseline.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tcameras\treaders\tMbit/s in\tMbit/s out\tCPU s/GB in\tvs baseline\tRSS MiB\tRSS/camera KiB\tlost pkts\tadded p50\tadded p99\tframes matched\tin-proxy p50\tin-proxy p99\t")
	for _, r := range results {
		ratio := "-"
		if r.Baseline != nil && r.Baseline.CPUPerGB() > 0 {
			ratio = fmt.Sprintf("%.2fx", r.CPUPerGB()/r.Baseline.CPUPerGB())
		}
		mbps := float64(r.Bytes) * 8 / r.Window.Seconds() / 1e6
		mbpsIn := float64(r.InBytes) * 8 / r.Window.Seconds() / 1e6
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.3f\t%s\t%.1f\t%.0f\t%d\t%s\t%s\t%d\t%s\t%s\t\n",
			r.System, r.Cameras, r.Readers, mbpsIn, mbps, r.CPUPerGB(), ratio,
			float64(r.RSS)/(1<<20), float64(r.RSS)/1024/float64(max(r.Cameras, 1)), r.Lost,
			r.Quantile(0.5).Round(10*time.Microsecond), r.Quantile(0.99).Round(10*time.Microsecond), len(r.Latency),
			delayCell(r, 0.5), delayCell(r, 0.99))
	}
	return tw.Flush()
}

// delayCell formats a quantile of the proxy's own frame delay ("-" when
// not measured, as for the baseline).
func delayCell(r *Result, q float64) string {
	d, over, ok := r.DelayQuantile(q)
	switch {
	case !ok:
		return "-"
	case over:
		return ">" + d.String()
	}
	return d.Round(10 * time.Microsecond).String()
}

// ErrNoReaders is returned when no reader could play a system's streams.
var ErrNoReaders = errors.New("bench: no reader could play")

// WriteSummary prints, for results of several runs of the same systems,
// each system's spread over the runs: the CPU ratio to the baseline of the
// same run, the added latency p99, the proxy's own delay p99, the largest
// memory per camera and all packets lost.
func WriteSummary(w io.Writer, runs [][]*Result) error {
	type acc struct {
		ratio, p99, inP99, rss []float64
		lost                   uint64
	}
	var order []string
	by := map[string]*acc{}
	for _, run := range runs {
		for _, r := range run {
			a := by[r.System]
			if a == nil {
				a = &acc{}
				by[r.System] = a
				order = append(order, r.System)
			}
			if r.Baseline != nil && r.Baseline.CPUPerGB() > 0 {
				a.ratio = append(a.ratio, r.CPUPerGB()/r.Baseline.CPUPerGB())
			}
			if len(r.Latency) > 0 {
				a.p99 = append(a.p99, r.Quantile(0.99).Seconds()*1e3)
			}
			if d, _, ok := r.DelayQuantile(0.99); ok {
				a.inP99 = append(a.inP99, d.Seconds()*1e3)
			}
			a.rss = append(a.rss, float64(r.RSS)/1024/float64(max(r.Cameras, 1)))
			a.lost += r.Lost
		}
	}
	spread := func(v []float64, format string) string {
		if len(v) == 0 {
			return "-"
		}
		s := slices.Sorted(slices.Values(v))
		return fmt.Sprintf(format+" / "+format+" / "+format, s[0], s[len(s)/2], s[len(s)-1])
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "system\truns\tvs baseline min / median / max\tadded p99 ms min / median / max\tin-proxy p99 ms max\tRSS/camera KiB max\tlost pkts\t\n")
	for _, name := range order {
		a := by[name]
		inMax := "-"
		if len(a.inP99) > 0 {
			inMax = fmt.Sprintf("%.2f", slices.Max(a.inP99))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.0f\t%d\t\n", name, len(a.rss),
			spread(a.ratio, "%.2fx"), spread(a.p99, "%.2f"), inMax, slices.Max(a.rss), a.lost)
	}
	return tw.Flush()
}

// Package bench measures cordon's proxy against a plain gortsplib pass-through
// proxy, and optionally MediaMTX, in the same run: simulated cameras (package
// camsim, looping real encoded video with no filler) feed each system under
// test, which runs as its own process so that its CPU time and memory can be
// read from /proc, and TCP readers (one or more per camera) count what
// arrives. A system that forwards less than 99 % of the video it received
// fails the run. Results are reported as ratios against the baseline and
// MediaMTX, never as absolute targets from a timed test (machines are noisy).
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
	"sync"
	"sync/atomic"
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
	// SystemMediaMTX is a MediaMTX binary the user points to
	// (Options.MediaMTX), with a generated configuration.
	SystemMediaMTX = "mediamtx"
	// SystemPull is cordon proxy (mode passthrough) pulling every camera
	// with no reader attached: what receiving the cameras alone costs, the
	// floor under any output path. Not run unless asked for.
	SystemPull = "pull"
	// SystemFloor is not a proxy: Floor, a relay that reads each camera
	// once per arrival and writes the same bytes to each of its readers,
	// run as "cordon bench proxy-floor". What reading each frame once and
	// writing it once per reader costs in Go: the floor under any Go proxy
	// of that shape. Not run unless asked for.
	SystemFloor = "floor"
)

// Options configure a benchmark run. Zero values take the defaults.
type Options struct {
	// Cameras is the number of simulated cameras. It defaults to 200.
	Cameras int
	// ReadersPerCamera is the number of TCP readers of each camera through
	// the system under test (3: a recorder and two viewers). It defaults to 1.
	ReadersPerCamera int
	// Bitrate is each camera's bit rate, met with real video: an embedded
	// clip (500k at 640x360, 2M at 1280x720, 4M at 1920x1080) or one
	// encoded once into ClipCache. It defaults to 2 Mbit/s.
	Bitrate int
	// Width and Height are the cameras' picture size. They default to 1280x720.
	Width, Height int
	// FPS is the cameras' frame rate when it is not 25 (bench trunk): the
	// clip is encoded at 25 fps for Bitrate×25/FPS, so that sent at FPS
	// it has Bitrate. 0 is 25.
	FPS int
	// ClipCache is where clips the embedded ones do not cover are encoded,
	// once, with ffmpeg (camsim.EncodeClip). It defaults to
	// $XDG_CACHE_HOME/cordon/camsim-clips (os.UserCacheDir).
	ClipCache string
	// MediaMTX is the path of a MediaMTX binary (built or downloaded by the
	// user; the bench builds nothing). When set, system "mediamtx" runs it
	// with a generated configuration, and ratios to it are reported.
	MediaMTX string
	// Codec is h264 (the default; latency matching needs it) or h265.
	Codec string
	// Duration is the measured window. It defaults to 20 s.
	Duration time.Duration
	// Warmup runs before the window (streams start, GOP caches fill). It defaults to 5 s.
	Warmup time.Duration
	// LatencySamples is how many cameras also get a direct reader, so that
	// frames can be matched to measure the latency the proxy adds. It defaults to 10.
	LatencySamples int
	// Systems lists what to measure. It defaults to baseline, mediamtx
	// (when MediaMTX is set), passthrough, rebuild.
	Systems []string
	// Aligned makes the simulated cameras send their frames and keyframes
	// at the same instants (camsim.Server.Aligned): a burst worst case. By
	// default they are free-running, as real cameras are.
	Aligned bool
	// WritePerPacket makes the simulated cameras write each RTP packet
	// with its own system call (camsim.Server.WritePerPacket) rather than
	// a frame's packets together.
	WritePerPacket bool
	// ReadCoalesce is cordon's camera_side.read_coalesce (0: its default).
	ReadCoalesce time.Duration
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
	Readers int // readers through the system that played
	Wanted  int // readers through the system that were started
	Window  time.Duration
	CPU     time.Duration // user+system CPU of the system under test during the window
	Bytes   uint64        // RTP bytes received by readers during the window
	InBytes uint64        // RTP bytes the cameras sent during the window (estimated from the direct readers)
	Packets uint64
	// VideoSent is the coded-slice bytes (the video, without parameter sets,
	// SEI, AUD or filler) the cameras sent for the frames the readers
	// counted, once per reader; VideoDelivered is what the readers got of
	// it. Counted over whole loops of the cameras' clips (see videoCount).
	VideoSent, VideoDelivered int64
	Lost                      uint64 // RTP sequence gaps seen by readers during the window
	// ReaderErrors counts readers through the system whose video could not
	// be counted (no frame completed in the window); any fails the run.
	ReaderErrors int
	readerErr    error // the first of them
	RSS          int64 // resident memory at the end of the window
	// GOPBytes is what cordon's GOP caches held at the end of the window
	// (cordon_gop_cache_bytes); 0 for the others, which keep none.
	GOPBytes int64
	PeakRSS  int64
	// Latency is the added latency per matched frame, sorted: by the
	// kernel's receive times of the frames on the direct and the proxied
	// reader (see reader), so the bench's own scheduling is not in it.
	Latency []time.Duration
	// E2E is the same by the times the bench parsed the frames (it
	// includes the bench's scheduling delay), and BenchLate, per frame of
	// the direct readers, that delay itself: from the frame's arrival in
	// the socket to the bench parsing it. Both sorted.
	E2E, BenchLate []time.Duration
	// Delay is the proxy's own histogram of frame delay (last camera packet
	// in to reader write returned) over the window; nil for the baseline.
	Delay    *histogram
	Baseline *Result // the baseline of the same run, if measured
	MediaMTX *Result // MediaMTX in the same run, if measured
}

// MinForwarded is the share of the video bytes a system received that it
// must deliver to each reader for the run to pass.
const MinForwarded = 0.99

// Forwarded returns the share of the video the readers got (1: all of it),
// and whether it was measured.
func (r *Result) Forwarded() (float64, bool) {
	if r.VideoSent == 0 {
		return 0, false
	}
	return float64(r.VideoDelivered) / float64(r.VideoSent), true
}

// check returns an error when the system lost readers or video.
func (r *Result) check() error {
	if r.System == SystemPull {
		return nil
	}
	if r.Readers < r.Wanted {
		return fmt.Errorf("bench %s: only %d of %d readers played", r.System, r.Readers, r.Wanted)
	}
	if r.ReaderErrors > 0 {
		return fmt.Errorf("bench %s: %d readers' video could not be counted, as %w", r.System, r.ReaderErrors, r.readerErr)
	}
	f, ok := r.Forwarded()
	if !ok {
		return fmt.Errorf("bench %s: no video counted", r.System)
	}
	if f < MinForwarded {
		return fmt.Errorf("bench %s: delivered %.2f %% of the video bytes the cameras sent (%d of %d), want at least %.0f %%",
			r.System, 100*f, r.VideoDelivered, r.VideoSent, 100*MinForwarded)
	}
	return nil
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
	return perGB(r.CPU, b)
}

// Quantile returns the q-quantile of the added latency (0 when nothing matched).
func (r *Result) Quantile(q float64) time.Duration {
	return quantile(r.Latency, q)
}

// quantile is the q-quantile of sorted latencies (0 when there are none).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// loadDefaults fills the camera and window settings both benchmarks share:
// 2 Mbit/s 1280x720 H.264 cameras, a 20 s window after a 5 s warm-up and
// 10 latency samples.
func loadDefaults(bitrate, width, height *int, codec *string, duration, warmup *time.Duration, samples *int) {
	if *bitrate <= 0 {
		*bitrate = 2_000_000
	}
	if *width <= 0 || *height <= 0 {
		*width, *height = 1280, 720
	}
	if *codec == "" {
		*codec = "h264"
	}
	if *duration <= 0 {
		*duration = 20 * time.Second
	}
	if *warmup <= 0 {
		*warmup = 5 * time.Second
	}
	if *samples <= 0 {
		*samples = 10
	}
}

func (o *Options) setDefaults() error {
	if o.Cameras <= 0 {
		o.Cameras = 200
	}
	if o.ReadersPerCamera <= 0 {
		o.ReadersPerCamera = 1
	}
	loadDefaults(&o.Bitrate, &o.Width, &o.Height, &o.Codec, &o.Duration, &o.Warmup, &o.LatencySamples)
	o.LatencySamples = min(o.LatencySamples, o.Cameras)
	if len(o.Systems) == 0 {
		o.Systems = []string{SystemBaseline, SystemPassthrough, SystemRebuild}
		if o.MediaMTX != "" {
			o.Systems = []string{SystemBaseline, SystemMediaMTX, SystemPassthrough, SystemRebuild}
		}
	}
	for _, s := range o.Systems {
		switch s {
		case SystemBaseline, SystemPassthrough, SystemRebuild, SystemPull, SystemFloor:
		case SystemMediaMTX:
			if o.MediaMTX == "" {
				return errors.New("bench: system mediamtx needs MediaMTX, the path of a MediaMTX binary")
			}
		default:
			return fmt.Errorf("bench: unknown system %q (want baseline, mediamtx, passthrough, rebuild, pull or floor)", s)
		}
	}
	if o.MediaMTX != "" {
		if _, err := os.Stat(o.MediaMTX); err != nil {
			return fmt.Errorf("bench: MediaMTX: %w", err)
		}
	}
	return runDefaults("bench", &o.Executable, &o.Progress, &o.Logger)
}

// runDefaults fills what both benchmarks need to run: the cordon executable
// (this one), a progress writer and a logger (both discarding). what
// prefixes the error.
func runDefaults(what string, executable *string, progress *io.Writer, logger **slog.Logger) error {
	if *executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("%s: finding the cordon executable: %w", what, err)
		}
		*executable = exe
	}
	if *progress == nil {
		*progress = io.Discard
	}
	if *logger == nil {
		*logger = slog.New(slog.DiscardHandler)
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
		cams[i] = camsim.Camera{Name: fmt.Sprintf("cam%d", i+1), Codec: o.Codec, Width: o.Width, Height: o.Height, FPS: 25, Bitrate: o.Bitrate}
	}
	sim, err := startCameras(ctx, &o, cams)
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	timing := "free-running"
	if o.Aligned {
		timing = "aligned (all send each frame at once)"
	}
	if o.WritePerPacket {
		timing += ", one write per packet"
	}
	info := sim.Streams()[0]
	fmt.Fprintf(o.Progress, "bench: %d simulated %s cameras looping %s (real video, %.2f Mbit/s, %d x %d, no filler), %s\n",
		o.Cameras, o.Codec, info.Clip, float64(info.Bitrate)/1e6, info.Width, info.Height, timing)

	var results []*Result
	var base, mtx *Result
	var errs []error
	for _, sys := range o.Systems {
		r, err := runOne(ctx, &o, sys, sim, cams)
		if err != nil {
			return results, fmt.Errorf("bench %s: %w", sys, err)
		}
		switch sys {
		case SystemBaseline:
			base = r
		case SystemMediaMTX:
			mtx = r
		}
		if err := r.check(); err != nil {
			fmt.Fprintf(o.Progress, "%v\n", err)
			errs = append(errs, err)
		}
		results = append(results, r)
	}
	for _, r := range results {
		if r != base {
			r.Baseline = base
		}
		if r != mtx {
			r.MediaMTX = mtx
		}
	}
	if len(errs) > 0 {
		return results, fmt.Errorf("%w: %w", ErrForwarding, errors.Join(errs...))
	}
	return results, nil
}

// ErrForwarding is returned, after every system ran, when one lost readers or
// delivered less than MinForwarded of the video.
var ErrForwarding = errors.New("bench: a system did not forward the video whole")

// startCameras starts the simulated cameras on real video at the asked
// rate: an embedded clip if one is close enough (camsim adds no filler
// then), or else a clip encoded once into the clip cache. It refuses to
// measure on filler.
func startCameras(ctx context.Context, o *Options, cams []camsim.Camera) (*camsim.Server, error) {
	start := func(dir string) (*camsim.Server, error) {
		sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: cams, Aligned: o.Aligned, WritePerPacket: o.WritePerPacket, ClipDir: dir, Logger: o.Logger.With("component", "camsim")}
		if err := sim.Start(); err != nil {
			return nil, err
		}
		if dir == "" && !clipFits(sim.Streams()[0], o.Width, o.Height, o.Bitrate) {
			sim.Close()
			return nil, nil
		}
		if sim.Streams()[0].FillerBitrate > 0 {
			sim.Close()
			return nil, nil
		}
		return sim, nil
	}
	sim, err := start("")
	if sim != nil || err != nil {
		return sim, err
	}
	dir := o.ClipCache
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("bench: no embedded clip of %dx%d near %d bit/s, and no cache directory: %w", o.Width, o.Height, o.Bitrate, err)
		}
		dir = filepath.Join(c, "cordon", "camsim-clips")
	}
	rate := o.Bitrate // of the clip, at 25 fps
	if o.FPS > 0 {
		rate = int(int64(o.Bitrate) * 25 / int64(o.FPS))
	}
	if _, err := os.Stat(filepath.Join(dir, camsim.ClipName(o.Codec, o.Width, o.Height, rate))); err != nil {
		fmt.Fprintf(o.Progress, "bench: no embedded clip of %dx%d near %s bit/s: encoding one into %s with ffmpeg\n", o.Width, o.Height, camsim.FormatBitrate(rate), dir)
	}
	if _, err := camsim.EncodeClip(ctx, dir, o.Codec, o.Width, o.Height, rate); err != nil {
		return nil, fmt.Errorf("bench: no embedded clip of %dx%d near %d bit/s (the bench measures real video, never filler): %w", o.Width, o.Height, o.Bitrate, err)
	}
	sim, err = start(dir)
	if sim == nil && err == nil {
		err = fmt.Errorf("bench: the clip encoded for %dx%d at %d bit/s is more than 5 %% short of it; camsim would pad it with filler", o.Width, o.Height, o.Bitrate)
	}
	return sim, err
}

// clipFits reports whether an embedded clip is the one asked for: the
// same picture size, and a rate within 5 % of bitrate. Otherwise the
// bench encodes the size and rate asked for (a smaller picture or a lower
// rate than the embedded clips' is not served from a larger clip).
func clipFits(s camsim.StreamInfo, w, h, bitrate int) bool {
	return s.Width == w && s.Height == h && s.Bitrate*100 <= bitrate*105 && s.Bitrate*100 >= bitrate*95
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
			o.Logger.Warn("reader failed to start", "url", r.url, "error", err)
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
	if err := tally(o, res, sys, proxied, direct, sim.Streams()); err != nil {
		return nil, err
	}
	n := o.ReadersPerCamera
	for i, d := range direct {
		if i*n < len(proxied) {
			l := matchFrames(d.frames, proxied[i*n].frames, windowStart)
			res.Latency = append(res.Latency, l.added...)
			res.E2E = append(res.E2E, l.e2e...)
			res.BenchLate = append(res.BenchLate, l.late...)
		}
	}
	slices.Sort(res.Latency)
	slices.Sort(res.E2E)
	slices.Sort(res.BenchLate)
	return res, nil
}

// sut is a running system under test.
type sut struct {
	cmd       *exec.Cmd
	addr      string // its RTSP address
	adminAddr string // its admin address; "" but for cordon
	stop      func()
}

// startSUT starts the system under test (cordon proxy in the mode sys, the
// gortsplib baseline, the floor relay or MediaMTX) and waits until it serves every camera.
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
	exe, args, err := s.args(o, dir, sys, sim, cams)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "sut.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = dir
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

// args returns the executable and command line of the system under test,
// writing its configuration in dir.
func (s *sut) args(o *Options, dir, sys string, sim *camsim.Server, cams []camsim.Camera) (string, []string, error) {
	switch sys {
	case SystemBaseline, SystemFloor:
		args := []string{"bench", "proxy-" + sys, "--listen", s.addr}
		for _, c := range cams {
			args = append(args, "--source", c.Name+"="+sim.URL(c.Name))
		}
		return o.Executable, args, nil
	case SystemMediaMTX:
		cfg := filepath.Join(dir, "mediamtx.yml")
		if err := os.WriteFile(cfg, mediamtxConfig(s.addr, sim, cams), 0o600); err != nil {
			return "", nil, err
		}
		return o.MediaMTX, []string{cfg}, nil
	}
	adminPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	s.adminAddr = fmt.Sprintf("127.0.0.1:%d", adminPort)
	cfg := filepath.Join(dir, "cordon.yml")
	if err := os.WriteFile(cfg, proxyConfig(s.addr, s.adminAddr, sys, o.ReadCoalesce, sim, cams), 0o600); err != nil {
		return "", nil, err
	}
	return o.Executable, []string{"proxy", "-c", cfg}, nil
}

// benchReaders returns the readers of the system under test and the
// direct readers of the cameras (for latency samples). proxied[i*n+k] is
// reader k of camera i (n readers per camera); reader 0 of each of the
// first LatencySamples cameras also logs frames, as does its direct reader.
func benchReaders(o *Options, sys, addr string, sim *camsim.Server, cams []camsim.Camera) (proxied, direct []*reader) {
	for i, c := range cams {
		if sys != SystemPull {
			for k := range o.ReadersPerCamera {
				r := &reader{url: "rtsp://" + addr + "/" + c.Name, fps: c.FPS}
				if k == 0 && i < o.LatencySamples {
					r.frames = newFrameLog()
				}
				proxied = append(proxied, r)
			}
		}
		if i < o.LatencySamples {
			direct = append(direct, &reader{url: sim.URL(c.Name), fps: c.FPS, frames: newFrameLog()})
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
		body, err := scrapeMetrics(ctx, s.adminAddr)
		if err != nil {
			return nil, windowStart, err
		}
		delay1, err := parseHistogram(strings.NewReader(body), delayMetric)
		if err != nil {
			return nil, windowStart, err
		}
		if res.Delay, err = delay1.sub(delay0); err != nil {
			return nil, windowStart, err
		}
		if g, ok := parseGauge(body, gopMetric); ok {
			res.GOPBytes = int64(g)
		}
	}
	res.RSS, res.PeakRSS, _, _ = procStatus(s.cmd.Process.Pid)
	return res, windowStart, nil
}

// tally adds up what the readers received; infos are the cameras' streams.
func tally(o *Options, res *Result, sys string, proxied, direct []*reader, infos []camsim.StreamInfo) error {
	n := o.ReadersPerCamera
	res.Wanted = len(proxied)
	for i, r := range proxied {
		if r.playing {
			res.Readers++
			info := infos[i/n]
			d, s, err := r.video.forwarded(info.LoopFrames, info.LoopVideoBytes)
			if err != nil {
				// Counted as a failure of the system (the other readers'
				// figures are still worth printing).
				if res.readerErr == nil {
					res.readerErr = fmt.Errorf("reader %d of %s: %w (use a longer --duration)", i%n+1, info.Name, err)
				}
				res.ReaderErrors++
				continue
			}
			res.VideoDelivered += d
			res.VideoSent += s
		}
		res.Bytes += r.bytes.Load()
		res.Packets += r.packets.Load()
		res.Lost += r.lost.Load()
	}
	if res.Readers == 0 && sys != SystemPull {
		return ErrNoReaders
	}
	var directBytes uint64
	var directVideo, directSent int64
	directUp := 0
	for i, d := range direct {
		if d.playing {
			directBytes += d.bytes.Load()
			directUp++
			if dv, ds, err := d.video.forwarded(infos[i].LoopFrames, infos[i].LoopVideoBytes); err == nil {
				directVideo += dv
				directSent += ds
			}
		}
	}
	if directUp > 0 {
		res.InBytes = directBytes / uint64(directUp) * uint64(len(infos))
	}
	if directSent > 0 {
		// The same count on readers of the cameras themselves: a check of the
		// method, which should say 100 %.
		fmt.Fprintf(o.Progress, "bench %s: direct readers of the cameras got %.2f %% of the video bytes sent\n", sys, 100*float64(directVideo)/float64(directSent))
	}
	return nil
}

// latencies are what matching a direct and a proxied reader's frames gives.
type latencies struct {
	// added is how much later the proxied reader's frame arrived in its
	// socket than the direct reader's (kernel receive times: what the proxy
	// added, whenever the bench got to read them); bench times when the
	// kernel's are unknown.
	added []time.Duration
	// e2e is the same by the times the bench's goroutines parsed the frames:
	// it includes the bench's own scheduling delay.
	e2e []time.Duration
	// late is, for each frame of the direct reader, how long after its
	// arrival in the socket the bench parsed it: the bench's own delay.
	late []time.Duration
}

// matchFrames matches the frames both readers completed after since. An
// occurrence on the direct reader matches the first occurrence of the same
// content on the proxied reader from a little before it up to a second
// after it (the clip loops take longer than that).
func matchFrames(direct, proxied *frameLog, since time.Time) latencies {
	direct.mu.Lock()
	defer direct.mu.Unlock()
	proxied.mu.Lock()
	defer proxied.mu.Unlock()
	const early, late = 100 * time.Millisecond, time.Second
	var out latencies
	for k, tds := range direct.seen {
		tps := proxied.seen[k]
		for _, td := range tds {
			if td.user.Before(since) {
				continue
			}
			if !td.kernel.IsZero() {
				out.late = append(out.late, max(td.user.Sub(td.kernel), 0))
			}
			for _, tp := range tps {
				d := tp.at().Sub(td.at())
				if d < -early || d > late {
					continue
				}
				// d < 0: the proxied reader was scheduled first.
				out.added = append(out.added, max(d, 0))
				out.e2e = append(out.e2e, max(tp.user.Sub(td.user), 0))
				break
			}
		}
	}
	return out
}

// benchConnLimit is the proxy's connection cap in the bench: above any
// cameras × readers-per-camera the bench accepts (500 × 20), plus matching.
const benchConnLimit = 20000

func proxyConfig(addr, adminAddr, mode string, coalesce time.Duration, sim *camsim.Server, cams []camsim.Camera) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  rtsp: %q\n  admin: %q\n  udp_rtp: \"off\"\n  udp_rtcp: \"off\"\nallow_anonymous: true\n", addr, adminAddr)
	if coalesce != 0 {
		fmt.Fprintf(&b, "camera_side:\n  read_coalesce: %s\n", coalesce)
	}
	// Every reader of the bench comes from 127.0.0.1: lift the per-source
	// cap (64 by default) so they all connect.
	fmt.Fprintf(&b, "limits:\n  max_connections: %d\n  max_connections_per_source: %d\ncameras:\n", benchConnLimit, benchConnLimit)
	if mode == SystemPull {
		mode = SystemPassthrough
	}
	for _, c := range cams {
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    transport: tcp\n    mode: %s\n", c.Name, sim.URL(c.Name), mode)
	}
	return []byte(b.String())
}

// mediamtxConfig is MediaMTX's configuration for the bench: RTSP over TCP
// only on addr, every other protocol and server off, one path per camera
// pulled at once (not on demand) over TCP, anyone may read. Its keys are
// those of MediaMTX 1.20 (unknown keys are errors there).
func mediamtxConfig(addr string, sim *camsim.Server, cams []camsim.Camera) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `logLevel: warn
logDestinations: [stdout]
api: false
metrics: false
pprof: false
playback: false
rtsp: true
rtspTransports: [tcp]
rtspEncryption: "no"
rtspAddress: %q
rtmp: false
hls: false
webrtc: false
srt: false
moq: false
authInternalUsers:
  - user: any
    pass:
    ips: []
    permissions:
      - action: read
        path:
paths:
`, addr)
	for _, c := range cams {
		fmt.Fprintf(&b, "  %s:\n    source: %s\n    rtspTransport: tcp\n    sourceOnDemand: false\n", c.Name, sim.URL(c.Name))
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

// waitReadyEach is waitReady with the paths checked by up to workers
// goroutines at once: one DESCRIBE after another takes minutes for a
// thousand paths on a loaded machine.
func waitReadyEach(ctx context.Context, addr string, cams []camsim.Camera, timeout time.Duration, workers int) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	next := make(chan camsim.Camera)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	var ready atomic.Int64
	for range min(workers, len(cams)) {
		wg.Go(func() {
			for c := range next {
				if err := waitReady(ctx, addr, []camsim.Camera{c}, timeout); err != nil {
					errs <- fmt.Errorf("%d of %d paths served after %s: path %s: %w", ready.Load(), len(cams), timeout, c.Name, err)
					cancel()
					return
				}
				ready.Add(1)
			}
		})
	}
feed:
	for _, c := range cams {
		select {
		case next <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%d of %d paths served after %s: %w", ready.Load(), len(cams), timeout, err)
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

// ratio formats r's CPU per GB over ref's ("-" without ref).
func ratio(r, ref *Result) string {
	if ref == nil || ref.CPUPerGB() == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r.CPUPerGB()/ref.CPUPerGB())
}

// WriteTable prints results with ratios against the baseline and MediaMTX.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tcameras\treaders\tMbit/s in\tMbit/s out\tvideo MB sent\tvideo MB got\tvideo fwd\tCPU s/GB in\tvs baseline\tvs mediamtx\tRSS MiB\tGOP cache MiB\tRSS/camera KiB\tlost pkts\tadded p50\tadded p99\tframes matched\te2e p99\tbench late p99\tin-proxy p50\tin-proxy p99\t")
	for _, r := range results {
		mbps := float64(r.Bytes) * 8 / r.Window.Seconds() / 1e6
		mbpsIn := float64(r.InBytes) * 8 / r.Window.Seconds() / 1e6
		fwd := "-"
		if f, ok := r.Forwarded(); ok {
			fwd = fmt.Sprintf("%.2f%%", 100*f)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%.3f\t%s\t%s\t%.1f\t%.1f\t%.0f\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n",
			r.System, r.Cameras, r.Readers, mbpsIn, mbps, float64(r.VideoSent)/1e6, float64(r.VideoDelivered)/1e6, fwd,
			r.CPUPerGB(), ratio(r, r.Baseline), ratio(r, r.MediaMTX),
			float64(r.RSS)/(1<<20), float64(r.GOPBytes)/(1<<20), float64(r.RSS)/1024/float64(max(r.Cameras, 1)), r.Lost,
			r.Quantile(0.5).Round(10*time.Microsecond), r.Quantile(0.99).Round(10*time.Microsecond), len(r.Latency),
			quantile(r.E2E, 0.99).Round(10*time.Microsecond), quantile(r.BenchLate, 0.99).Round(10*time.Microsecond),
			delayCell(r, 0.5), delayCell(r, 0.99))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeFloorNote(w, results)
}

// writeFloorNote says, under a table with the floor in it, what the floor
// is and each other system's CPU per GB as a multiple of it.
func writeFloorNote(w io.Writer, results []*Result) error {
	var floor *Result
	for _, r := range results {
		if r.System == SystemFloor {
			floor = r
		}
	}
	if floor == nil {
		return nil
	}
	var vs []string
	for _, r := range results {
		if r != floor && r.System != SystemPull {
			vs = append(vs, r.System+" "+ratio(r, floor))
		}
	}
	_, err := fmt.Fprintf(w, "floor is NOT a proxy: a relay reading each camera once per arrival and writing the same bytes to each reader (no RTP parsing, GOP cache, rebuild or per-reader state): the floor under any Go proxy of this shape\nvs floor: %s\n",
		strings.Join(vs, ", "))
	return err
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
		ratio, mtx, p99, inP99, rss []float64
		lost                        uint64
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
			if r.MediaMTX != nil && r.MediaMTX.CPUPerGB() > 0 {
				a.mtx = append(a.mtx, r.CPUPerGB()/r.MediaMTX.CPUPerGB())
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
	fmt.Fprintf(tw, "system\truns\tvs baseline min / median / max\tvs mediamtx min / median / max\tadded p99 ms min / median / max\tin-proxy p99 ms max\tRSS/camera KiB max\tlost pkts\t\n")
	for _, name := range order {
		a := by[name]
		inMax := "-"
		if len(a.inP99) > 0 {
			inMax = fmt.Sprintf("%.2f", slices.Max(a.inP99))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%.0f\t%d\t\n", name, len(a.rss),
			spread(a.ratio, "%.2fx"), spread(a.mtx, "%.2fx"), spread(a.p99, "%.2f"), inMax, slices.Max(a.rss), a.lost)
	}
	return tw.Flush()
}

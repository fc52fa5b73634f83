package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/internal/logging"
	"github.com/cordon-vms/cordon/internal/procs"
	"github.com/cordon-vms/cordon/proxy/bench"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

const benchUsage = `usage: cordon bench proxy [flags]

Measures cordon's proxy against a plain gortsplib pass-through proxy (the
gortsplib examples/proxy pattern), and MediaMTX with --mediamtx, in the same
run, on loopback:

  simulated cameras (camsim) ──▶ system under test (own process) ──▶ TCP readers (--readers-per-camera)

The cameras loop real encoded video (x264/x265, 2 s GOP) at the bit rate asked
for, with no filler: 640x360 at 500k, 1280x720 at 2M and 1920x1080 at 4M are
embedded; another size or rate is encoded once with ffmpeg into --clip-cache.

For each system it reports bit rates in and out, the video bytes (coded
slices) sent and delivered, CPU seconds per GB the cameras sent (and the
ratios to the baseline and to MediaMTX), resident memory (total and per
camera), RTP packets lost on the way to readers, the latency the proxy adds
per frame (p50/p99, from frames matched between a direct and a proxied reader
on a few cameras, by the kernel's receive times; "e2e" by the bench's own, and
"bench late" the bench's own delay) and, for cordon, its own frame delay (p50/p99 of
cordon_reader_frame_delay_seconds). A system that delivers less than 99 % of
the video bytes to its readers fails the run (exit status 1, after the table).

The simulated cameras are free-running, like real ones; --aligned makes them
all send each frame at once (a burst worst case). The system "pull" (cordon
receiving every camera with no reader) shows what receiving alone costs.

The system "floor" is NOT a proxy: a relay (its own process, like the
baseline) that reads each camera once per arrival into one buffer and writes
the same bytes to each of the camera's readers, with no RTP parsing, GOP
cache, rebuild or per-reader state. It measures what reading each frame once
and writing it once per reader costs in Go on this machine: the floor under
any Go proxy of this shape. The table is followed by each system's CPU per GB
as a multiple of the floor's.

The firmware and egress benchmarks are scripts: scripts/bench-firmware and
scripts/bench-egress.

Examples:

  cordon bench proxy                               # 200 cameras x 2 Mbit/s, 20 s per system
  cordon bench proxy --cameras 20 --duration 10s   # a quick look
  cordon bench proxy --systems baseline,rebuild
  cordon bench proxy --systems baseline,passthrough,pull --aligned
  cordon bench proxy --runs 3                      # three runs, then the spread of each figure
  cordon bench proxy --mediamtx ~/bin/mediamtx --readers-per-camera 3
  cordon bench proxy --mediamtx ~/bin/mediamtx --systems floor,mediamtx,passthrough,rebuild
`

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "proxy":
			return runBenchProxy(ctx, e, args[1:])
		case "proxy-baseline":
			return runBenchBaseline(ctx, e, args[1:])
		case "proxy-floor":
			return runBenchFloor(ctx, e, args[1:])
		case "trunk":
			return runBenchTrunk(ctx, e, args[1:])
		}
	}
	fs := newFlagSet(e, "bench", benchUsage)
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("name a benchmark: cordon bench proxy, or cordon bench trunk")
	}
	return usagef("unknown benchmark %q: the built-in benchmarks are proxy and trunk", fs.Arg(0))
}

// benchFlags are the flags both benchmarks take: the cameras' --bitrate and
// --size, and --systems.
type benchFlags struct{ bitrate, size, systems *string }

func newBenchFlags(fs *flag.FlagSet, systemsUsage string) benchFlags {
	return benchFlags{
		bitrate: fs.String("bitrate", "2M", "bit rate of each camera (e.g. 500k, 2M), met with real video"),
		size:    fs.String("size", "1280x720", "picture `WxH` of each camera"),
		systems: fs.String("systems", "", systemsUsage),
	}
}

// apply reads --size, --bitrate (errors in them are usage errors) and
// --systems (nil when empty: the benchmark's default), and sends progress
// to stderr and errors only to a logger there.
func (f benchFlags) apply(e *env, width, height, bitrate *int, systems *[]string, progress *io.Writer, logger **slog.Logger) error {
	var err error
	if *width, *height, err = camsim.ParseSize(*f.size); err != nil {
		return usagef("--size: %v", err)
	}
	if *bitrate, err = camsim.ParseBitrate(*f.bitrate); err != nil {
		return usagef("--bitrate %q: %v", *f.bitrate, err)
	}
	if *f.systems != "" {
		*systems = strings.Split(*f.systems, ",")
	}
	*progress = e.Stderr
	*logger, err = logging.New(e.Stderr, logging.Options{Level: "error"})
	return err
}

func runBenchProxy(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench proxy", benchUsage)
	var o bench.Options
	fs.IntVar(&o.Cameras, "cameras", 200, "number of simulated cameras")
	fs.IntVar(&o.ReadersPerCamera, "readers-per-camera", 1, "TCP readers of each camera through the system under test (3: a recorder and two viewers)")
	fs.StringVar(&o.ClipCache, "clip-cache", "", "`dir`ectory where clips for a size and rate not embedded are encoded once with ffmpeg (default: the user cache directory's cordon/camsim-clips)")
	fs.StringVar(&o.MediaMTX, "mediamtx", "", "`path` of a MediaMTX binary to measure as system \"mediamtx\" (the bench builds nothing; it writes MediaMTX's configuration)")
	fs.StringVar(&o.Codec, "codec", "h264", "camera codec: h264 or h265 (latency matching needs h264)")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "measured window per system")
	fs.DurationVar(&o.Warmup, "warmup", 5*time.Second, "time before the window (streams start, caches fill)")
	fs.BoolVar(&o.WritePerPacket, "write-per-packet", false, "make the simulated cameras write each RTP packet with its own system call (by default a frame's packets are written together, when its last one is)")
	fs.DurationVar(&o.ReadCoalesce, "read-coalesce", 0, "cordon's camera_side.read_coalesce (how long a camera frame may wait so that one wake-up reads several cameras; 0: cordon's default)")
	fs.BoolVar(&o.Aligned, "aligned", false, "make the cameras send every frame (and keyframe) at the same instant: a burst worst case (by default they are free-running, as real cameras are)")
	fs.IntVar(&o.LatencySamples, "latency-samples", 10, "cameras that also get a direct reader for latency matching")
	runs := fs.Int("runs", 1, "repeat the whole measurement `N` times and end with each system's spread over the runs (min / median / max)")
	bf := newBenchFlags(fs, "comma-separated systems to measure: baseline, mediamtx, passthrough, rebuild, pull (cordon receiving the cameras with no reader: the floor under any output path) and floor (NOT a proxy: a relay reading each camera once per arrival and writing the same bytes to each reader, the floor under any Go proxy of this shape) (default baseline,passthrough,rebuild, with mediamtx after baseline when --mediamtx is set)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *runs < 1 || *runs > 20 {
		return usagef("--runs %d: want 1 to 20", *runs)
	}
	if o.Cameras < 1 || o.Cameras > 2000 {
		return usagef("--cameras %d: want 1 to 2000", o.Cameras)
	}
	if o.ReadersPerCamera < 1 || o.ReadersPerCamera > 20 {
		return usagef("--readers-per-camera %d: want 1 to 20", o.ReadersPerCamera)
	}
	if err := bf.apply(e, &o.Width, &o.Height, &o.Bitrate, &o.Systems, &o.Progress, &o.Logger); err != nil {
		return err
	}
	var all [][]*bench.Result
	for i := range *runs {
		if *runs > 1 {
			fmt.Fprintf(e.Stderr, "bench: run %d of %d\n", i+1, *runs)
		}
		results, err := bench.Run(ctx, o)
		if len(results) > 0 {
			fmt.Fprintln(e.Stdout)
			if *runs > 1 {
				fmt.Fprintf(e.Stdout, "run %d of %d\n", i+1, *runs)
			}
			if werr := bench.WriteTable(e.Stdout, results); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
		all = append(all, results)
	}
	if *runs > 1 {
		fmt.Fprintf(e.Stdout, "\nover %d runs\n", *runs)
		return bench.WriteSummary(e.Stdout, all)
	}
	return nil
}

// runBenchBaseline is the baseline system's process (started by bench proxy).
func runBenchBaseline(ctx context.Context, e *env, args []string) error {
	listen, sources, err := benchSystemFlags(e, args, "bench proxy-baseline", `usage: cordon bench proxy-baseline --listen ADDR --source NAME=URL...

The plain gortsplib pass-through proxy that "cordon bench proxy" measures
cordon against. Not meant to be run by hand.`)
	if err != nil {
		return err
	}
	b := &bench.Baseline{Listen: listen, Sources: sources}
	return b.Run(ctx)
}

// runBenchFloor is the floor system's process (started by bench proxy): not
// a proxy, a relay copying each camera's bytes to its readers. Like cordon
// proxy it lets GOMAXPROCS follow its CPU use, so that it is a floor for
// cordon as cordon runs.
func runBenchFloor(ctx context.Context, e *env, args []string) error {
	listen, sources, err := benchSystemFlags(e, args, "bench proxy-floor", `usage: cordon bench proxy-floor --listen ADDR --source NAME=URL...

NOT a proxy: the relay "cordon bench proxy" runs as system "floor". Per
camera it reads the camera once per arrival and writes the same bytes to each
of the camera's readers (no RTP parsing, GOP cache, rebuild or per-reader
state): what reading each frame once and writing it once per reader costs in
Go. Not meant to be run by hand.`)
	if err != nil {
		return err
	}
	go procs.New().Run(ctx, slog.New(slog.DiscardHandler))
	f := &bench.Floor{Listen: listen, Sources: sources}
	return f.Run(ctx)
}

// benchSystemFlags parses the flags of a system the bench runs in its own
// process: --listen and --source NAME=URL (repeatable).
func benchSystemFlags(e *env, args []string, name, usage string) (string, map[string]string, error) {
	fs := newFlagSet(e, name, usage)
	listen := fs.String("listen", "127.0.0.1:8554", "RTSP listen address")
	var list stringList
	fs.Var(&list, "source", "NAME=URL of a camera to pull (repeatable)")
	if err := parseFlags(e, fs, args); err != nil {
		return "", nil, err
	}
	sources := map[string]string{}
	for _, s := range list {
		name, url, ok := strings.Cut(s, "=")
		if !ok || name == "" || url == "" {
			return "", nil, usagef("--source %q: want NAME=URL", s)
		}
		sources[name] = url
	}
	return *listen, sources, nil
}

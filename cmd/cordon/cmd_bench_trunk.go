package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cordon-vms/cordon/proxy/bench"
)

const benchTrunkUsage = `usage: cordon bench trunk [flags]

Measures the QUIC trunk (docs/trunk.md) against proxy-to-proxy RTSP over TCP,
in the same run, with the same cameras and network:

  simulated cameras ──▶ edge proxy ══(rtsp | stream | datagram)══▶ core proxy ──▶ one TCP reader per camera

System "rtsp" is the core pulling each camera from the edge's RTSP listener
over TCP (a connection per camera); "stream" is the trunk with each camera on
a QUIC stream; "datagram" the trunk with each camera in QUIC DATAGRAM frames.
Either may name the trunk's number of QUIC connections after a colon
("stream:1", "stream:8"; without it, the trunk's default: one per camera).
A variant after a '+' runs that system's proxies as --alt-executable (+alt:
an A/B of two builds in the same run) or with quic-go's GSO or ECN turned off
(+nogso, +noecn: QUIC_GO_DISABLE_GSO or QUIC_GO_DISABLE_ECN set), or without FEC
(+nofec: datagram cameras with fec: off; +fec10: with fec: 10%).
The cameras loop real encoded video at the bit rate asked for (as bench proxy),
at --fps frames a second. A second table gives, per system, the machine's load
average when the window opened and closed, the bench's own CPU per GB (cameras,
readers, and the emulated link), the emulated link's packets, losses and queue
overflows, the time from starting the proxies until the core served every
camera and until every reader played, the trunk cameras and QUIC connections
up at the core, and the core's memory, threads and open files and the edges'
memory at the end.

For each system it reports the edges' and the core's CPU seconds per GB the
cameras sent, each as a ratio to the rtsp system of the same run; the frames
the readers got (of those the cameras sent); stalls (a gap of more than
--stall-gap between two frames at a reader) and how many readers stalled;
RTP packets lost at the readers; and the latency the two proxies and the link
add per frame (p50/p99, from frames matched between a direct reader of the
camera and the reader at the core).

Without --netem everything runs on loopback. With --netem (root; iproute2)
the bench creates two network namespaces, "edge" and "core", joined by a veth
pair with that tc netem setting on both ends ("delay 20ms loss 1%" is a 40 ms
RTT with 1 % loss each way), runs the edge proxy in one and the core proxy in
the other, and deletes them at the end, on Ctrl-C too (and those of a bench
that was killed, at the next start). The cameras and readers stay on this
host, each joined to its proxy by a veth without netem.

Examples:

  cordon bench trunk --cameras-per-edge 20 --duration 10s
  cordon bench trunk --cameras-per-edge 100 --netem "delay 20ms loss 1%"
  cordon bench trunk --edges 50 --cameras-per-edge 20 --size 160x90 --bitrate 50k --fps 5 --systems stream
  cordon bench trunk --systems stream,datagram
  cordon bench trunk --cameras-per-edge 20 --netem "delay 20ms loss 1%" --systems rtsp,stream:1,stream:4,stream:8
  cordon bench trunk --cameras-per-edge 20 --systems rtsp,stream,stream+alt,stream+nogso --alt-executable /tmp/cordon-old
`

func runBenchTrunk(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench trunk", benchTrunkUsage)
	var o bench.TrunkOptions
	fs.IntVar(&o.Edges, "edges", 1, "edge proxies, all into one core (more than one: loopback only)")
	fs.IntVar(&o.CamerasPerEdge, "cameras-per-edge", 100, "simulated cameras behind each edge")
	fs.IntVar(&o.FPS, "fps", 25, "the cameras' frame rate (the clip is encoded for --bitrate at that rate)")
	fs.StringVar(&o.ClipCache, "clip-cache", "", "`dir`ectory where clips for a size and rate not embedded are encoded once with ffmpeg")
	fs.StringVar(&o.Netem, "netem", "", "tc netem `setting` of the link between edge and core, e.g. \"delay 20ms loss 1%\" (runs them in network namespaces; needs root)")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "measured window per system")
	fs.DurationVar(&o.Warmup, "warmup", 5*time.Second, "time before the window")
	fs.DurationVar(&o.StallGap, "stall-gap", 500*time.Millisecond, "a gap between two frames at a reader longer than this is a stall")
	fs.IntVar(&o.LatencySamples, "latency-samples", 10, "cameras that also get a direct reader for latency matching")
	fs.StringVar(&o.AltExecutable, "alt-executable", "", "cordon `binary` that runs the proxies of systems with the variant +alt (an A/B of two builds in one run)")
	bf := newBenchFlags(fs, "comma-separated systems: rtsp, stream, datagram, the last two with :N QUIC connections, any with +alt, +nogso, +noecn, +nofec or +fec10 (default rtsp,stream,datagram)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if o.Edges < 1 || o.Edges > 200 {
		return usagef("--edges %d: want 1 to 200", o.Edges)
	}
	if o.CamerasPerEdge < 1 || o.Edges*o.CamerasPerEdge > 2000 {
		return usagef("--cameras-per-edge %d: want 1 to 2000 cameras in all", o.CamerasPerEdge)
	}
	if o.FPS < 1 || o.FPS > 120 {
		return usagef("--fps %d: want 1 to 120", o.FPS)
	}
	if o.Netem != "" && o.Edges > 1 {
		return usagef("--netem runs one edge; --edges %d is for loopback", o.Edges)
	}
	if err := bf.apply(e, &o.Width, &o.Height, &o.Bitrate, &o.Systems, &o.Progress, &o.Logger); err != nil {
		return err
	}
	results, err := bench.RunTrunk(ctx, o)
	if len(results) > 0 {
		fmt.Fprintln(e.Stdout)
		if werr := bench.WriteTrunkTable(e.Stdout, results); werr != nil {
			return werr
		}
	}
	return err
}

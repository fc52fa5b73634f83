package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/cordon-vms/cordon/internal/logging"
	"github.com/cordon-vms/cordon/proxy/camsim"
)

// cameraSpecs collects repeated --camera flags.
type cameraSpecs []camsim.Camera

func (c *cameraSpecs) String() string { return "" }

func (c *cameraSpecs) Set(s string) error {
	cam, err := camsim.ParseCamera(s)
	if err != nil {
		return err
	}
	*c = append(*c, cam)
	return nil
}

const camsimUsage = `usage: cordon camsim [--camera name[:codec[:WxH[:fps[:bitrate]]]]]... [--count N] [flags]

Serves simulated IP cameras over RTSP (TCP and UDP transports) until interrupted.
Each camera loops a 2 s H.264 or H.265 clip of real video embedded in cordon (no
encoder runs): the size picks the nearest clip (640x360 at 500 kbit/s, 1280x720 at
2 Mbit/s, 1920x1080 at 4 Mbit/s, at 25 fps), the fps retimes it (the rate scales
with it). A bitrate more than 5 % above the clip's own is reached by padding frames
with filler data (logged as a warning); --clip-dir adds clips made by
proxy/camsim/clips/make-clips.sh at other rates. With no --camera and no --count,
one camera "cam1" is served.

Examples:

	cordon camsim
	ffprobe rtsp://127.0.0.1:8554/cam1

	# two cameras with different codecs, sizes, rates
	cordon camsim --camera lobby:h264:1920x1080:25:4M --camera door:h265:640x360:10

	# a camera that hides data in SEI (what "cordon proxy" in mode rebuild removes)
	cordon camsim --camera leaky --leak "serial=ABC123;gps=48.85,2.35"

	# 200 identical cameras cam1..cam200 for a load test
	cordon camsim --count 200 --codec h264 --size 1280x720 --bitrate 2M --listen 127.0.0.1:9554`

func runCamsim(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "camsim", camsimUsage)
	var cams cameraSpecs
	fs.Var(&cams, "camera", "a camera `name[:codec[:WxH[:fps[:bitrate]]]]`, for example lobby:h265:1280x720:25:2M (repeatable)")
	listen := fs.String("listen", "127.0.0.1:8554", "RTSP listen `address` (UDP RTP/RTCP use a free port pair on the same host)")
	count := fs.Int("count", 0, "also serve `N` cameras named cam1..camN with the --codec/--size/--fps/--bitrate settings")
	codec := fs.String("codec", "h264", "codec of the --count cameras: h264 or h265")
	size := fs.String("size", "640x360", "`WxH` of the --count cameras")
	fps := fs.Int("fps", 25, "frames per second of the --count cameras")
	bitrate := fs.String("bitrate", "0", "bit `rate` of the --count cameras, for example 2M or 500k (0: the clip's own)")
	clipDir := fs.String("clip-dir", "", "`dir`ectory of more clips, named <codec>-<W>x<H>-<rate>.<codec> as make-clips.sh CODEC WxH RATE OUT makes them; a camera picks the one nearest its bitrate")
	perPacket := fs.Bool("write-per-packet", false, "write each RTP packet of a TCP reader with its own system call (by default a frame's packets are written together, when its last one is: the same bytes in fewer TCP segments)")
	aligned := fs.Bool("aligned", false, "start every camera at the same instant at the start of its clip, so all send their frames and keyframes together (a burst worst case; by default cameras are free-running, as real ones are)")
	leak := fs.String("leak", "", "hide `text` in an SEI user-data message in every keyframe of every camera, as a leaking camera would (see docs/rebuild.md)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("camsim takes no arguments (use --camera)")
	}
	if *count < 0 || *count > 10000 {
		return usagef("--count %d: want 0 to 10000", *count)
	}
	if *count > 0 || len(cams) == 0 {
		more, err := countCameras(max(*count, 1), *codec, *size, *fps, *bitrate)
		if err != nil {
			return err
		}
		cams = append(cams, more...)
	}
	for i := range cams {
		cams[i].Leak = *leak
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: *logLevel})
	if err != nil {
		return usagef("--log-level: %v", err)
	}
	srv := &camsim.Server{Addr: *listen, Cameras: cams, Aligned: *aligned, WritePerPacket: *perPacket, ClipDir: *clipDir, Logger: log.With("component", "camsim")}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	for i, c := range srv.Cameras {
		if i == 20 && len(srv.Cameras) > 21 {
			fmt.Fprintf(e.Stdout, "... and %d more\n", len(srv.Cameras)-20)
			break
		}
		fmt.Fprintln(e.Stdout, srv.URL(c.Name))
	}
	<-ctx.Done()
	return nil
}

var _ flag.Value = (*cameraSpecs)(nil)

// countCameras returns n identical cameras cam1..camN (--count with
// --codec, --size, --fps and --bitrate).
func countCameras(n int, codec, size string, fps int, bitrate string) ([]camsim.Camera, error) {
	w, h, err := camsim.ParseSize(size)
	if err != nil {
		return nil, usagef("--size: %v", err)
	}
	br, err := camsim.ParseBitrate(bitrate)
	if err != nil {
		return nil, usagef("--bitrate: %v", err)
	}
	c := strings.ToLower(codec)
	if c == "hevc" {
		c = "h265"
	}
	if c != "h264" && c != "h265" {
		return nil, usagef("--codec %q: want h264 or h265", codec)
	}
	cams := make([]camsim.Camera, 0, n)
	for i := 1; i <= n; i++ {
		cams = append(cams, camsim.Camera{Name: fmt.Sprintf("cam%d", i), Codec: c, Width: w, Height: h, FPS: fps, Bitrate: br})
	}
	return cams, nil
}

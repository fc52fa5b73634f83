package proxy

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/internal/testutil"
)

var (
	interopSeconds    = flag.Float64("interop-seconds", 2.5, "how long each GStreamer reader of TestInteropMatrix reads (seconds after its first packet)")
	interopOnly       = flag.String("interop-cameras", "", "comma-separated cameras of TestInteropMatrix to run (aac, pcmu, hevc, mjpeg, bframes); all by default")
	interopDTSSeconds = flag.Float64("interop-dts-seconds", 12, "how long each ffmpeg reader of TestInteropMatrix records: past the readers' second RTCP sender report (5 s for TCP, 10 s for UDP), where a wrong timeline shows")
)

// interopCamera is one camera of the interop matrix: a gstcam.py codec and
// what a reader must find in it.
type interopCamera struct {
	name, codec string
	direct      string // the camera's own URL (set when it starts)
	// video and audio are ffprobe's codec names ("" audio: none);
	// gstVideo and gstAudio rtspsrc's RTP encoding names.
	video, audio       string
	gstVideo, gstAudio string
}

var interopCameras = []interopCamera{
	{name: "aac", codec: "h264+aac", video: "h264", audio: "aac", gstVideo: "H264", gstAudio: "MPEG4-GENERIC"},
	{name: "pcmu", codec: "h264+pcmu", video: "h264", audio: "pcm_mulaw", gstVideo: "H264", gstAudio: "PCMU"},
	{name: "hevc", codec: "h265", video: "hevc", gstVideo: "H265"},
	{name: "mjpeg", codec: "mjpeg", video: "mjpeg", gstVideo: "JPEG"},
	{name: "bframes", codec: "h264-bframes", video: "h264", gstVideo: "H264"},
}

// interopCell is one reader of one camera of the matrix.
type interopCell struct {
	cam           interopCamera
	reader, proto string
	res           interopResult
}

// name is the cell's camera in the proxy.
func (c *interopCell) name() string { return c.cam.name + "-" + c.reader + "-" + c.proto }

// interopResult is what one reader found in one camera through the proxy.
type interopResult struct {
	err    error
	frames map[string]int // decoded frames by codec name
	lost   int            // RTP packets the reader never got
	dts    int            // ffmpeg's "Non-monotonous DTS" warnings
	// dtsJumps are the warnings where the timeline went back 5 ms or more.
	dtsJumps int
	// decodeErrors are the lines ffprobe's decoders logged decoding the
	// recording (a lost packet shows as a broken macroblock).
	decodeErrors int
	log          string // the reader's own output
}

// TestInteropMatrix reads GStreamer cameras {H.264+AAC, H.264+G.711 µ-law,
// H.265, MJPEG, H.264 with B-frames} through the proxy (rebuild mode, GOP
// cache on) with {ffmpeg, GStreamer rtspsrc} × {TCP, UDP}: every reader
// decodes frames of the right codecs, audio where the camera has it, loses
// no packet from its first one on (the cached GOP included), and ffmpeg
// recording to MOV (for -interop-dts-seconds) logs its "Non-monotonous DTS"
// warnings. GStreamer cells run four at a time for -interop-seconds.
//
// It does not run in parallel with other tests: five encoding cameras and
// twenty readers load a small machine enough to make timing-sensitive tests
// fail, and to slow the cameras below real time.
func TestInteropMatrix(t *testing.T) {
	testutil.NeedTool(t, "ffmpeg", "ffprobe", "/usr/bin/python3", "gst-launch-1.0")
	interopCameras := slices.DeleteFunc(slices.Clone(interopCameras), func(c interopCamera) bool {
		return *interopOnly != "" && !slices.Contains(strings.Split(*interopOnly, ","), c.name)
	})
	cells, p := startInteropCells(t, interopCameras)
	direct := startDirectReaders(t, p, interopCameras, cells)
	runInteropReaders(p, cells, t.TempDir())
	for i, c := range interopCameras {
		if r := <-direct[i]; r.err != nil {
			t.Errorf("%s read directly: %v\n%s", c.name, r.err, r.log)
		} else {
			t.Logf("%s read directly: frames %v, DTS warnings %d (%d steps back)", c.name, r.frames, r.dts, r.dtsJumps)
		}
	}
	for _, c := range cells {
		t.Run(c.cam.name+"/"+c.reader+"/"+c.proto, c.check)
	}
}

// startInteropCells starts the GStreamer cameras (filling in their direct
// URLs) and one proxy with a camera per cell, and waits for every cell's
// camera to stream (and, but for MJPEG, to have a GOP cached).
//
// Each cell reads its own proxy camera (all of one camera's pull the
// same GStreamer camera): gortsplib v5.6.4 has a data race between one
// session's SETUP and a UDP session's SETUP on the same ServerStream
// (server_stream.go readerAdd reads the other's transport unlocked),
// which concurrent readers of one camera would hit under -race.
func startInteropCells(t *testing.T, interopCameras []interopCamera) ([]*interopCell, *Proxy) {
	var cells []*interopCell
	for i, c := range interopCameras {
		gst := startGstCamera(t, 0, c.name, "", "", c.codec)
		interopCameras[i].direct = gst.url("", "", c.name)
		for _, rd := range []string{"ffmpeg", "gstreamer"} {
			for _, proto := range []string{"tcp", "udp"} {
				cells = append(cells, &interopCell{cam: interopCameras[i], reader: rd, proto: proto})
			}
		}
	}
	// The proxy joins each GStreamer camera one session at a time (in four
	// rounds, one cell of every camera each, added by reload): a shared
	// gst-rtsp-server media that several clients join at the same instant
	// can abort ("gst_rtsp_media_get_rates: assertion failed"), which ended
	// the test's camera, not the proxy.
	perCam := len(cells) / max(len(interopCameras), 1)
	var cfg Config
	var p *Proxy
	log, _ := newLog(t)
	for round := range perCam {
		var added []*interopCell
		for i := round; i < len(cells); i += perCam {
			added = append(added, cells[i])
			cfg.Cameras = append(cfg.Cameras, Camera{Name: cells[i].name(), URL: MustParseSecretURL(cells[i].cam.direct)})
		}
		if p == nil {
			cfg = withUDP(t, testConfig(cfg.Cameras...))
			p = startProxy(t, cfg, log)
		} else if err := p.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		waitCellsUp(t, p, added)
	}
	return cells, p
}

// waitCellsUp waits for the cells' proxy cameras to stream and (but for
// MJPEG, whose every frame is a keyframe) to have a GOP cached.
func waitCellsUp(t *testing.T, p *Proxy, cells []*interopCell) {
	for _, c := range cells {
		waitFor(t, c.name()+" streaming", 15*time.Second, func() bool {
			for _, s := range p.Status() {
				if s.Name == c.name() {
					return s.State == stateUp && s.PacketsIn > 0
				}
			}
			return false
		})
		if c.cam.codec != "mjpeg" {
			waitFor(t, c.name()+" GOP cached", 5*time.Second, func() bool { return gopLen(p, c.name()) > 0 })
		}
	}
}

// startDirectReaders starts ffmpeg recording each camera directly (what
// ffmpeg itself warns about a camera, H.265 and B-frames coming without DTS,
// is not the proxy's doing) and waits until every cell's GOP cache holds a
// GOP that started after they joined, half a second old.
//
// gst-rtsp-server's shared media steps its RTP times back for the clients
// it already serves when one more joins (by 40 ms to 0.8 s, seen by ffmpeg
// reading a camera directly as by the proxy's cameras: "Non-monotonous DTS",
// current one to 25 frames behind previous). Each of the proxy's cameras
// and the direct reader join; a reader of the proxy that started with a
// GOP from before the last of them would get that step from the camera.
func startDirectReaders(t *testing.T, p *Proxy, interopCameras []interopCamera, cells []*interopCell) []chan interopResult {
	dir := t.TempDir()
	direct := make([]chan interopResult, len(interopCameras))
	for i, c := range interopCameras {
		direct[i] = make(chan interopResult, 1)
		go func() {
			direct[i] <- readFFmpeg(c.direct, "tcp", filepath.Join(dir, c.name+"-direct.mov"), *interopDTSSeconds)
		}()
	}
	for _, c := range interopCameras {
		// ffmpeg creates its output once it has probed the camera's
		// packets: it has joined.
		waitFor(t, c.name+" read directly", 15*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(dir, c.name+"-direct.mov"))
			return err == nil
		})
	}
	for _, c := range cells {
		first := gopFirst(p, c.name())
		waitFor(t, c.name()+" new GOP", 5*time.Second, func() bool {
			f := gopFirst(p, c.name())
			return f != nil && f != first
		})
	}
	// Half a GOP more (the cameras' keyframes are a second apart): the
	// readers start with a cached GOP of some age, whose replay the
	// timeline must keep monotonic.
	time.Sleep(500 * time.Millisecond)
	return direct
}

// gopFirst is the first packet of a camera's cached GOP (nil: none).
func gopFirst(p *Proxy, name string) *rtp.Packet {
	s := p.camera(name).stream
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.gop.packets(); len(g) > 0 {
		return g[0].pkt
	}
	return nil
}

// runInteropReaders runs every cell's reader, filling in its result:
// ffmpeg copies (cheap) all at once, recording to dir; GStreamer decodes,
// four at a time.
func runInteropReaders(p *Proxy, cells []*interopCell, dir string) {
	gst := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, c := range cells {
		wg.Go(func() {
			url := readerURL(p, c.name())
			if c.reader == "ffmpeg" {
				c.res = readFFmpeg(url, c.proto, filepath.Join(dir, fmt.Sprintf("%d.mov", i)), *interopDTSSeconds)
				return
			}
			gst <- struct{}{}
			defer func() { <-gst }()
			c.res = readGStreamer(url, c.proto, *interopSeconds, map[string]string{c.cam.gstVideo: c.cam.video, c.cam.gstAudio: c.cam.audio})
		})
	}
	wg.Wait()
}

// check asserts one cell's result: enough frames of the camera's codecs,
// audio where it has some, no lost packet, no decoder error.
func (c *interopCell) check(t *testing.T) {
	seconds := *interopSeconds
	if c.reader == "ffmpeg" {
		seconds = *interopDTSSeconds
	}
	minFrames := int(seconds * 25 / 2) // 25 fps; half of them at least
	r := c.res
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.log)
	}
	t.Logf("frames %v, lost %d, DTS warnings %d (%d steps back)", r.frames, r.lost, r.dts, r.dtsJumps)
	if n := r.frames[c.cam.video]; n < minFrames {
		t.Errorf("%d %s frames decoded, want %d or more", n, c.cam.video, minFrames)
	}
	if c.cam.audio != "" && r.frames[c.cam.audio] == 0 {
		t.Errorf("no %s audio decoded", c.cam.audio)
	}
	for codec := range r.frames {
		if codec != c.cam.video && codec != c.cam.audio {
			t.Errorf("unexpected stream %s", codec)
		}
	}
	if r.lost != 0 {
		t.Errorf("%d RTP packets lost", r.lost)
	}
	if r.decodeErrors != 0 {
		t.Errorf("%d decoder errors in the recording", r.decodeErrors)
	}
	if r.dtsJumps != 0 {
		t.Errorf("ffmpeg's timeline stepped back %d times", r.dtsJumps)
	}
	if t.Failed() {
		t.Logf("reader output:\n%s", r.log)
	}
}

var (
	ffmpegMissed = regexp.MustCompile(`RTP: missed (\d+) packets`)
	ffmpegDTS    = regexp.MustCompile(`Non-monotonous DTS in output stream \d+:(\d+); previous: (-?\d+), current: (-?\d+)`)
)

// readFFmpeg records url for seconds (-c copy to MOV, as a recorder does)
// and counts what ffprobe decodes in the file, and ffmpeg's warnings.
func readFFmpeg(url, proto, out string, seconds float64) interopResult {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(3*seconds*float64(time.Second))+30*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-v", "warning", "-rtsp_transport", proto, "-i", url,
		"-t", fmt.Sprint(seconds), "-map", "0", "-c", "copy", "-f", "mov", "-y", out).CombinedOutput()
	r := interopResult{log: string(b), frames: map[string]int{}}
	if err != nil {
		r.err = fmt.Errorf("ffmpeg: %w", err)
		return r
	}
	for _, m := range ffmpegMissed.FindAllStringSubmatch(r.log, -1) {
		n, _ := strconv.Atoi(m[1])
		r.lost += n
	}
	probeCmd := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=index,codec_name,time_base,nb_read_frames",
		"-of", "json", out)
	var stderr strings.Builder
	probeCmd.Stderr = &stderr
	b, err = probeCmd.Output()
	r.log += "ffprobe:\n" + string(b) + stderr.String()
	if err != nil {
		r.err = fmt.Errorf("ffprobe: %w", err)
		return r
	}
	r.decodeErrors = strings.Count(stderr.String(), "\n")
	var probe struct {
		Streams []struct {
			Index        int
			CodecName    string `json:"codec_name"`
			TimeBase     string `json:"time_base"`
			NbReadFrames string `json:"nb_read_frames"`
		}
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		r.err = fmt.Errorf("ffprobe: %w", err)
		return r
	}
	timeBase := map[int]float64{}
	for _, st := range probe.Streams {
		n, _ := strconv.Atoi(st.NbReadFrames)
		r.frames[st.CodecName] += n
		var num, den float64
		if _, err := fmt.Sscanf(st.TimeBase, "%g/%g", &num, &den); err == nil && den > 0 {
			timeBase[st.Index] = num / den
		}
	}
	for _, m := range ffmpegDTS.FindAllStringSubmatch(r.log, -1) {
		r.dts++
		idx, _ := strconv.Atoi(m[1])
		prev, _ := strconv.ParseInt(m[2], 10, 64)
		cur, _ := strconv.ParseInt(m[3], 10, 64)
		// A repeated DTS (ffmpeg nudges it by one tick) comes from the
		// camera's stream itself (seen reading it directly, at every
		// keyframe); so do negative ones at the start of a file with
		// B-frames. A step back of 5 ms or more later on is a broken
		// timeline.
		if cur >= 0 && float64(prev-cur)*timeBase[idx] >= 0.005 {
			r.dtsJumps++
		}
	}
	return r
}

// readGStreamer reads url with testdata/gstread.py (rtspsrc and decodebin),
// naming its streams by codec (ffprobe's names, from names: RTP encoding →
// codec).
func readGStreamer(url, proto string, seconds float64, names map[string]string) interopResult {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(3*seconds*float64(time.Second))+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/gstread.py", url, proto, fmt.Sprint(seconds))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	r := interopResult{log: string(b) + stderr.String(), frames: map[string]int{}}
	if err != nil {
		r.err = fmt.Errorf("gstread.py: %w", err)
		return r
	}
	var out struct {
		Streams []struct {
			Encoding                 string
			RTP, Lost, Late, Decoded int
		}
		Errors []string
	}
	if err := json.Unmarshal(b, &out); err != nil {
		r.err = fmt.Errorf("gstread.py output: %w", err)
		return r
	}
	if len(out.Errors) > 0 {
		r.err = fmt.Errorf("rtspsrc: %s", strings.Join(out.Errors, "; "))
		return r
	}
	for _, s := range out.Streams {
		codec := names[s.Encoding]
		if codec == "" {
			codec = "rtp:" + s.Encoding
		}
		r.frames[codec] += s.Decoded
		r.lost += s.Lost + s.Late
	}
	return r
}

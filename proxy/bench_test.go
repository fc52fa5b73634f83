package proxy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/camsim"
	"github.com/cordon-vms/cordon/proxy/internal/playonly"
	"github.com/cordon-vms/cordon/proxy/rebuild"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// plainPassThrough is the baseline: gortsplib's examples/proxy pattern (one
// client pull, ServerStream.WritePacketRTP to every reader, RTP unchanged),
// serving its one stream at any path.
type plainPassThrough struct {
	srv    *gortsplib.Server
	mu     sync.Mutex
	stream *gortsplib.ServerStream
	cl     *gortsplib.Client
}

func (pp *plainPassThrough) lookup(string) *gortsplib.ServerStream {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.stream
}

func startPlain(b *testing.B, camURL string) (addr string, stop func()) {
	pp := &plainPassThrough{}
	pp.srv = &gortsplib.Server{Handler: &playonly.Handler{Lookup: pp.lookup}, RTSPAddress: "127.0.0.1:0", WriteQueueSize: 4096}
	if err := pp.srv.Start(); err != nil {
		b.Fatal(err)
	}
	u, _ := base.ParseURL(camURL)
	proto := gortsplib.ProtocolTCP
	pp.cl = &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto}
	if err := pp.cl.Start(); err != nil {
		b.Fatal(err)
	}
	desc, _, err := pp.cl.Describe(u)
	if err != nil {
		b.Fatal(err)
	}
	if err := pp.cl.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		b.Fatal(err)
	}
	pp.stream = &gortsplib.ServerStream{Server: pp.srv, Desc: desc}
	if err := pp.stream.Initialize(); err != nil {
		b.Fatal(err)
	}
	pp.cl.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) { pp.stream.WritePacketRTP(m, pkt) })
	if _, err := pp.cl.Play(nil); err != nil {
		b.Fatal(err)
	}
	return pp.srv.NetListener().Addr().String(), func() { pp.cl.Close(); pp.stream.Close(); pp.srv.Close() }
}

// benchMode is one way of serving readers in BenchmarkFanOutTCP.
type benchMode int

const (
	modePlain     benchMode = iota // gortsplib pass-through (examples/proxy)
	modePerPacket                  // cordon, per_packet_writes
	modeBatched                    // cordon, frame-batched TCP output
)

func (m benchMode) String() string { return [...]string{"plain", "per-packet", "batched"}[m] }

// TestBenchHelperProcess is not a test: BenchmarkFanOutTCP runs the test
// binary again with CORDON_BENCH_HELPER set, to serve the camera (camsim) or
// to be the readers in another process, so that the benchmark process's CPU
// time is the proxy's alone.
func TestBenchHelperProcess(t *testing.T) {
	switch os.Getenv("CORDON_BENCH_HELPER") {
	case "camsim":
		rate, _ := strconv.Atoi(os.Getenv("CORDON_BENCH_RATE"))
		n, _ := strconv.Atoi(os.Getenv("CORDON_BENCH_CAMERAS"))
		sim := &camsim.Server{Addr: "127.0.0.1:0"}
		for i := range max(n, 1) {
			sim.Cameras = append(sim.Cameras, camsim.Camera{Name: benchCamera(i), FPS: 25, Width: 1280, Height: 720, Bitrate: rate})
		}
		if err := sim.Start(); err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Println(sim.URL("c"))
		io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
		sim.Close()
		os.Exit(0)
	case "readers":
		// CORDON_BENCH_READERS readers of each of the space-separated
		// CORDON_BENCH_URL, over TCP or CORDON_BENCH_PROTO=udp.
		n, _ := strconv.Atoi(os.Getenv("CORDON_BENCH_READERS"))
		proto := gortsplib.ProtocolTCP
		if os.Getenv("CORDON_BENCH_PROTO") == "udp" {
			proto = gortsplib.ProtocolUDP
		}
		urls := strings.Fields(os.Getenv("CORDON_BENCH_URL"))
		var rs []*rtspReader
		for i := range n * len(urls) {
			var r *rtspReader
			var err error
			deadline := time.Now().Add(10 * time.Second)
			for {
				r, err = dialReaderNoCleanup(urls[i%len(urls)], proto)
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				fmt.Println("ERROR", err)
				os.Exit(1)
			}
			rs = append(rs, r)
		}
		fmt.Println("READY")
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() { // each line asks for the bytes received so far
			var total int64
			for _, r := range rs {
				total += r.bytes.Load()
			}
			fmt.Println(total)
		}
		os.Exit(0)
	}
}

// benchCamera names the camsim helper's camera i: c, c1, c2...
func benchCamera(i int) string {
	if i == 0 {
		return "c"
	}
	return fmt.Sprintf("c%d", i)
}

// helper is a CORDON_BENCH_HELPER process.
type helper struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startHelper(b *testing.B, env ...string) *helper {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchHelperProcess$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &helper{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.Cleanup(h.stop)
	return h
}

func (h *helper) line(b *testing.B) string {
	if !h.out.Scan() {
		b.Fatal("bench helper exited")
	}
	l := h.out.Text()
	if strings.HasPrefix(l, "ERROR") {
		b.Fatal(l)
	}
	return l
}

func (h *helper) stop() {
	h.in.Close()
	h.cmd.Wait()
}

// fanOutCPU streams one camsim camera (rate bit/s; cordon in passthrough
// mode) to readers TCP readers for d and returns this process's CPU time
// (the proxy's alone: camera and readers are other processes) per GB the
// readers received.
func fanOutCPU(b *testing.B, mode benchMode, readers, rate int, d time.Duration) (cpuPerGB float64, gb float64) {
	cam := startHelper(b, "CORDON_BENCH_HELPER=camsim", fmt.Sprintf("CORDON_BENCH_RATE=%d", rate))
	camURL := cam.line(b)
	defer cam.stop()
	var url string
	if mode == modePlain {
		addr, stop := startPlain(b, camURL)
		defer stop()
		url = "rtsp://" + addr + "/c"
	} else {
		cfg := testConfig(Camera{Name: "c", URL: MustParseSecretURL(camURL), Mode: Mode(rebuild.ModePassthrough)})
		cfg.PerPacketWrites = mode == modePerPacket
		p, err := New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			var dropped uint64
			for _, r := range p.Status()[0].Readers {
				dropped += r.DroppedPackets
			}
			b.Logf("%s: %d packets dropped for slow readers", mode, dropped)
			p.Close()
		}()
		url = readerURL(p, "c")
	}
	rd := startHelper(b, "CORDON_BENCH_HELPER=readers", fmt.Sprintf("CORDON_BENCH_READERS=%d", readers), "CORDON_BENCH_URL="+url)
	defer rd.stop()
	rd.line(b) // READY
	received := func() uint64 {
		fmt.Fprintln(rd.in)
		n, _ := strconv.ParseUint(rd.line(b), 10, 64)
		return n
	}
	time.Sleep(500 * time.Millisecond)
	c0, s0 := testutil.CPUTime(b), received()
	time.Sleep(d)
	c1, s1 := testutil.CPUTime(b), received()
	gb = float64(s1-s0) / 1e9
	return (c1 - c0).Seconds() / gb, gb
}

// BenchmarkFanOutTCP compares, in the same run, the CPU per GB delivered by a
// plain gortsplib pass-through (the baseline, examples/proxy), cordon with
// per-packet writes and cordon with frame-batched writes: 1 camera at
// 8 Mbit/s, 20 TCP readers, camera and readers in other processes.
//
//	go test ./proxy -run '^$' -bench FanOutTCP -benchtime 1x
func BenchmarkFanOutTCP(b *testing.B) {
	const readers, rate, d = 20, 8_000_000, 4 * time.Second
	for range b.N {
		plain, gb0 := fanOutCPU(b, modePlain, readers, rate, d)
		perPacket, gb1 := fanOutCPU(b, modePerPacket, readers, rate, d)
		batched, gb2 := fanOutCPU(b, modeBatched, readers, rate, d)
		b.ReportMetric(plain, "cpu-s/GB-plain")
		b.ReportMetric(perPacket, "cpu-s/GB-per-packet")
		b.ReportMetric(batched, "cpu-s/GB-batched")
		b.ReportMetric(batched/plain, "batched/plain")
		b.Logf("plain gortsplib: %.3f cpu-s/GB (%.3f GB); cordon per-packet: %.3f (%.3f GB); cordon batched: %.3f (%.3f GB)",
			plain, gb0, perPacket, gb1, batched, gb2)
		b.Logf("ratios vs plain: per-packet %.2f, batched %.2f", perPacket/plain, batched/plain)
	}
}

// BenchmarkCameraIngest compares, in the same run, the CPU per GB received
// of cordon pulling cameras with the camera tap (camera_tap.go) and with
// every packet left to gortsplib's client: 40 camsim cameras at 2 Mbit/s
// (real video) in another process, cordon in passthrough mode with no
// reader, alternating the two several times so that a change in the
// machine's load falls on both.
//
//	go test ./proxy -run '^$' -bench CameraIngest -benchtime 1x
func BenchmarkCameraIngest(b *testing.B) {
	const cams, rate, rounds, d = 40, 2_000_000, 3, 4 * time.Second
	sim := startHelper(b, "CORDON_BENCH_HELPER=camsim", fmt.Sprintf("CORDON_BENCH_RATE=%d", rate), fmt.Sprintf("CORDON_BENCH_CAMERAS=%d", cams))
	url0 := sim.line(b)
	ingest := func(noTap bool) (cpu time.Duration, bytes uint64) {
		cpu, bytes, _ = ingestCameras(b, url0, cams, d, nil, func(p *Proxy) { p.testNoCameraTap = noTap })
		return cpu, bytes
	}
	for range b.N {
		var cpu [2]time.Duration
		var gb [2]float64
		for range rounds {
			for i, noTap := range []bool{false, true} {
				c, n := ingest(noTap)
				cpu[i] += c
				gb[i] += float64(n) / 1e9
			}
		}
		tap, gortsplib := cpu[0].Seconds()/gb[0], cpu[1].Seconds()/gb[1]
		b.ReportMetric(tap, "cpu-s/GB-tap")
		b.ReportMetric(gortsplib, "cpu-s/GB-gortsplib")
		b.ReportMetric(tap/gortsplib, "tap/gortsplib")
		b.Logf("%d cameras, %d rounds of %s: tap %.3f cpu-s/GB (%.3f GB), gortsplib client %.3f (%.3f GB): ratio %.2f",
			cams, rounds, d, tap, gb[0], gortsplib, gb[1], tap/gortsplib)
	}
}

// BenchmarkCameraReadCoalesce compares, in the same run, the CPU per GB
// received of cordon pulling 100 camsim cameras (2 Mbit/s of real video,
// in another process; passthrough, no reader, one P as cordon proxy runs
// at this load) with camera_side.read_coalesce 0 (each frame read as it
// arrives) and 1, 2 and 5 ms, alternated over several rounds so that a
// change in the machine's load falls on all. It also reports the process's
// context switches per second for each.
//
//	go test ./proxy -run '^$' -bench CameraReadCoalesce -benchtime 1x
func BenchmarkCameraReadCoalesce(b *testing.B) {
	const cams, rate, rounds, d = 100, 2_000_000, 3, 4 * time.Second
	intervals := []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	sim := startHelper(b, "CORDON_BENCH_HELPER=camsim", fmt.Sprintf("CORDON_BENCH_RATE=%d", rate), fmt.Sprintf("CORDON_BENCH_CAMERAS=%d", cams))
	url0 := sim.line(b)
	ingest := func(coalesce time.Duration) (cpu time.Duration, bytes, switches uint64) {
		return ingestCameras(b, url0, cams, d, func(c *Config) { c.CameraSide.ReadCoalesce = coalesce }, nil)
	}
	for range b.N {
		cpu := make([]time.Duration, len(intervals))
		gb := make([]float64, len(intervals))
		sw := make([]uint64, len(intervals))
		for range rounds {
			for i, iv := range intervals {
				c, n, s := ingest(iv)
				cpu[i] += c
				gb[i] += float64(n) / 1e9
				sw[i] += s
			}
		}
		base := cpu[0].Seconds() / gb[0]
		for i, iv := range intervals {
			perGB := cpu[i].Seconds() / gb[i]
			b.ReportMetric(perGB, fmt.Sprintf("cpu-s/GB-%s", iv))
			b.Logf("read_coalesce %s: %.3f cpu-s/GB (%.3f GB), %.2fx of 0, %.0f context switches/s",
				iv, perGB, gb[i], perGB/base, float64(sw[i])/(rounds*d.Seconds()))
		}
	}
}

// ingestCameras starts a proxy pulling cams camsim cameras (passthrough,
// TCP, no reader) from the helper at url0, with conf and prep applied to
// its configuration and proxy when not nil, lets it settle for 2 s, then
// returns its CPU time, the bytes it received and the process's context
// switches over d.
func ingestCameras(b *testing.B, url0 string, cams int, d time.Duration, conf func(*Config), prep func(*Proxy)) (cpu time.Duration, bytes, switches uint64) {
	var cc []Camera
	for i := range cams {
		u := strings.TrimSuffix(url0, "/c") + "/" + benchCamera(i)
		cc = append(cc, Camera{Name: fmt.Sprintf("c%d", i), URL: MustParseSecretURL(u), Transport: TransportTCP, Mode: Mode(rebuild.ModePassthrough)})
	}
	cfg := testConfig(cc...)
	if conf != nil {
		conf(&cfg)
	}
	p, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if prep != nil {
		prep(p)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	in := func() (n uint64) {
		for _, s := range p.Status() {
			n += s.BytesIn
		}
		return n
	}
	time.Sleep(2 * time.Second)
	c0, n0, s0 := testutil.CPUTime(b), in(), contextSwitches()
	time.Sleep(d)
	c1, n1, s1 := testutil.CPUTime(b), in(), contextSwitches()
	return c1 - c0, n1 - n0, s1 - s0
}

// contextSwitches returns the voluntary and involuntary context switches
// of the process's threads so far (those of threads that ended are not
// counted), or 0 where unknown.
func contextSwitches() uint64 {
	tasks, _ := os.ReadDir("/proc/self/task")
	var n uint64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// fanOutUDP streams cams camsim cameras (rate bit/s each; cordon in
// passthrough mode, started with its UDP transport) to readers UDP readers
// of each for d, with per-packet writes (gortsplib's, one sendto each) or
// batched ones (sendmmsg), and returns this process's CPU time, the bytes
// the readers received, the packets cordon sent and dropped, and the
// sendmmsg calls it made.
func fanOutUDP(b *testing.B, url0 string, perPacket bool, cams, readers int, d time.Duration) (cpu time.Duration, received, sent, dropped, calls uint64) {
	var cc []Camera
	for i := range cams {
		u := strings.TrimSuffix(url0, "/c") + "/" + benchCamera(i)
		cc = append(cc, Camera{Name: benchCamera(i), URL: MustParseSecretURL(u), Transport: TransportTCP, Mode: Mode(rebuild.ModePassthrough)})
	}
	cfg := withUDP(b, testConfig(cc...))
	cfg.PerPacketWrites = perPacket
	p, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var urls []string
	for i := range cams {
		urls = append(urls, readerURL(p, benchCamera(i)))
	}
	rd := startHelper(b, "CORDON_BENCH_HELPER=readers", "CORDON_BENCH_PROTO=udp", fmt.Sprintf("CORDON_BENCH_READERS=%d", readers),
		"CORDON_BENCH_URL="+strings.Join(urls, " "))
	defer rd.stop()
	rd.line(b) // READY
	recv := func() uint64 {
		fmt.Fprintln(rd.in)
		n, _ := strconv.ParseUint(rd.line(b), 10, 64)
		return n
	}
	out := func() (pk, dr uint64) {
		for _, s := range p.Status() {
			for _, r := range s.Readers {
				pk += r.PacketsOut
				dr += r.DroppedPackets
			}
		}
		return pk, dr
	}
	time.Sleep(time.Second) // past the cached GOPs' paced bursts
	c0, r0, k0 := testutil.CPUTime(b), recv(), udpBatchCalls.Load()
	p0, d0 := out()
	time.Sleep(d)
	c1, r1, k1 := testutil.CPUTime(b), recv(), udpBatchCalls.Load()
	p1, d1 := out()
	return c1 - c0, r1 - r0, p1 - p0, d1 - d0, k1 - k0
}

// BenchmarkFanOutUDP compares, in the same run, cordon's UDP readers with
// per-packet writes (gortsplib's writer, one sendto per packet) and with
// batched writes (sendmmsg on the server's RTP socket, reader_udp_batch.go):
// 4 camsim cameras at 4 Mbit/s, 5 UDP readers each, camera and readers in
// other processes, the two alternated 3 times (medians of CPU per GB).
//
//	go test ./proxy -run '^$' -bench FanOutUDP -benchtime 1x
func BenchmarkFanOutUDP(b *testing.B) {
	const cams, readers, rate, rounds, d = 4, 5, 4_000_000, 3, 4 * time.Second
	sim := startHelper(b, "CORDON_BENCH_HELPER=camsim", fmt.Sprintf("CORDON_BENCH_RATE=%d", rate), fmt.Sprintf("CORDON_BENCH_CAMERAS=%d", cams))
	url0 := sim.line(b)
	for range b.N {
		var perGB [2][]float64
		for round := range rounds {
			for i, perPacket := range []bool{true, false} {
				cpu, recv, sent, dropped, calls := fanOutUDP(b, url0, perPacket, cams, readers, d)
				gb := float64(recv) / 1e9
				perGB[i] = append(perGB[i], cpu.Seconds()/gb)
				syscalls := sent // gortsplib: one sendto per packet
				if !perPacket {
					syscalls = calls
				}
				b.Logf("round %d %s: %.3f cpu-s/GB, %.3f GB received, %d packets sent, %d dropped, %d RTP send syscalls (%.1f packets each)",
					round, map[bool]string{true: "per-packet", false: "batched"}[perPacket], cpu.Seconds()/gb, gb, sent, dropped,
					syscalls, float64(sent)/float64(max(syscalls, 1)))
			}
		}
		pp, bt := median(perGB[0]), median(perGB[1])
		b.ReportMetric(pp, "cpu-s/GB-per-packet")
		b.ReportMetric(bt, "cpu-s/GB-batched")
		b.ReportMetric(bt/pp, "batched/per-packet")
		b.Logf("%d cameras x %d UDP readers: median per-packet %.3f cpu-s/GB, batched %.3f: ratio %.2f", cams, readers, pp, bt, bt/pp)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

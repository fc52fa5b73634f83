package proxy

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/cordon-vms/cordon/proxy/camsim"
	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// seqReader is an in-process UDP reader that counts, per media, the RTP
// sequence numbers it never got: what a recorder would lose.
type seqReader struct {
	cl *gortsplib.Client

	mu       sync.Mutex
	next     map[*description.Media]uint16 // the sequence number expected next
	received int
	gaps     int // packets missing between two received ones
	late     int // packets older than the one before (reordered or duplicated)
}

// dialSeqReader plays rawURL over UDP with a receive buffer of rcvBuf bytes
// (0: the system's default).
func dialSeqReader(t *testing.T, rawURL string, rcvBuf int) (*seqReader, error) {
	t.Helper()
	u, err := base.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	proto := gortsplib.ProtocolUDP
	r := &seqReader{
		cl:   &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto, ReadTimeout: 5 * time.Second, UDPReadBufferSize: rcvBuf},
		next: map[*description.Media]uint16{},
	}
	r.cl.OnDecodeError = func(err error) { t.Logf("reader decode error: %v", err) }
	if err := r.cl.Start(); err != nil {
		return nil, err
	}
	desc, _, err := r.cl.Describe(u)
	if err == nil {
		err = r.cl.SetupAll(desc.BaseURL, desc.Medias)
	}
	if err != nil {
		r.cl.Close()
		return nil, err
	}
	r.cl.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.received++
		if want, ok := r.next[m]; ok {
			switch d := pkt.SequenceNumber - want; {
			case d >= 0x8000:
				r.late++
				return
			default:
				if d > 0 && r.gaps < 100 {
					t.Logf("reader: %d packets missing before sequence number %d (after %d received)", d, pkt.SequenceNumber, r.received)
				}
				r.gaps += int(d)
			}
		}
		r.next[m] = pkt.SequenceNumber + 1
	})
	if _, err := r.cl.Play(nil); err != nil {
		r.cl.Close()
		return nil, err
	}
	t.Cleanup(r.cl.Close)
	return r, nil
}

func (r *seqReader) counts() (received, gaps, late int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.received, r.gaps, r.late
}

// gopLen is the number of packets in camera name's GOP cache.
func gopLen(p *Proxy, name string) int {
	s := p.camera(name).stream
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.gop.packets())
}

// attachRcvBuf is the readers' socket receive buffer in the attach test:
// Linux doubles it (for its bookkeeping), which holds about 220 packets of
// 1,400 bytes on loopback, so that camsim's 1080p keyframes (about 100
// packets sent at once) fit and a GOP of 600 packets sent at once does not.
// (The default, 208 KiB, loses 7 packets of every camsim 1080p keyframe when
// reading the camera directly.)
const attachRcvBuf = 256 << 10

// TestUDPReaderAttachLosesNothing attaches UDP readers to a 1080p camera
// when its GOP cache holds about half a GOP: the readers get every packet
// from the first cached one on (a burst of the whole GOP overflowed their
// socket buffers: 372-385 of 603 packets lost per reader before pacing).
func TestUDPReaderAttachLosesNothing(t *testing.T) {
	// A camera session that breaks during the measurement (the machine
	// too busy for camsim) shows as losses that are not the readers': the
	// measurement is made again.
	for range 3 {
		if measureUDPAttach(t) {
			return
		}
		t.Log("the camera reconnected during the measurement; measuring again")
	}
	t.Fatal("the camera never stayed up for a whole measurement")
}

// measureUDPAttach is one run of TestUDPReaderAttachLosesNothing; it
// reports false when the camera reconnected, so that nothing was measured.
func measureUDPAttach(t *testing.T) bool {
	t.Helper()
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "big", Width: 1920, Height: 1080, FPS: 25}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	log, _ := newLog(t)
	p, err := New(withUDP(t, testConfig(Camera{Name: "big", URL: MustParseSecretURL(sim.URL("big"))})), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, "camera up", 10*time.Second, func() bool { return p.Status()[0].State == stateUp })
	// camsim's GOP is 50 frames (about 600 packets at 1080p): attach after
	// half of them, at the start of a GOP plus 300 packets.
	prev := 0
	waitFor(t, "a new GOP", 10*time.Second, func() bool {
		n := gopLen(p, "big")
		defer func() { prev = n }()
		return n < prev
	})
	waitFor(t, "half a GOP", 5*time.Second, func() bool { return gopLen(p, "big") > 300 })
	cached := gopLen(p, "big")
	const n = 4
	readers := make([]*seqReader, n)
	for i := range readers {
		r, err := dialSeqReader(t, readerURL(p, "big"), attachRcvBuf)
		if err != nil {
			t.Fatal(err)
		}
		defer r.cl.Close()
		readers[i] = r
	}
	time.Sleep(3 * time.Second)
	if p.Status()[0].Reconnects != 0 {
		return false
	}
	sent := map[string]ReaderStatus{}
	for _, rs := range p.Status()[0].Readers {
		sent[rs.Remote] = rs
		if rs.DroppedPackets != 0 || rs.SkippedPackets != 0 {
			t.Errorf("proxy: reader %s: %d packets dropped, %d skipped; want 0", rs.Remote, rs.DroppedPackets, rs.SkippedPackets)
		}
	}
	if len(sent) != n {
		t.Fatalf("proxy shows %d readers, want %d", len(sent), n)
	}
	for i, r := range readers {
		rec, gaps, late := r.counts()
		t.Logf("reader %d: %d packets cached at attach, %d received, %d lost, %d late", i, cached, rec, gaps, late)
		if gaps != 0 || late != 0 {
			t.Errorf("reader %d lost %d packets (%d late) of %d", i, gaps, late, rec)
		}
		if rec < cached {
			t.Errorf("reader %d received %d packets, fewer than the %d cached at attach", i, rec, cached)
		}
	}
	return true
}

// sentPacket is one packet a udpOutput test sent, and when.
type sentPacket struct {
	seq uint16
	at  time.Duration // since the test started
}

// newTestUDPOutput is a udpOutput whose packets are recorded in sent (with
// the bubble's time since start) instead of written.
func newTestUDPOutput(max int, start time.Time, mu *sync.Mutex, sent *[]sentPacket) *udpOutput {
	o := newUDPOutput(nil, &reader{close: func() {}}, nil, max)
	o.send = func(_ *rebuild.Track, pkt *rtp.Packet, _, _ time.Time) (bool, uint64, error) {
		mu.Lock()
		*sent = append(*sent, sentPacket{pkt.SequenceNumber, time.Since(start)})
		mu.Unlock()
		return false, 0, nil
	}
	return o
}

// TestUDPOutputPacesTheCachedGOP: a GOP of 50 frames (5 packets each, 40 ms
// apart, so 2 s old) goes out at udpReplaySpeed times real time, a frame's
// packets together; live packets that arrive meanwhile follow it in order,
// and once it has caught up they go out at once.
func TestUDPOutputPacesTheCachedGOP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var sent []sentPacket
		o := newTestUDPOutput(1000, start, &mu, &sent)
		defer o.stop()
		const frames, per, interval = 50, 5, 40 * time.Millisecond
		seq := uint16(0)
		write := func(at time.Time) {
			t.Helper()
			if full, _, err := o.write(nil, &rtp.Packet{Header: rtp.Header{SequenceNumber: seq}}, time.Now(), at); full || err != nil {
				t.Fatalf("write %d: full=%v err=%v", seq, full, err)
			}
			seq++
		}
		gopStart := start.Add(-frames * interval)
		for f := range frames {
			for range per {
				write(gopStart.Add(time.Duration(f) * interval))
			}
		}
		// Live frames keep arriving every 40 ms, for 2 s.
		for range frames {
			time.Sleep(interval)
			for range per {
				write(time.Now())
			}
		}
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(sent) != 2*frames*per {
			t.Fatalf("%d packets sent, want %d", len(sent), 2*frames*per)
		}
		for i, p := range sent {
			if p.seq != uint16(i) {
				t.Fatalf("packet %d sent as the %dth", p.seq, i)
			}
		}
		// The cached frame f goes out at f*40ms/udpReplaySpeed.
		for f := range frames {
			for k := range per {
				p := sent[f*per+k]
				if want := time.Duration(f) * interval / udpReplaySpeed; p.at != want {
					t.Errorf("cached frame %d packet %d sent at %v, want %v", f, k, p.at, want)
				}
			}
		}
		// Caught up after 2 s / (speed-1): the last live frames go out as
		// they arrive.
		catchUp := frames * interval / (udpReplaySpeed - 1)
		for f := range frames {
			p := sent[(frames+f)*per]
			arrived := time.Duration(f+1) * interval
			if arrived > catchUp+interval && p.at != arrived {
				t.Errorf("live frame %d (arrived %v) sent at %v, want at once", f, arrived, p.at)
			}
		}
		if o.isRunning() {
			t.Error("the pacing goroutine still runs after catching up")
		}
	})
}

// TestUDPOutputQueueBound: when the pacing queue is full the output says so
// (the stream then makes the reader skip to the next keyframe, counting what
// it skips), and what was queued still goes out.
func TestUDPOutputQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var sent []sentPacket
		o := newTestUDPOutput(10, start, &mu, &sent)
		fulls := 0
		for i := range 20 {
			// 100 ms apart at arrival: 25 ms apart when sent.
			full, dropped, err := o.write(nil, &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i)}}, start, start.Add(time.Duration(i-20)*100*time.Millisecond))
			if full {
				fulls++
				if dropped != 1 || err == nil {
					t.Errorf("full write: dropped=%d err=%v, want 1 and an error", dropped, err)
				}
			}
		}
		// The first packet goes out at once, 10 are queued, 9 do not fit.
		if fulls != 9 {
			t.Errorf("%d writes found the queue full, want 9", fulls)
		}
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		if len(sent) != 11 {
			t.Errorf("%d packets sent, want 11", len(sent))
		}
		mu.Unlock()
		// A reader that leaves stops its queue at once.
		for i := range 5 {
			o.write(nil, &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(100 + i)}}, start, start.Add(time.Duration(i)*time.Hour))
		}
		o.stop()
		synctest.Wait()
		if o.isRunning() {
			t.Error("the pacing goroutine runs after stop")
		}
	})
}

func (o *udpOutput) isRunning() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.running
}

// TestReaderCountsSkippedPackets: without a GOP cache a new reader waits for
// the next keyframe, and the packets it does not get are counted in
// skipped_packets (/v1/readers, /metrics, the detach log line).
func TestReaderCountsSkippedPackets(t *testing.T) {
	t.Parallel() // waits on the camera's keyframes
	sim := startCamsim(t, "cam")
	log, lb := newLog(t)
	cfg := testConfig(Camera{Name: "c", URL: MustParseSecretURL(sim.URL("cam"))})
	cfg.GOPCacheMaxPackets = -1
	p := startProxy(t, cfg, log)
	// The cleaner passes nothing before the camera's first keyframe: a
	// first reader shows when that has come.
	w := waitReader(t, "camera up", 10*time.Second, readerURL(p, "c"))
	waitFor(t, "the first keyframe", 5*time.Second, func() bool { return w.packets.Load() > 0 })
	w.cl.Close()
	// Two readers 100 ms apart: a keyframe comes every 2 s, so at least
	// one of them waits for it.
	a := waitReader(t, "first reader", 5*time.Second, readerURL(p, "c"))
	time.Sleep(100 * time.Millisecond)
	b := waitReader(t, "second reader", 5*time.Second, readerURL(p, "c"))
	waitFor(t, "both readers playing", 5*time.Second, func() bool { return a.packets.Load() > 0 && b.packets.Load() > 0 })
	var skipped uint64
	for _, rs := range p.Readers() {
		skipped += rs.SkippedPackets
	}
	if skipped == 0 {
		t.Fatal("/v1/readers: no reader skipped a packet while waiting for a keyframe")
	}
	api := httpGet(t, fmt.Sprintf("http://%s/v1/readers", p.AdminAddr()))
	metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr()))
	if !strings.Contains(api, `"skipped_packets":`) || !strings.Contains(metrics, "cordon_reader_skipped_packets_total{") {
		t.Errorf("skipped packets missing from /v1/readers or /metrics:\n%s", api)
	}
	a.cl.Close()
	b.cl.Close()
	waitFor(t, "readers detached", 5*time.Second, func() bool { return strings.Count(lb.String(), "reader detached") == 3 })
	if !regexp.MustCompile(`reader detached.*skipped_packets=[1-9]`).MatchString(lb.String()) {
		t.Error("no detach log line counts skipped packets")
	}
}

// TestUDPReaderSmallBuffer: a UDP reader whose socket buffer cannot even
// hold a live keyframe (32 KiB, about 14 packets of 1,400 bytes) loses
// packets the proxy did send. The proxy cannot see that loss itself; the
// reader's RTCP receiver reports tell it, and it shows as
// reported_lost_packets.
func TestUDPReaderSmallBuffer(t *testing.T) {
	t.Parallel() // waits for a receiver report (5 s)
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "big", Width: 1920, Height: 1080, FPS: 25}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	log, lb := newLog(t)
	p := startProxy(t, withUDP(t, testConfig(Camera{Name: "big", URL: MustParseSecretURL(sim.URL("big"))})), log)
	waitFor(t, "camera up", 10*time.Second, func() bool { return p.Status()[0].State == stateUp })
	r, err := dialSeqReader(t, readerURL(p, "big"), 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	var st ReaderStatus
	waitFor(t, "a receiver report with losses", 15*time.Second, func() bool {
		rs := p.Status()[0].Readers
		if len(rs) == 1 {
			st = rs[0]
		}
		return st.ReportedLostPackets > 0
	})
	_, gaps, _ := r.counts()
	t.Logf("reader: %d packets lost; proxy: %d sent, %d dropped, %d reported lost", gaps, st.PacketsOut, st.DroppedPackets, st.ReportedLostPackets)
	if int(st.ReportedLostPackets) > gaps {
		t.Errorf("reported lost %d > the %d the reader counted", st.ReportedLostPackets, gaps)
	}
	if st.DroppedPackets != 0 {
		t.Errorf("the proxy dropped %d packets; the loss is the reader's", st.DroppedPackets)
	}
	if metrics := httpGet(t, fmt.Sprintf("http://%s/metrics", p.AdminAddr())); !regexp.MustCompile(`cordon_reader_reported_lost_packets\{[^}]*\} [1-9]`).MatchString(metrics) {
		t.Error("/metrics lacks the reader's reported losses")
	}
	r.cl.Close()
	waitFor(t, "reader detached", 5*time.Second, func() bool {
		return regexp.MustCompile(`reader detached.*reported_lost_packets=[1-9]`).MatchString(lb.String())
	})
}

// TestUDPAttachExternalReaders: ffmpeg and GStreamer's rtspsrc, over UDP
// with their own socket buffers, attach to a 1080p camera when half a GOP
// is cached, and lose nothing.
//
// Not in parallel with other tests: a reader starved of CPU loses packets
// from its socket buffer whatever the proxy does.
func TestUDPAttachExternalReaders(t *testing.T) {
	testutil.NeedTool(t, "ffmpeg", "ffprobe", "/usr/bin/python3", "gst-launch-1.0")
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "big", Width: 1920, Height: 1080, FPS: 25}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	log, _ := newLog(t)
	// One proxy camera per reader (the same camsim camera): two UDP
	// readers setting up on one stream at once hit a data race in
	// gortsplib (see TestInteropMatrix).
	url := MustParseSecretURL(sim.URL("big"))
	p := startProxy(t, withUDP(t, testConfig(Camera{Name: "ff", URL: url}, Camera{Name: "gst", URL: url})), log)
	for _, name := range []string{"ff", "gst"} {
		waitFor(t, "camera up", 10*time.Second, func() bool { return p.camera(name).status().State == stateUp })
	}
	prev := 0
	waitFor(t, "a new GOP", 10*time.Second, func() bool {
		n := min(gopLen(p, "ff"), gopLen(p, "gst"))
		defer func() { prev = n }()
		return n < prev
	})
	waitFor(t, "half a GOP", 5*time.Second, func() bool { return min(gopLen(p, "ff"), gopLen(p, "gst")) > 300 })
	var ff, gst interopResult
	var wg sync.WaitGroup
	wg.Go(func() { ff = readFFmpeg(readerURL(p, "ff"), "udp", filepath.Join(t.TempDir(), "big.mov"), 3) })
	wg.Go(func() { gst = readGStreamer(readerURL(p, "gst"), "udp", 3, map[string]string{"H264": "h264"}) })
	wg.Wait()
	for name, r := range map[string]interopResult{"ffmpeg": ff, "gstreamer": gst} {
		if r.err != nil {
			t.Errorf("%s: %v\n%s", name, r.err, r.log)
			continue
		}
		t.Logf("%s: frames %v, %d packets lost, %d decoder errors", name, r.frames, r.lost, r.decodeErrors)
		if r.lost != 0 || r.decodeErrors != 0 || r.frames["h264"] < 25 {
			t.Errorf("%s lost %d packets, %d decoder errors, %d frames; want 0, 0 and 25 or more\n%s", name, r.lost, r.decodeErrors, r.frames["h264"], r.log)
		}
	}
}

// smallSendBufListener gives accepted connections a 4 KiB send buffer.
type smallSendBufListener struct{ net.Listener }

func (l smallSendBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestGOPReplayCutShortIsCounted: a reader on gortsplib's per-packet path
// that does not read (4 KiB socket buffers on both sides) gets what its queue (128
// packets) holds of the cached GOP (300 packets or more); the rest of the
// GOP counts as dropped at once.
func TestGOPReplayCutShortIsCounted(t *testing.T) {
	t.Parallel() // waits on the camera's keyframes
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "big", Width: 1920, Height: 1080, FPS: 25}}}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	log, _ := newLog(t)
	cfg := testConfig(Camera{Name: "big", URL: MustParseSecretURL(sim.URL("big"))})
	cfg.PerPacketWrites, cfg.WriteQueueSize = true, 128
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	// Small send buffers on the proxy's side too: what the kernel holds
	// for the reader does not grow to megabytes.
	p.listen = func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		return smallSendBufListener{ln}, err
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	waitFor(t, "camera up", 10*time.Second, func() bool { return p.Status()[0].State == stateUp })
	waitFor(t, "300 packets cached", 10*time.Second, func() bool { return gopLen(p, "big") > 300 })
	cached := gopLen(p, "big")
	nc, err := net.Dial("tcp", p.RTSPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	br := bufio.NewReader(nc)
	session := ""
	for i, m := range []base.Method{base.Describe, base.Setup, base.Play} {
		url := readerURL(p, "big")
		h := base.Header{"CSeq": base.HeaderValue{fmt.Sprint(i + 1)}}
		if m == base.Setup {
			url += "/trackID=0"
			h["Transport"] = base.HeaderValue{"RTP/AVP/TCP;unicast;interleaved=0-1"}
		}
		if session != "" {
			h["Session"] = base.HeaderValue{session}
		}
		u, _ := base.ParseURL(url)
		b, _ := (&base.Request{Method: m, URL: u, Header: h}).Marshal()
		nc.Write(b)
		var res base.Response
		if err := res.Unmarshal(br); err != nil || res.StatusCode != base.StatusOK {
			t.Fatalf("%s: %v %v", m, res.StatusCode, err)
		}
		if v, ok := res.Header["Session"]; ok {
			session, _, _ = strings.Cut(v[0], ";")
		}
	}
	// The GOP goes out with the camera's next packet (within 40 ms).
	waitFor(t, "the GOP replayed", 5*time.Second, func() bool { return p.Status()[0].Readers[0].DroppedPackets > 0 })
	time.Sleep(100 * time.Millisecond)
	st := p.Status()[0].Readers[0]
	t.Logf("%d packets cached; proxy: %d sent, %d dropped", cached, st.PacketsOut, st.DroppedPackets)
	if st.PacketsOut+st.DroppedPackets < uint64(cached) {
		t.Errorf("%d sent + %d dropped < the %d cached: the rest of the GOP was not counted", st.PacketsOut, st.DroppedPackets, cached)
	}
}

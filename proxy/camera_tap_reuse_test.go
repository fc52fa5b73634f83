package proxy

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// Every test of the package runs with the camera tap's recycled chunks
// poisoned: a packet or payload read after its chunk was reused reads
// 0xA5 bytes (and the race detector sees the write). Benchmarks measure
// the proxy as it runs, without.
func init() {
	tapPoison = !slices.ContainsFunc(os.Args, func(a string) bool { return strings.HasPrefix(a, "-test.bench=") })
}

// The camera tap reuses its slabs while readers of every kind come and go:
// batched (copied at write), UDP (a paced queue read by its own goroutine),
// WebRTC (a queue read by its own goroutine), readers held before their
// answer to PLAY, slow ones that overflow, GOP caches that overflow, and
// cameras that reconnect (a new tap mid access unit). Each camera's NAL
// units carry their camera, frame, index and a pattern of their own; every
// NAL unit a reader gets whole is checked byte for byte. A chunk reused
// while anything still read it would show as another camera's bytes, or
// poison.
func TestCameraTapReuseStress(t *testing.T) {
	for _, mode := range []Mode{"passthrough", "rebuild"} {
		t.Run(string(mode), func(t *testing.T) {
			errs := &stressErrors{}
			var wg sync.WaitGroup
			var recycled atomic.Int64
			kinds := make([]atomic.Int64, 3)
			for cam := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					recycled.Add(int64(tapStressCamera(t, mode, cam, errs, kinds)))
				}()
			}
			wg.Wait()
			time.Sleep(100 * time.Millisecond) // the last queued packets
			errs.report(t)
			t.Logf("NAL units checked (batched, UDP, WebRTC): %d %d %d; slabs recycled %d times", kinds[0].Load(), kinds[1].Load(), kinds[2].Load(), recycled.Load())
			for k := range kinds {
				if n := kinds[k].Load(); n < 20 {
					t.Errorf("readers of kind %d checked %d NAL units: too few to tell", k, n)
				}
			}
			if recycled.Load() < 100 {
				t.Errorf("the taps recycled their slabs %d times", recycled.Load())
			}
		})
	}
}

// stressErrors collects what the checkers found (they run on goroutines
// that may outlive a test's end).
type stressErrors struct {
	mu   sync.Mutex
	errs []string
	done bool
}

func (e *stressErrors) add(format string, a ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.done && len(e.errs) < 20 {
		e.errs = append(e.errs, fmt.Sprintf(format, a...))
	}
}

func (e *stressErrors) report(t *testing.T) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.done = true
	for _, s := range e.errs {
		t.Error(s)
	}
}

// stressNAL is NAL unit idx of frame f of camera cam: a header byte, then
// its names in decimal (no zero byte: no start code emulation), then a
// pattern of size bytes that depends on all three.
func stressNAL(cam, f, idx, size int, idr bool) []byte {
	hdr := byte(0x41)
	if idr {
		hdr = 0x65
	}
	// (0x88 0x84: a first slice of its picture, as rebuild parses it)
	b := append([]byte{hdr, 0x88, 0x84}, fmt.Sprintf("c%d f%d i%d|", cam, f, idx)...)
	for i := range size {
		b = append(b, byte(1+(cam*131+f*31+idx*7+i)%255))
	}
	return b
}

// checkNAL checks a NAL unit a reader of camera cam got whole.
func checkNAL(cam int, n []byte) error {
	if len(n) < 2 || (n[0] != 0x41 && n[0] != 0x65) {
		return nil // parameter sets, AUD: not the camera's bytes as such
	}
	var c, f, idx int
	if _, err := fmt.Sscanf(string(n[3:min(len(n), 40)]), "c%d f%d i%d|", &c, &f, &idx); err != nil {
		return fmt.Errorf("camera %d: NAL unit without its names (%q...)", cam, n[:min(len(n), 16)])
	}
	if c != cam {
		return fmt.Errorf("camera %d got camera %d's frame %d", cam, c, f)
	}
	body := n[3+len(fmt.Sprintf("c%d f%d i%d|", c, f, idx)):]
	for i, b := range body {
		if b != byte(1+(cam*131+f*31+idx*7+i)%255) {
			return fmt.Errorf("camera %d frame %d NAL %d: byte %d is %#x", cam, f, idx, i, b)
		}
	}
	return nil
}

// nalChecker rebuilds the NAL units of one reader's packets (single NAL
// units and FU-A) and checks each whole one.
type nalChecker struct {
	mu      sync.Mutex
	cam     int
	errs    *stressErrors
	checked *atomic.Int64
	slow    int // sleep a millisecond every slow packets (0: never)
	n       int
	fu      []byte
	inFU    bool
	lastSeq uint16
}

func (c *nalChecker) packet(p *rtp.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n++; c.slow > 0 && c.n%c.slow == 0 {
		time.Sleep(time.Millisecond)
	}
	pl := p.Payload
	if len(pl) < 2 {
		c.errs.add("camera %d: a payload of %d bytes", c.cam, len(pl))
		return
	}
	follows := c.inFU && p.SequenceNumber == c.lastSeq+1
	c.lastSeq = p.SequenceNumber
	if pl[0]&0x1f != 28 {
		c.inFU = false
		c.check(pl)
		return
	}
	switch start := pl[1]&0x80 != 0; {
	case start:
		c.fu = append(c.fu[:0], pl[0]&0xe0|pl[1]&0x1f)
		c.inFU = true
	case !follows:
		c.inFU = false // a packet was skipped: not whole
		return
	}
	c.fu = append(c.fu, pl[2:]...)
	if pl[1]&0x40 != 0 {
		c.inFU = false
		c.check(c.fu)
	}
}

func (c *nalChecker) check(n []byte) {
	if err := checkNAL(c.cam, n); err != nil {
		c.errs.add("%v", err)
		return
	}
	if n[0] == 0x41 || n[0] == 0x65 {
		c.checked.Add(1)
	}
}

// syncOutput checks what it is given before write returns, as a batched
// output copies it.
type syncOutput struct{ c *nalChecker }

func (o *syncOutput) playing() bool { return true }
func (o *syncOutput) batched() bool { return true }
func (o *syncOutput) stop()         {}
func (o *syncOutput) write(_ *rebuild.Track, pkt *rtp.Packet, _, _ time.Time) (bool, uint64, error) {
	o.c.packet(pkt)
	return false, 0, nil
}

// lateOutput is an output whose answer to PLAY is out only after a while:
// until then the stream holds its packets (reader.start).
type lateOutput struct {
	output
	at time.Time
}

func (o *lateOutput) playing() bool { return time.Now().After(o.at) }

// checkWriter is a WebRTC track that checks what it is given.
type checkWriter struct{ c *nalChecker }

func (w *checkWriter) WriteRTP(p *rtp.Packet) error {
	w.c.packet(p)
	return nil
}

// tapStressCamera runs one camera of TestCameraTapReuseStress: its stream,
// its taps (one per connection), and readers coming and going. It returns
// how many times its taps reused their slabs.
func tapStressCamera(t *testing.T, mode Mode, cam int, errs *stressErrors, kinds []atomic.Int64) int {
	rng := rand.New(rand.NewPCG(uint64(cam), 7))
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: goodSPS, PPS: goodPPS}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}}}
	var counters rebuild.Counters
	s := newStream(Camera{Name: "c" + strconv.Itoa(cam), Mode: mode}, nil, 60, &counters, slog.New(slog.DiscardHandler))
	plan, err := s.bind(desc)
	if err != nil {
		t.Error(err)
		return 0
	}
	tr := plan.Tracks[0]
	rd := &stressReaders{s: s, tr: tr, cam: cam, errs: errs, kinds: kinds, rng: rng}
	defer rd.leaveAll()
	var tap *cameraTap
	recycled := 0
	seq := uint16(rng.Uint32())
	var pending [][]byte
	for f := range 400 {
		if f%37 == 0 { // the camera reconnects: a new connection, a new tap
			if tap != nil {
				recycled += tap.recycles
			}
			tap = &cameraTap{}
			tap.add(0, 96, func(p *rtp.Packet, at time.Time) {
				if err := s.packet(tr, p, at); err != nil {
					errs.add("camera %d: %v", cam, err)
				}
			}, func(uint64) {}, tr.HoldsInput)
			pending = nil // the rest of the last connection is lost
		}
		pending = append(pending, stressFrame(rng, cam, f, &seq)...)
		pending = feedTap(tap, rng, pending, errs)
		rd.churn()
		if f%4 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return recycled + tap.recycles
}

// stressFrame returns frame f's interleaved RTP frames: parameter sets and
// an IDR picture every 10 frames, one to three NAL units, as single NAL
// packets or FU-A fragments (cut as rebuild cuts them: forwarded as they are).
func stressFrame(rng *rand.Rand, cam, f int, seq *uint16) [][]byte {
	var payloads [][]byte
	idr := f%10 == 0
	if idr {
		payloads = append(payloads, goodSPS, goodPPS)
	}
	for idx := range 1 + rng.IntN(3) {
		size := 50 + rng.IntN(1300)
		if rng.IntN(2) == 0 {
			size = 1500 + rng.IntN(5000)
		}
		n := stressNAL(cam, f, idx, size, idr)
		if len(n) <= 1400 {
			payloads = append(payloads, n)
			continue
		}
		for off := 1; off < len(n); off += 1448 {
			fh := n[0] & 0x1f
			if off == 1 {
				fh |= 0x80
			}
			if off+1448 >= len(n) {
				fh |= 0x40
			}
			payloads = append(payloads, append([]byte{n[0]&0xe0 | 28, fh}, n[off:min(off+1448, len(n))]...))
		}
	}
	var out [][]byte
	for i, pl := range payloads {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: *seq, Timestamp: uint32(f) * 3600, Marker: i == len(payloads)-1, SSRC: 1}, Payload: pl}
		*seq++
		b, _ := p.Marshal()
		out = append(out, append([]byte{'$', 0, byte(len(b) >> 8), byte(len(b))}, b...))
	}
	return out
}

// feedTap gives the tap the pending frames a few at a time, as reads
// bring them (now and then with the start of the next one), and returns
// those left for the next read.
func feedTap(tap *cameraTap, rng *rand.Rand, pending [][]byte, errs *stressErrors) [][]byte {
	for len(pending) > rng.IntN(3) {
		k := min(len(pending), 1+rng.IntN(5))
		var b []byte
		for _, f := range pending[:k] {
			b = append(b, f...)
		}
		whole := len(b)
		if k < len(pending) && rng.IntN(3) == 0 {
			b = append(b, pending[k][:rng.IntN(len(pending[k]))]...)
		}
		if n := tap.take(b); n != whole {
			errs.add("the tap took %d bytes of %d", n, whole)
		}
		pending = pending[k:]
	}
	return pending
}

// stressReaders are one camera's readers in TestCameraTapReuseStress.
type stressReaders struct {
	s     *stream
	tr    *rebuild.Track
	cam   int
	errs  *stressErrors
	kinds []atomic.Int64
	rng   *rand.Rand
	in    []*reader
}

// churn adds or removes a reader now and then.
func (rd *stressReaders) churn() {
	switch {
	case rd.rng.IntN(3) != 0:
	case len(rd.in) < 6 && rd.rng.IntN(3) != 0:
		rd.join(rd.rng.IntN(3))
	case len(rd.in) > 0:
		i := rd.rng.IntN(len(rd.in))
		rd.s.remove(rd.in[i])
		rd.in = append(rd.in[:i], rd.in[i+1:]...)
	}
}

// join adds a reader of one kind (0 batched, 1 UDP, 2 WebRTC), whose
// answer to PLAY is out now or a little later, as stream.add does.
func (rd *stressReaders) join(kind int) {
	c := &nalChecker{cam: rd.cam, errs: rd.errs, checked: &rd.kinds[kind]}
	r := &reader{}
	var out output
	switch kind {
	case 0:
		out = &syncOutput{c}
	case 1:
		c.slow = 5 + rd.rng.IntN(20)
		u := newUDPOutput(nil, r, nil, 8+rd.rng.IntN(64))
		u.send = func(_ *rebuild.Track, p *rtp.Packet, _, _ time.Time) (bool, uint64, error) {
			c.packet(p)
			return false, 0, nil
		}
		out = u
	default:
		c.slow = 5 + rd.rng.IntN(20)
		w := newWebRTCOutput(rd.tr, &checkWriter{c})
		w.r = r
		w.connected.Store(true)
		go w.run()
		out = w
	}
	r.out = &lateOutput{out, time.Now().Add(time.Duration(rd.rng.IntN(3)) * 10 * time.Millisecond)}
	rd.s.mu.Lock()
	r.start, r.startStore = rd.s.gop.share()
	rd.s.readers[r] = struct{}{}
	rd.s.mu.Unlock()
	rd.in = append(rd.in, r)
}

func (rd *stressReaders) leaveAll() {
	for _, r := range rd.in {
		rd.s.remove(r)
	}
}

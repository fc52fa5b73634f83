package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// webrtcOutput is a console preview (preview_webrtc.go): a reader like
// any other, whose cleaned video packets go, unchanged but for their
// sequence numbers (consecutive, with a hole where packets were dropped),
// SSRC and payload type, to a WebRTC track. The stream
// writes into a bounded queue; run sends from it. It plays once ICE and
// DTLS are up, so the stream starts it at the cached GOP.
type webrtcOutput struct {
	r     *reader
	video *rebuild.Track // the one track forwarded (other tracks are not previewed)
	track rtpWriter

	connected atomic.Bool
	q         chan webrtcPacket
	seq       uint16 // run's
	gap       bool   // packets were dropped since the last one queued (write's: the stream serialises it)
	notVideo  atomic.Uint64

	once sync.Once
	done chan struct{}

	// delay keeps what the preview costs in the proxy: arrival → handed
	// to pion, and per frame (RTP timestamp) the arrival of its first
	// packet, for latency measurements.
	delay previewDelay
}

// rtpWriter is where a preview's packets go (a pion local track).
type rtpWriter interface {
	WriteRTP(*rtp.Packet) error
}

var _ rtpWriter = (*webrtc.TrackLocalStaticRTP)(nil)

type webrtcPacket struct {
	pkt     *rtp.Packet
	arrival time.Time
	gap     bool // packets were dropped before this one
}

var (
	_ output             = (*webrtcOutput)(nil)
	_ streamCloseWatcher = (*webrtcOutput)(nil)
)

// webrtcQueue is a preview's queue, in packets: a GOP of a 4 Mb/s camera
// with a 2 s keyframe interval fits.
const webrtcQueue = 1024

func newWebRTCOutput(video *rebuild.Track, track rtpWriter) *webrtcOutput {
	return &webrtcOutput{video: video, track: track, q: make(chan webrtcPacket, webrtcQueue), done: make(chan struct{})}
}

func (o *webrtcOutput) playing() bool { return o.connected.Load() }
func (o *webrtcOutput) batched() bool { return false }

func (o *webrtcOutput) stop()         { o.once.Do(func() { close(o.done) }) }
func (o *webrtcOutput) streamClosed() { o.stop() }

func (o *webrtcOutput) write(t *rebuild.Track, pkt *rtp.Packet, arrival, _ time.Time) (bool, uint64, error) {
	if t != o.video {
		// Audio (and a second video track) are not previewed; counted,
		// not as the reader's drops.
		o.notVideo.Add(1)
		return false, 0, nil
	}
	select {
	case o.q <- webrtcPacket{detach(pkt), arrival, o.gap}: // run reads it later (camera_tap.go)
		o.gap = false
		return false, 0, nil
	default:
		o.gap = true
		return true, 1, errQueueFull
	}
}

// run sends queued packets to the track until the output stops.
func (o *webrtcOutput) run() error {
	for {
		select {
		case <-o.done:
			return errors.New("preview closed")
		case wp := <-o.q:
			p := wp.pkt // write queued a copy (detach): it is this output's
			if wp.gap {
				// The browser must see the loss, to drop the partial frame
				// rather than decode it; the stream resumes at a keyframe.
				o.seq++
			}
			p.SequenceNumber = o.seq
			o.seq++
			if err := o.track.WriteRTP(p); err != nil {
				return err
			}
			o.delay.observe(p.Timestamp, wp.arrival, time.Now())
			o.r.packets.Add(1)
			o.r.bytes.Add(uint64(p.MarshalSize()))
		}
	}
}

// previewDelay is what a preview's packets wait in the proxy, and when
// the first packet of each recent frame arrived from the camera.
type previewDelay struct {
	mu     sync.Mutex
	n      uint64
	sum    time.Duration
	max    time.Duration
	frames [256]frameArrival
	next   int
	lastTS uint32
	any    bool
}

// frameArrival is when the first packet of the frame with RTP timestamp
// ts reached the proxy.
type frameArrival struct {
	TS      uint32
	Arrival time.Time
}

func (d *previewDelay) observe(ts uint32, arrival, sent time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := sent.Sub(arrival)
	d.n++
	d.sum += w
	d.max = max(d.max, w)
	if !d.any || ts != d.lastTS {
		d.frames[d.next] = frameArrival{ts, arrival}
		d.next = (d.next + 1) % len(d.frames)
		d.lastTS, d.any = ts, true
	}
}

// arrivals returns the recent frames' first-packet arrivals by RTP
// timestamp.
func (d *previewDelay) arrivals() map[uint32]time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[uint32]time.Time{}
	for _, f := range d.frames {
		if !f.Arrival.IsZero() {
			out[f.TS] = f.Arrival
		}
	}
	return out
}

// stats returns the mean and largest time a packet waited in the proxy
// (camera arrival → handed to the WebRTC stack).
func (d *previewDelay) stats() (mean, maxWait time.Duration, n uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == 0 {
		return 0, 0, 0
	}
	return d.sum / time.Duration(d.n), d.max, d.n
}

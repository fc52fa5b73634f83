package proxy

import (
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// UDP readers and the cached GOP.
//
// A new reader gets the camera's packets since its last keyframe at once
// (gop.go). Over TCP the burst waits in the socket. Over UDP nothing waits:
// gortsplib's writer sends the whole GOP (hundreds of packets, up to a few
// MB) as fast as the kernel takes it, and what the reader's socket receive
// buffer (about 200 KB by default on Linux) cannot hold is lost without
// trace, on loopback as on a LAN: measured, 400-540 of a 1080p camera's
// 600 cached packets per reader, with dropped_packets=0.
//
// udpOutput paces what it sends by each packet's wall-clock time (its RTP
// time on the track's clock line, timeline.go; for a live packet, about
// when it reached the proxy): a packet goes out no sooner than the one
// before plus the gap between their times divided by udpReplaySpeed. The
// cached GOP (whose times span up to its age) so goes out at
// udpReplaySpeed times real time, live packets that come in meanwhile queue
// behind it, and once the queue has caught up packets are written at once
// by the stream again (their gaps, divided by the speed, are already
// past). Within a frame (packets of one time) nothing changes: the reader
// takes the same bursts as live. The queue is bounded; when it is full the stream makes the reader
// skip to the next keyframe and counts the packets (dropped_packets).
//
// What the reader loses after the proxy sent a packet (a socket buffer too
// small even for live bursts, a lossy network) is only known from its RTCP
// receiver reports: counted as reported_lost_packets.

// udpReplaySpeed is how much faster than real time a cached GOP goes to a
// UDP reader: a GOP of age A is caught up after A/(udpReplaySpeed-1).
const udpReplaySpeed = 4

// udpMaxGap bounds the wait between two packets: a camera that paused
// within the cached GOP does not hold a new reader up.
const udpMaxGap = 250 * time.Millisecond

// udpOutput is the paced path to a UDP reader: with sendmmsg (b, see
// reader_udp_batch.go) or, when b is nil, gortsplib's per-packet path
// (packetOutput).
type udpOutput struct {
	packetOutput
	max int     // queued packets at most
	cam *camera // contains a panic of the pacing goroutine (nil in tests)

	mu       sync.Mutex
	queue    []pacedPacket
	running  bool      // the pacing goroutine runs (it alone writes)
	overflow bool      // a write from the queue found gortsplib's queue full
	stopped  bool      // the reader has left
	lastDue  time.Time // when the previous packet was (or is) to go out
	lastNTP  time.Time // the previous packet's wall-clock time
	wake     chan struct{}
	sending  []pacedPacket // the run goroutine's batch (reused)
	// b, when set, sends with sendmmsg (reader_udp_batch.go): write
	// collects a live frame and run sends every due packet in one go.
	b *udpBatch
	// send writes one packet (packetOutput.write; a test hook).
	send func(t *rebuild.Track, pkt *rtp.Packet, arrival, ntp time.Time) (full bool, dropped uint64, err error)
}

type pacedPacket struct {
	t            *rebuild.Track
	pkt          *rtp.Packet
	arrival, ntp time.Time
	due          time.Time
}

var _ output = (*udpOutput)(nil)

func newUDPOutput(ss *gortsplib.ServerSession, r *reader, cam *camera, max int) *udpOutput {
	o := &udpOutput{
		packetOutput: packetOutput{ss: ss, r: r},
		max:          max, cam: cam,
		wake: make(chan struct{}, 1),
	}
	o.send = o.packetOutput.write
	return o
}

// write sends pkt at once when nothing is queued and its time has come, and
// queues it otherwise.
func (o *udpOutput) write(t *rebuild.Track, pkt *rtp.Packet, arrival, ntp time.Time) (bool, uint64, error) {
	o.mu.Lock()
	if o.overflow {
		o.overflow = false
		o.mu.Unlock()
		return true, 1, errQueueFull
	}
	now := time.Now()
	due := now
	if !o.lastNTP.IsZero() {
		gap := min(max(ntp.Sub(o.lastNTP), 0), udpMaxGap)
		if d := o.lastDue.Add(gap / udpReplaySpeed); d.After(now) {
			due = d
		}
	}
	if !o.running && !due.After(now) {
		o.lastDue, o.lastNTP = due, ntp
		if o.b != nil {
			defer o.mu.Unlock()
			return o.writeLive(t, pkt, ntp)
		}
		o.mu.Unlock()
		return o.send(t, pkt, arrival, ntp)
	}
	if len(o.queue) >= o.max {
		o.mu.Unlock()
		return true, 1, errQueueFull
	}
	if o.b != nil && !o.running && o.b.n > 0 {
		// The live frame collected so far goes before what is queued.
		if dropped, full, err := o.b.flush(true); full {
			o.mu.Unlock()
			return true, dropped + 1, err
		} else if dropped > 0 {
			o.r.dropped.Add(dropped)
		}
	}
	o.lastDue, o.lastNTP = due, ntp
	// gortsplib sets the SSRC in the packet it writes, which other readers
	// share: the stream's lock serialises that, not this queue's. And the
	// payload is the camera tap's or a cached GOP's, reused once write
	// returns (output.write).
	o.queue = append(o.queue, pacedPacket{t, detach(pkt), arrival, ntp, due})
	if !o.running {
		o.running = true
		go o.run()
	}
	o.mu.Unlock()
	return false, 0, nil
}

// run writes the queue out, each packet at its time, and returns once the
// queue is empty (the stream writes directly again) or the reader left.
func (o *udpOutput) run() {
	if o.cam != nil {
		defer o.cam.recoverReader(o.r)
	}
	done := false
	defer func() {
		if !done { // a panic, on its way to recoverReader
			o.mu.Lock()
			o.running, o.stopped, o.queue = false, true, nil
			o.mu.Unlock()
		}
	}()
	for {
		o.mu.Lock()
		if o.stopped || len(o.queue) == 0 {
			// Under the lock that write checks running with: a packet
			// is either queued before this or written by the stream.
			o.running, o.queue = false, nil
			o.mu.Unlock()
			done = true
			return
		}
		p := o.queue[0]
		if wait := time.Until(p.due); wait > 0 {
			o.mu.Unlock()
			o.sleep(wait)
			continue
		}
		if o.b != nil {
			o.sendDue(time.Now())
			continue
		}
		o.queue[0] = pacedPacket{}
		o.queue = o.queue[1:]
		o.mu.Unlock()
		if full, dropped, _ := o.send(p.t, p.pkt, p.arrival, p.ntp); full {
			// gortsplib's own queue is full: the stream makes the
			// reader skip to the next keyframe at its next packet.
			o.r.dropped.Add(dropped)
			o.mu.Lock()
			o.overflow = true
			o.mu.Unlock()
		}
	}
}

// writeLive adds a live packet, due now, to the frame being collected, and
// sends the frame when it ends (its last packet, or audio); a packet of
// the next frame sends the previous one first. Called with o.mu held and
// nothing queued: the stream's goroutine is the only writer.
func (o *udpOutput) writeLive(t *rebuild.Track, pkt *rtp.Packet, ntp time.Time) (bool, uint64, error) {
	b := o.b
	if b.frameEnds(t, pkt) || b.full() {
		if dropped, full, err := b.flush(true); full {
			return true, dropped + 1, err
		} else if dropped > 0 {
			o.r.dropped.Add(dropped)
		}
	}
	if err := b.add(t, pkt, ntp); err != nil {
		return false, 1, err
	}
	if !isVideo(t) || pkt.Marker {
		dropped, full, err := b.flush(true)
		return full, dropped, err
	}
	return false, 0, nil
}

// sendDue sends every queued packet due by now (up to a batch) with one
// sendmmsg. Called with o.mu held, which it releases.
func (o *udpOutput) sendDue(now time.Time) {
	k := 0
	for k < len(o.queue) && k < udpBatchMax && !o.queue[k].due.After(now) {
		k++
	}
	o.sending = append(o.sending[:0], o.queue[:k]...)
	clear(o.queue[:k])
	o.queue = o.queue[k:]
	o.mu.Unlock()
	var dropped uint64
	for _, p := range o.sending {
		if err := o.b.add(p.t, p.pkt, p.ntp); err != nil {
			dropped++ // too big for a datagram, as on the per-packet path
		}
	}
	d, full, _ := o.b.flush(false)
	clear(o.sending)
	if dropped += d; dropped > 0 {
		o.r.dropped.Add(dropped)
	}
	if full {
		o.mu.Lock()
		o.overflow = true
		o.mu.Unlock()
	}
}

// sleep waits d, or less when the reader leaves.
func (o *udpOutput) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-o.wake:
	}
}

func (o *udpOutput) stop() {
	o.mu.Lock()
	o.stopped = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *udpOutput) batched() bool { return o.b != nil }

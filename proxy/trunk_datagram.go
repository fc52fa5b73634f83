package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// A camera carried in QUIC DATAGRAM frames (transport: datagram). The
// play request and its answer still use a QUIC stream, which stays open
// as the camera's control channel: the edge sends a report frame on it
// every trunkReportEvery (so each side sees the other leave), and closing
// it ends the camera. Every RTP packet goes in one or more datagrams:
//
//	id      uint32  the camera's datagram id, from the edge's answer
//	seq     uint32  the packet's number on this id, from 0
//	media   uint8   media index into the answer's SDP
//	frag    uint8   this fragment's index
//	frags   uint8   fragments of the packet (1..maxTrunkFrags)
//	payload         a slice of the RTP packet
//
// Datagrams are never retransmitted: a packet with a missing fragment is
// lost, the core counts the gap in seq and its readers skip to the next
// keyframe (stream.skipToKey), as a slow reader would.
const (
	trunkDatagramHeader = 11
	maxTrunkFrags       = 64 // 64 fragments hold any packet a frame may carry
	// trunkFragPayload is the first fragment size tried; a smaller one is
	// used when quic-go reports the path's datagrams are smaller.
	trunkFragPayload = 1150
	minFragPayload   = 256
	// Once a second, a packet larger than the fragment size is first
	// tried whole (up to trunkProbePayload): quic-go's answer gives the
	// path's current datagram size (it grows with path MTU discovery).
	trunkProbePayload = 1440
	trunkProbeEvery   = time.Second
	trunkReportEvery  = time.Second
)

// trunkDatagramReport is the edge's report on a datagram camera's stream.
type trunkDatagramReport struct {
	Sent uint64 `json:"sent"` // RTP packets sent in datagrams so far
}

var (
	errTrunkDatagram   = errors.New("trunk: bad datagram")
	errDatagramTooSmal = errors.New("trunk: the path's datagrams are too small")
)

// appendDatagram appends one fragment's datagram.
func appendDatagram(b []byte, id, seq uint32, media, frag, frags uint8, payload []byte) []byte {
	return appendFragment(binary.BigEndian.AppendUint32(b, id), seq, media, frag, frags, payload)
}

// appendFragment appends what a fragment's datagram holds after the id.
func appendFragment(b []byte, seq uint32, media, frag, frags uint8, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, seq)
	b = append(b, media, frag, frags)
	return append(b, payload...)
}

// trunkFragment is one decoded datagram.
type trunkFragment struct {
	id, seq            uint32
	media, frag, frags uint8
	payload            []byte
}

// parseDatagram decodes a datagram's header (the payload is not copied).
func parseDatagram(b []byte) (trunkFragment, error) {
	if len(b) < trunkDatagramHeader+1 {
		return trunkFragment{}, fmt.Errorf("%w: %d bytes", errTrunkDatagram, len(b))
	}
	return parseFragment(binary.BigEndian.Uint32(b), b[4:])
}

// parseFragment decodes what a datagram of id holds after the id (seq,
// media, frag, frags, payload; the payload is not copied).
func parseFragment(id uint32, b []byte) (trunkFragment, error) {
	if len(b) < trunkDatagramHeader-4+1 {
		return trunkFragment{}, fmt.Errorf("%w: %d bytes after the id", errTrunkDatagram, len(b))
	}
	f := trunkFragment{
		id: id, seq: binary.BigEndian.Uint32(b),
		media: b[4], frag: b[5], frags: b[6], payload: b[trunkDatagramHeader-4:],
	}
	if f.frags == 0 || f.frags > maxTrunkFrags || f.frag >= f.frags {
		return trunkFragment{}, fmt.Errorf("%w: fragment %d of %d", errTrunkDatagram, f.frag, f.frags)
	}
	return f, nil
}

// trunkDatagramWriter is the edge's writer of a datagram camera: what
// trunkOutput.run writes (packet frames) goes out as datagrams.
type trunkDatagramWriter struct {
	conn   datagramSender
	id     uint32
	cam    *trunkEdgeCamera
	seq    uint32
	frag   int // fragment payload size
	probed time.Time
	buf    []byte
	// fec, when set, sends the camera's datagrams in groups with repair
	// datagrams (trunk_fec.go).
	fec *fecEncoder
}

func (w *trunkDatagramWriter) SetWriteDeadline(time.Time) error { return nil }

// Write sends packet frames (as packetFrame made them, one after the
// other) in datagrams.
func (w *trunkDatagramWriter) Write(frames []byte) (int, error) {
	if w.fec != nil {
		return w.writeFEC(frames)
	}
	for b := frames; len(b) > 0; {
		media, pkt, rest, err := nextFrame(b)
		if err != nil {
			return 0, err
		}
		if err := w.writeFrame(media, pkt); err != nil {
			return 0, err
		}
		b = rest
	}
	return len(frames), nil
}

// writeFrame sends one packet frame's RTP packet in datagrams.
func (w *trunkDatagramWriter) writeFrame(media byte, pkt []byte) error {
	if w.frag == 0 {
		w.frag = trunkFragPayload
	}
	if len(pkt) > w.frag && w.frag < trunkProbePayload && time.Since(w.probed) >= trunkProbeEvery {
		w.probed = time.Now()
		w.frag = trunkProbePayload
	}
	for {
		frags := (len(pkt) + w.frag - 1) / w.frag
		if frags > maxTrunkFrags {
			w.cam.datagramErrors.Add(1)
			return nil // (cannot happen with frames below maxTrunkPacket; counted if it does)
		}
		err := w.send(media, pkt, frags)
		var tl *quic.DatagramTooLargeError
		if errors.As(err, &tl) {
			smaller := int(tl.MaxDatagramPayloadSize) - trunkDatagramHeader
			if smaller < minFragPayload || smaller >= w.frag {
				return fmt.Errorf("%w: %d bytes", errDatagramTooSmal, tl.MaxDatagramPayloadSize)
			}
			w.frag = smaller
			continue // the whole packet again, same seq: the core drops the partial one
		}
		if err != nil {
			return err
		}
		w.seq++
		w.cam.datagrams.Add(uint64(frags))
		w.cam.sent.Add(1)
		return nil
	}
}

func (w *trunkDatagramWriter) send(media byte, pkt []byte, frags int) error {
	for i := range frags {
		chunk := pkt[i*w.frag : min(len(pkt), (i+1)*w.frag)]
		w.buf = appendDatagram(w.buf[:0], w.id, w.seq, media, uint8(i), uint8(frags), chunk)
		if err := w.conn.SendDatagram(w.buf); err != nil {
			return err
		}
	}
	return nil
}

// nextFrame splits the first packet frame off b: its media index, the
// RTP packet and the rest.
func nextFrame(b []byte) (byte, []byte, []byte, error) {
	if len(b) < 6 || b[0] != framePacket {
		return 0, nil, nil, errTrunkFrame
	}
	n := 5 + int(binary.BigEndian.Uint32(b[1:]))
	if n < 6 || n > len(b) {
		return 0, nil, nil, errTrunkFrame
	}
	return b[5], b[6:n], b[n:], nil
}

// writeFEC sends packet frames as groups of datagrams, each group
// followed by its repair datagrams. The fragment size leaves room for
// the FEC header; once a second, while it is below the largest, a probe
// datagram tests a larger one (a group cannot change its size midway).
func (w *trunkDatagramWriter) writeFEC(frames []byte) (int, error) {
	if w.frag == 0 {
		w.frag = trunkFragPayload + trunkDatagramHeader - fecDataHead
	}
	if best := trunkProbePayload + trunkDatagramHeader - fecDataHead; w.frag < best && time.Since(w.probed) >= trunkProbeEvery {
		w.probed = time.Now()
		err := w.conn.SendDatagram(fecProbe(w.id, best+fecDataHead))
		var tl *quic.DatagramTooLargeError
		switch {
		case err == nil:
			w.frag = best
		case errors.As(err, &tl):
			w.frag = max(w.frag, int(tl.MaxDatagramPayloadSize)-fecDataHead)
		default:
			return 0, err
		}
	}
	for {
		e := w.fec
		e.reset()
		seq := w.seq
		for b := frames; len(b) > 0; {
			media, pkt, rest, err := nextFrame(b)
			if err != nil {
				return 0, err
			}
			b = rest
			frags := (len(pkt) + w.frag - 1) / w.frag
			if frags > maxTrunkFrags {
				w.cam.datagramErrors.Add(1)
				continue // (cannot happen with frames below maxTrunkPacket; counted if it does)
			}
			for i := range frags {
				e.addShard(seq, media, uint8(i), uint8(frags), pkt[i*w.frag:min(len(pkt), (i+1)*w.frag)])
			}
			seq++
		}
		dgrams, repair, err := e.send(w.id, w.conn.SendDatagram)
		w.cam.datagrams.Add(dgrams)
		w.cam.fecRepair.Add(repair)
		var tl *quic.DatagramTooLargeError
		if errors.As(err, &tl) {
			// The path's datagrams shrank: the batch again in smaller
			// fragments and new groups (the group cut short is lost).
			smaller := int(tl.MaxDatagramPayloadSize) - fecDataHead
			if smaller < minFragPayload || smaller >= w.frag {
				return 0, fmt.Errorf("%w: %d bytes", errDatagramTooSmal, tl.MaxDatagramPayloadSize)
			}
			w.frag = smaller
			continue
		}
		if err != nil {
			return 0, err
		}
		w.cam.sent.Add(uint64(seq - w.seq))
		w.seq = seq
		return len(frames), nil
	}
}

// reportDatagrams writes a report on a datagram camera's stream every
// trunkReportEvery until out stops; a failed write (the core closed the
// stream) stops out.
func reportDatagrams(st trunkWriter, out *trunkOutput, cam *trunkEdgeCamera, tmo time.Duration) {
	t := time.NewTicker(trunkReportEvery)
	defer t.Stop()
	for {
		select {
		case <-out.done:
			return
		case <-t.C:
			st.SetWriteDeadline(time.Now().Add(tmo))
			if err := writeJSONFrame(st, trunkDatagramReport{Sent: cam.sent.Load()}); err != nil {
				out.stop()
				return
			}
		}
	}
}

// trunkDemux hands the datagrams of one trunk connection to the cameras
// they belong to (the core end). One goroutine per connection reads
// them; each camera's packets are then cleaned on that goroutine.
type trunkDemux struct {
	mu    sync.Mutex
	sinks map[uint32]*datagramSink
}

// trunkCoreDatagrams is the datagram side of a trunkCore.
type trunkCoreDatagrams struct {
	unknown atomic.Uint64 // over every connection
}

// trunkLinkDemux is the demultiplexer of a trunk connection's datagrams.
type trunkLinkDemux struct {
	mu    sync.Mutex
	conn  *quic.Conn
	demux *trunkDemux
}

// demuxFor returns conn's demultiplexer, starting it on first use.
func (l *trunkLink) demuxFor(conn *quic.Conn) *trunkDemux {
	t, m := l.t, &l.demux
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn == conn {
		return m.demux
	}
	d := &trunkDemux{sinks: map[uint32]*datagramSink{}}
	m.conn, m.demux = conn, d
	go func() {
		defer t.p.recoverTrunk("trunk datagram receiver", t.log)
		for {
			b, err := conn.ReceiveDatagram(conn.Context())
			if err != nil {
				return
			}
			if !d.deliver(b) {
				t.dgram.unknown.Add(1)
			}
		}
	}()
	return d
}

// deliver hands one datagram to its camera (by its id; the camera's
// goroutine decodes it); false when none takes it.
func (d *trunkDemux) deliver(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	d.mu.Lock()
	s := d.sinks[binary.BigEndian.Uint32(b)]
	d.mu.Unlock()
	if s == nil {
		return false
	}
	select {
	case s.in <- trunkArrival{b, time.Now()}:
	default:
		s.stats.overflow.Add(1) // (the camera's cleaner is behind: a loss like any other)
	}
	return true
}

func (d *trunkDemux) register(id uint32, s *datagramSink) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sinks[id] != nil {
		return fmt.Errorf("%w: datagram id %d is already in use", errTrunkFrame, id)
	}
	d.sinks[id] = s
	return nil
}

func (d *trunkDemux) unregister(id uint32) {
	d.mu.Lock()
	delete(d.sinks, id)
	d.mu.Unlock()
}

// trunkArrival is one datagram on its way to its camera.
type trunkArrival struct {
	b  []byte
	at time.Time
}

// trunkSinkQueue is how many datagrams wait for one camera's cleaner;
// the demux never waits (quic-go holds only 128 datagrams for it).
const trunkSinkQueue = 4096

// datagramSink reassembles one camera's datagrams into RTP packets and
// feeds them to the camera's stream: the demux queues them on in, and
// the camera's own goroutine (run) calls add.
type datagramSink struct {
	in     chan trunkArrival
	c      *camera
	stats  *trunkCoreCamera
	tracks []*rebuild.Track // by media index
	fail   func(error)      // ends the session (the stream refused a packet)

	next    uint32 // the seq expected next
	started bool
	cur     uint32 // seq being reassembled
	frags   [][]byte
	got     int
	size    int

	// fec, when the edge sends repair datagrams, restores the fragments
	// in order before add (trunk_fec.go); now is take's arrival time.
	fec *fecDecoder
	now time.Time
}

// receive takes the camera's datagrams until ctx ends. The FEC decoder's
// wait for a group's repair ends with its next datagrams or, when none
// come, with a timer.
func (s *datagramSink) receive(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time // when the timer fires (zero: not set)
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case a := <-s.in:
			s.take(a.b, a.at)
		case <-timer.C:
			armed = time.Time{}
		}
		if s.fec == nil {
			continue
		}
		now := time.Now()
		s.now = now
		// (sooner than the timer is set for: a datagram of the next
		// group shortens the wait from fecHoldMax to fecReorder)
		if at := s.fec.expire(now); !at.IsZero() && (armed.IsZero() || at.Before(armed)) {
			timer.Reset(at.Sub(now))
			armed = at
		}
	}
}

// take decodes one datagram of the camera (its id matched).
func (s *datagramSink) take(b []byte, now time.Time) {
	st := s.stats
	st.datagrams.Add(1)
	st.bytes.Add(uint64(len(b)))
	if s.fec != nil {
		s.now = now
		s.fec.add(b, now)
		return
	}
	f, err := parseDatagram(b)
	if err != nil {
		st.malformed.Add(1)
		return
	}
	s.add(f, now)
}

// add reassembles one fragment.
func (s *datagramSink) add(f trunkFragment, now time.Time) {
	st := s.stats
	if int(f.media) >= len(s.tracks) {
		st.malformed.Add(1)
		return
	}
	if s.started && int32(f.seq-s.next) < 0 {
		st.late.Add(1) // a packet already given up (or a duplicate)
		return
	}
	if s.frags == nil || f.seq != s.cur {
		// A newer packet: the one being reassembled (if any) is lost.
		s.cur, s.got, s.size = f.seq, 0, 0
		s.frags = make([][]byte, f.frags)
	}
	if len(s.frags) != int(f.frags) || s.frags[f.frag] != nil {
		st.malformed.Add(1)
		return
	}
	if s.size += len(f.payload); s.size > maxTrunkPacket {
		st.malformed.Add(1)
		s.frags = nil
		return
	}
	// Kept as it is: quic-go hands each datagram over in a slice of its
	// own (ReceiveDatagram), and nothing else refers to it.
	s.frags[f.frag] = f.payload
	if s.got++; s.got < len(s.frags) {
		return
	}
	buf := s.frags[0]
	if len(s.frags) > 1 {
		buf = make([]byte, 0, s.size)
		for _, p := range s.frags {
			buf = append(buf, p...)
		}
	}
	s.frags = nil
	if s.started && f.seq != s.next {
		st.lost.Add(uint64(f.seq - s.next))
		st.keyWaits.Add(1)
		s.c.stream.skipToKey()
	}
	s.started, s.next = true, f.seq+1
	pkt := &rtp.Packet{}
	if err := pkt.Unmarshal(buf); err != nil {
		st.malformed.Add(1)
		return
	}
	tr := s.tracks[f.media]
	if tr == nil {
		s.c.counters.Drop("trunk_media", len(buf))
		return
	}
	st.packets.Add(1)
	s.c.src.packetsIn.Add(1)
	s.c.src.bytesIn.Add(uint64(len(buf)))
	if err := s.c.stream.packet(tr, pkt, now); errors.Is(err, rebuild.ErrInvalidParameters) {
		s.fail(fmt.Errorf("stream refused: %w", err))
	}
}

// skipToKey makes every playing reader of s skip to the next keyframe,
// as when a reader's queue overflows, and forgets the GOP cache: packets
// were lost before the stream saw them (a trunk datagram), so what
// follows up to the next keyframe would only decode as corruption.
func (s *stream) skipToKey() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasVideo {
		return
	}
	for r := range s.readers {
		if r.active {
			r.waitKey, r.slow = true, true
		}
	}
	s.gop.reset()
}

// runDatagrams is the rest of a trunk session whose camera comes in
// datagrams: packets arrive through the connection's demux; the stream
// carries the edge's reports until either end closes it.
func (s *trunkSession) runDatagrams(ctx context.Context, conn *quic.Conn, st *quic.Stream, id uint32, tracks []*rebuild.Track, fec TrunkFEC) (healthy bool, err error) {
	c, t := s.c, s.t
	stats := t.media.camera(s.remote, TrunkDatagram)
	stats.fec.Store(fec)
	var failed atomic.Pointer[error]
	fail := func(err error) {
		if failed.CompareAndSwap(nil, &err) {
			st.CancelRead(0)
		}
	}
	sink := &datagramSink{in: make(chan trunkArrival, trunkSinkQueue), c: c, stats: stats, tracks: tracks, fail: fail}
	if fec.on() {
		sink.fec = &fecDecoder{id: id, st: stats, emit: func(f trunkFragment) { sink.add(f, sink.now) }}
	}
	d := s.link.demuxFor(conn)
	if err := d.register(id, sink); err != nil {
		return false, err
	}
	defer d.unregister(id)
	done := make(chan struct{})
	defer func() { <-done }()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				fail(c.contained("trunk datagram receiver", v))
			}
		}()
		sink.receive(sctx)
	}()
	start, n0 := time.Now(), stats.packets.Load()
	for {
		st.SetReadDeadline(time.Now().Add(t.tmo.Camera))
		var rep trunkDatagramReport
		err := readJSONFrame(st, maxTrunkRequest, &rep)
		if p := failed.Load(); p != nil {
			return false, *p
		}
		if errors.Is(err, errTrunkFrame) || errors.Is(err, errTrunkFrameSize) {
			return false, err
		}
		if err != nil {
			return stats.packets.Load() > n0 && time.Since(start) >= healthySession, fmt.Errorf("trunk stream: %w", err)
		}
		stats.edgeSent.Store(rep.Sent)
	}
}

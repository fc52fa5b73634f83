package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// streamInput is how a source feeds its stream. The camera source
// (source.go) is one kind of source; whatever else brings a camera's media
// (a trunk from an edge proxy) feeds a stream the same way.
type streamInput interface {
	// bind takes the source's media description for a new session and
	// returns the plan whose tracks the source sets up. Readers stay
	// attached when the media is the same as before.
	bind(desc *description.Session) (*rebuild.Plan, error)
	// packet cleans one packet of track t that arrived at arrival and
	// sends the result to the readers. rebuild.ErrInvalidParameters means
	// the source must refuse the stream.
	packet(t *rebuild.Track, pkt *rtp.Packet, arrival time.Time) error
}

var _ streamInput = (*stream)(nil)

// stream is one camera's reader-facing side: the cleaning plan
// (rebuild.Plan), a gortsplib.ServerStream per core listener (the SDP
// readers get), the readers, the GOP cache, the wait for a keyframe and the
// slow-reader policy. It does not know where the packets come from.
type stream struct {
	cfg      Camera
	servers  []*gortsplib.Server // the core listeners, as Proxy.servers
	log      *slog.Logger
	counters *rebuild.Counters

	poisoned      atomic.Bool // a panic was contained: build the next plan afresh
	processErrors atomic.Uint64

	mu       sync.Mutex
	plan     *rebuild.Plan
	hasVideo bool
	streams  []*gortsplib.ServerStream // one per server, same order
	ready    chan struct{}             // closed once streams exist
	readers  map[*reader]struct{}
	gop      gopCache
	fps      fpsMeter
	// each track's RTP-to-wall-clock line (timeline.go), kept while the
	// plan is
	timelines map[*rebuild.Track]*trackTimeline
}

func newStream(cfg Camera, servers []*gortsplib.Server, gopMax int, counters *rebuild.Counters, log *slog.Logger) *stream {
	return &stream{
		cfg: cfg, servers: servers, log: log, counters: counters,
		ready:   make(chan struct{}),
		readers: map[*reader]struct{}{},
		gop:     gopCache{max: gopMax},
	}
}

// bind keeps the reader-facing streams when the camera's media is the
// same as before, and replaces them (closing readers) when it changed.
func (s *stream) bind(desc *description.Session) (*rebuild.Plan, error) {
	s.mu.Lock()
	if s.plan != nil && s.poisoned.Load() {
		// A panic was contained in this plan's cleaner: its state is not
		// to be trusted, so readers start again from a new one.
		s.mu.Unlock()
		s.log.Warn("rebuilding the camera's stream after an internal error; closing its readers")
		s.close("camera stream rebuilt after an internal error")
		s.mu.Lock()
	}
	s.poisoned.Store(false)
	if s.plan != nil {
		err := s.plan.Rebind(desc)
		if err == nil {
			plan := s.plan
			s.mu.Unlock()
			return plan, nil
		}
		s.mu.Unlock()
		s.log.Warn("camera media changed after reconnecting; closing its readers", "reason", redactError(err, s.cfg.URL))
		s.close("camera media changed")
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	plan, err := rebuild.NewPlan(desc, s.cfg.rebuildConfig(), s.counters)
	if err != nil {
		return nil, err
	}
	readerDesc := &description.Session{Medias: plan.Medias()} // no title, no camera URL, no attributes
	var streams []*gortsplib.ServerStream
	for _, srv := range s.servers {
		st := &gortsplib.ServerStream{Server: srv, Desc: readerDesc}
		if err := st.Initialize(); err != nil {
			for _, o := range streams {
				o.Close()
			}
			return nil, fmt.Errorf("reader-facing stream: %w", err)
		}
		streams = append(streams, st)
	}
	s.plan, s.streams = plan, streams
	s.timelines = map[*rebuild.Track]*trackTimeline{}
	s.hasVideo = false
	for _, t := range plan.Tracks {
		if t.Media().Type == description.MediaTypeVideo {
			s.hasVideo = true
		}
	}
	s.gop.reset()
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
	return plan, nil
}

// streamCloseWatcher is an output that must hear when its stream closes
// (closing the reader-facing ServerStreams ends RTSP readers, not others).
type streamCloseWatcher interface{ streamClosed() }

// close closes the reader-facing streams (and so every reader) and
// forgets the plan.
func (s *stream) close(reason string) {
	s.mu.Lock()
	streams := s.streams
	n := len(s.readers)
	for r := range s.readers {
		if w, ok := r.out.(streamCloseWatcher); ok {
			w.streamClosed()
		}
		r.dropStart()
	}
	s.streams, s.plan, s.readers, s.timelines = nil, nil, map[*reader]struct{}{}, nil
	s.gop.reset()
	select {
	case <-s.ready:
		s.ready = make(chan struct{})
	default:
	}
	s.mu.Unlock()
	if n > 0 {
		s.log.Info("closing readers", "readers", n, "reason", reason)
	}
	for _, st := range streams {
		st.Close()
	}
}

// packet cleans one packet and sends the result to every reader.
func (s *stream) packet(t *rebuild.Track, pkt *rtp.Packet, arrival time.Time) error {
	out, keyAt, err := t.Process(pkt)
	if errors.Is(err, rebuild.ErrInvalidParameters) {
		return err
	}
	if err != nil {
		if s.processErrors.Add(1)%1000 == 1 {
			s.log.Debug("packet dropped by the cleaner", "error", err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plan == nil || len(out) == 0 {
		return nil
	}
	// The cleaner flags where a keyframe starts; without video, every
	// packet is a place to start.
	video := t.Media().Type == description.MediaTypeVideo
	tl := s.timelineLocked(t)
	for i, op := range out {
		if video {
			s.fps.observe(op.Timestamp, uint32(t.Media().Formats[0].ClockRate()))
		}
		n := tl.resyncs
		tl.ntp(op.Timestamp, arrival)
		if tl.resyncs != n && (n < 3 || n%1000 == 0) {
			s.log.Info("camera's RTP times jumped; readers' clock for the track re-anchored", "media", t.Media().Type, "resyncs", tl.resyncs)
		}
		tl.lastSeq = op.SequenceNumber
		e := gopEntry{t: t, pkt: op, tl: tl}
		key := !s.hasVideo || (video && i == keyAt)
		if s.hasVideo {
			s.gop.add(e, key && video)
		}
		for r := range s.readers {
			s.sendLocked(r, e, key, arrival)
		}
	}
	return nil
}

// startMax bounds a reader's packets held until its answer to PLAY is out.
func (s *stream) startMax() int { return max(s.gop.max, 1024) }

// sendLocked sends one packet to one reader. Until the reader's answer to
// PLAY is out, its packets wait in r.start, which holds the cached GOP from
// when it was added (stream.add) or starts at the next keyframe: the answer's
// RTP-Info (stream.rtpInfo) names its first packet of each track.
func (s *stream) sendLocked(r *reader, e gopEntry, key bool, arrival time.Time) {
	if !r.active {
		if len(r.start) >= s.startMax() {
			// The answer to PLAY is taking too long: start again from
			// the next keyframe.
			r.skipped.Add(uint64(len(r.start)))
			r.dropStart()
		}
		if len(r.start) == 0 && !key {
			r.skipped.Add(1) // a new reader waits for its first keyframe
			return
		}
		if !e.cached {
			e.pkt = detach(e.pkt) // kept past this dispatch (camera_tap.go)
		}
		r.start = append(r.start, e)
		if !r.out.playing() {
			return
		}
		r.active = true
		for i, se := range r.start {
			if !s.writeLocked(r, se, arrival) {
				// The rest of what it starts with is lost too (it
				// waits for the next keyframe).
				r.dropped.Add(uint64(len(r.start) - i - 1))
				break
			}
		}
		r.dropStart()
		r.start = nil
		return
	}
	if r.waitKey {
		if !key {
			r.dropped.Add(1)
			return
		}
		r.waitKey, r.slow = false, false
	}
	s.writeLocked(r, e, arrival)
}

// writeLocked writes one packet to one reader. When the reader's queue is
// full, the reader skips everything up to the next keyframe (a partial frame
// would only show as corruption) and the skipped packets are counted. It
// reports whether the reader took the packet.
func (s *stream) writeLocked(r *reader, e gopEntry, arrival time.Time) bool {
	full, dropped, err := r.out.write(e.t, e.pkt, arrival, e.tl.stamp(e.pkt.Timestamp))
	switch {
	case full:
		r.dropped.Add(dropped)
		if !r.waitKey {
			s.log.Debug("reader too slow; skipping to the next keyframe", "reader", r.user, "remote", r.remote, "error", err)
		}
		r.waitKey, r.slow = s.hasVideo, true
		return false
	case err != nil:
		// Not the reader's fault (a packet too large for UDP, say).
		r.dropped.Add(dropped)
		if s.processErrors.Add(1)%1000 == 1 {
			s.log.Debug("packet not sent", "reader", r.user, "remote", r.remote, "error", err)
		}
	}
	return true
}

// serverStream returns the reader-facing stream of srv (nil while the
// stream has none), and a channel closed once it has.
func (s *stream) serverStream(srv *gortsplib.Server) (*gortsplib.ServerStream, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.servers {
		if o == srv && i < len(s.streams) {
			return s.streams[i], s.ready
		}
	}
	return nil, s.ready
}

var (
	errCameraDown     = errors.New("camera is not available")
	errTooManyReaders = errors.New("camera has reached max_readers")
)

// add registers a reader that is about to play from st (the reader-facing
// stream it was set up on); it fails when the camera's max_readers is
// reached or the stream changed since.
func (s *stream) add(r *reader, st *gortsplib.ServerStream) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.streams, st) {
		return errCameraDown
	}
	if _, ok := s.readers[r]; ok {
		return nil
	}
	if s.cfg.MaxReaders >= 0 && len(s.readers) >= s.cfg.MaxReaders {
		return errTooManyReaders
	}
	// The reader starts from the GOP cached now (see sendLocked).
	r.start, r.startStore = s.gop.share()
	s.readers[r] = struct{}{}
	return nil
}

// remove forgets a reader and stops its output.
func (s *stream) remove(r *reader) {
	s.mu.Lock()
	if _, ok := s.readers[r]; ok {
		delete(s.readers, r)
		r.dropStart()
	}
	s.mu.Unlock()
	if r.out != nil {
		r.out.stop()
	}
}

// readerCount is the number of attached readers.
func (s *stream) readerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.readers)
}

// readerStatus returns the attached readers' status, in no order.
func (s *stream) readerStatus() []ReaderStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ReaderStatus, 0, len(s.readers))
	for r := range s.readers {
		out = append(out, r.status())
	}
	return out
}

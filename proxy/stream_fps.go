package proxy

import (
	"math"
	"sync/atomic"
)

// fpsMeter measures a camera's frame rate from the RTP timestamps of the
// video packets the cleaner let through: the frames (distinct timestamps)
// seen over a one-second window divided by the media time they span (up
// to the latest timestamp, so that B-frames out of order count right). It
// is the fallback when the SPS declares no timing (most cameras do not).
// observe runs under the stream's mutex; sample runs from Proxy.tick.
type fpsMeter struct {
	// guarded by the stream's mutex
	have        bool
	first, last uint32 // window start, last packet's timestamp
	latest      uint32 // the window's latest timestamp
	clock       uint32
	frames      uint64

	bits atomic.Uint64 // the last sample, float64 bits
}

// observe records one video packet's timestamp.
func (m *fpsMeter) observe(ts, clock uint32) {
	if !m.have || clock != m.clock {
		m.have, m.first, m.last, m.latest, m.clock, m.frames = true, ts, ts, ts, clock, 0
		return
	}
	if ts != m.last {
		m.frames++
		m.last = ts
		if int32(ts-m.latest) > 0 {
			m.latest = ts
		}
	}
}

// sample computes the rate over the window since the last sample and
// starts a new window. Without frames in the window the rate is 0.
func (m *fpsMeter) sample() {
	fps := 0.0
	if span := int32(m.latest - m.first); m.have && m.frames > 0 && span > 0 && m.clock > 0 {
		fps = float64(m.frames) / (float64(span) / float64(m.clock))
	}
	if fps > 1000 {
		fps = 0 // timestamps that make no sense are no measurement
	}
	m.first, m.frames = m.latest, 0
	m.bits.Store(math.Float64bits(fps))
}

// sampleFPS samples the stream's frame rate (once a second).
func (s *stream) sampleFPS() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fps.sample()
}

// value is the last sampled rate.
func (m *fpsMeter) value() float64 { return math.Float64frombits(m.bits.Load()) }

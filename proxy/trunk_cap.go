package proxy

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// errTrunkCap is a packet refused because the trunk is over its
// max_bitrate: the camera skips to its next keyframe.
var errTrunkCap = errors.New("trunk is over its max_bitrate")

// trunkCapQuiet is how long a trunk must go without refusing a packet for
// its over-the-cap episode to end (and be logged as ended).
const trunkCapQuiet = 5 * time.Second

// trunkLimiter enforces one core connection's max_bitrate on the edge, all
// cameras together, with a token bucket of one second's worth of bytes.
//
// The policy, visible in the log, /v1/trunks and the metrics: a camera's
// packet that does not fit in the bucket is refused, and that camera drops
// the rest of its GOP (it skips to its next keyframe, as a slow reader
// does); a camera that is skipping starts its next GOP only while the
// bucket is at least half full, so that cameras already sending a GOP
// finish it before a skipped one comes back. Which cameras drop is
// whichever run into the empty bucket (no camera has priority; it depends
// on when each one's GOPs start): over the cap, cameras lose whole GOPs in
// turn, and none ever shows a partial frame.
type trunkLimiter struct {
	bps   int64   // the cap, in bits per second
	rate  float64 // bytes per second
	burst float64
	log   *slog.Logger
	now   func() time.Time // (a test hook)

	episodes atomic.Uint64 // times the cap started to bite

	mu       sync.Mutex
	tokens   float64
	last     time.Time
	over     bool      // in an episode
	lastDrop time.Time // last refusal
	epDrops  uint64    // GOPs dropped in the current episode
	epCams   []string  // cameras that dropped in the current episode
}

// newTrunkLimiter returns a limiter of bps bits per second, or nil (no
// cap) when bps is not positive.
// bitrate is the cap in bits per second; 0 for no limiter.
func (l *trunkLimiter) bitrate() int64 {
	if l == nil {
		return 0
	}
	return l.bps
}

func newTrunkLimiter(bps int64, log *slog.Logger) *trunkLimiter {
	if bps <= 0 {
		return nil
	}
	rate := float64(bps) / 8
	burst := max(rate, 64<<10)
	return &trunkLimiter{bps: bps, rate: rate, burst: burst, tokens: burst, log: log, now: time.Now}
}

// admit takes n bytes of camera cam from the bucket; resume means the
// packet starts a GOP after a skip. False: the camera must skip to its
// next keyframe (counted by the caller).
func (l *trunkLimiter) admit(cam string, n int, resume bool) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	need := float64(n)
	if resume {
		need = max(need, l.burst/2)
	}
	if l.tokens >= need {
		l.tokens -= float64(n)
		if l.over && now.Sub(l.lastDrop) >= trunkCapQuiet {
			l.log.Info("trunk back under its max_bitrate", "max_bitrate", Bitrate(int64(l.rate*8)),
				"gops_dropped", l.epDrops, "cameras", l.epCams)
			l.over, l.epDrops, l.epCams = false, 0, nil
		}
		return true
	}
	l.lastDrop = now
	l.epDrops++
	if !slices.Contains(l.epCams, cam) && len(l.epCams) < 64 {
		l.epCams = append(l.epCams, cam)
	}
	if !l.over {
		l.over = true
		l.episodes.Add(1)
		l.log.Warn("trunk over its max_bitrate: cameras drop whole GOPs (skip to their next keyframe) until it is back under",
			"max_bitrate", Bitrate(int64(l.rate*8)), "first_camera", cam)
	}
	return false
}

// overNow reports whether the limiter is in an over-the-cap episode.
func (l *trunkLimiter) overNow() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.over && l.now().Sub(l.lastDrop) < trunkCapQuiet
}

// episodeCount is the number of times the cap started to bite.
func (l *trunkLimiter) episodeCount() uint64 {
	if l == nil {
		return 0
	}
	return l.episodes.Load()
}

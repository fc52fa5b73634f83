package egress

import (
	"net/netip"
	"sync/atomic"
)

// camState is detection state kept per camera and bounded twice: maxCam
// entries per camera, then max in total. The per-camera bound comes first,
// so a camera flooding new keys (destinations, domains) recycles its own
// state and never takes another camera's:
//
//   - a camera at maxCam gives up one of its own entries (or, with
//     keepOld, the new entry is not kept);
//   - at max, a stale entry of any camera goes first (score < 0: a window
//     that has ended); else the camera holding the most entries gives one
//     up, provided it holds at least two more than the new entry's camera
//     would; else the new entry is not kept.
//
// Whatever is given up or not kept is counted in evictions. score ranks
// entries at time now: of the first few looked at, the lowest goes.
type camState[K comparable, V any] struct {
	cams        map[netip.Addr]map[K]V
	n           int // entries, all cameras
	maxCam, max int
	keepOld     bool
	score       func(v V, now int64) int64
	evictions   *atomic.Uint64
	// dropped, when set, is told of each entry given up to make room.
	dropped func(V)
}

// camStateLook is how many entries are looked at to pick one to drop.
const camStateLook = 16

func newCamState[K comparable, V any](maxCam, max int, score func(V, int64) int64, evictions *atomic.Uint64) *camState[K, V] {
	return &camState[K, V]{cams: map[netip.Addr]map[K]V{}, maxCam: maxCam, max: max, score: score, evictions: evictions}
}

func (s *camState[K, V]) get(cam netip.Addr, k K) (V, bool) {
	v, ok := s.cams[cam][k]
	return v, ok
}

// put stores v under (cam, k), making room first when k is new. It reports
// false when the new entry could not be kept.
func (s *camState[K, V]) put(cam netip.Addr, k K, v V, now int64) bool {
	cs := s.cams[cam]
	if _, ok := cs[k]; ok {
		cs[k] = v
		return true
	}
	return s.add(cam, cs, k, v, now)
}

// add is put for a key k that cam's entries, cs (s.cams[cam], nil when
// it has none), do not hold: one map lookup fewer for a caller that
// looked.
func (s *camState[K, V]) add(cam netip.Addr, cs map[K]V, k K, v V, now int64) bool {
	if !s.makeRoom(cam, len(cs), now) {
		s.evictions.Add(1)
		return false
	}
	if len(cs) == 0 { // none, or makeRoom dropped the last one (and the map)
		if cs = s.cams[cam]; cs == nil {
			cs = map[K]V{}
			s.cams[cam] = cs
		}
	}
	s.n++
	cs[k] = v
	return true
}

func (s *camState[K, V]) delete(cam netip.Addr, k K) {
	cs := s.cams[cam]
	if _, ok := cs[k]; !ok {
		return
	}
	delete(cs, k)
	s.n--
	if len(cs) == 0 {
		delete(s.cams, cam)
	}
}

func (s *camState[K, V]) makeRoom(cam netip.Addr, have int, now int64) bool {
	if have >= s.maxCam {
		if s.keepOld {
			return false
		}
		s.dropLowest(cam, now)
		return true
	}
	if s.n < s.max {
		return true
	}
	// A stale entry of any camera first.
	looked := 0
	for c, cs := range s.cams {
		for k, v := range cs {
			if s.score(v, now) < 0 {
				s.drop(c, k, v)
				return true
			}
			if looked++; looked >= camStateLook {
				break
			}
		}
		if looked >= camStateLook {
			break
		}
	}
	var big netip.Addr
	most := 0
	for c, cs := range s.cams {
		if len(cs) > most {
			big, most = c, len(cs)
		}
	}
	if most < have+2 && big != cam {
		return false // no camera holds more than this one would: keep what is there
	}
	s.dropLowest(big, now)
	return true
}

// dropLowest drops the lowest-scored of the first entries of cam's.
func (s *camState[K, V]) dropLowest(cam netip.Addr, now int64) {
	var (
		victim K
		low    int64
		found  bool
		looked int
	)
	for k, v := range s.cams[cam] {
		if sc := s.score(v, now); !found || sc < low {
			victim, low, found = k, sc, true
		}
		if looked++; low < 0 || looked >= camStateLook {
			break
		}
	}
	if found {
		s.drop(cam, victim, s.cams[cam][victim])
	}
}

// drop gives up (cam, k), whose value is v, to make room.
func (s *camState[K, V]) drop(cam netip.Addr, k K, v V) {
	s.delete(cam, k)
	s.evictions.Add(1)
	if s.dropped != nil {
		s.dropped(v)
	}
}

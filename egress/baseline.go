package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// maxBaselineFile bounds the baseline file read at start.
const maxBaselineFile = 64 << 20

// Baseline is the set of destinations each camera has been seen to contact,
// persisted as JSON so new-destination survives restarts. Destinations are
// keyed by camera, address, protocol and service port.
type Baseline struct {
	path    string
	learn   time.Duration
	max     int
	created int64 // Unix ns of the first destination learned; 0 until then
	// dests holds each camera's destinations and when they were first seen:
	// at most maxBaselinePerCamera per camera (beyond it a camera's new
	// destinations are reported every time, not learned), then max in all
	// (a camera holding at least two more than another gives one up).
	dests   *camState[baseDest, int64]
	dropped atomic.Uint64 // destinations not learned or given up, until an engine counts them
	dirty   bool
	// nextSave is the engine time of the next periodic save.
	nextSave int64
}

type baseKey struct {
	cam, dst netip.Addr
	proto    uint8
	port     uint16
}

// baseDest is a baseKey without its camera.
type baseDest struct {
	dst   netip.Addr
	proto uint8
	port  uint16
}

// maxBaselinePerCamera bounds the destinations learned per camera, so that
// a camera contacting ever new destinations cannot use up the baseline's
// room the other cameras learn in.
const maxBaselinePerCamera = 4096

func newBaselineDests(b *Baseline) {
	b.dests = newCamState[baseDest](min(maxBaselinePerCamera, b.max), b.max, func(int64, int64) int64 { return 0 }, &b.dropped)
	b.dests.keepOld = true
}

type baselineFile struct {
	Version int             `json:"version"`
	Created time.Time       `json:"created"`
	Entries []baselineEntry `json:"entries"`
}

type baselineEntry struct {
	Camera    string    `json:"camera"`
	Dst       string    `json:"dst"`
	Proto     uint8     `json:"proto"`
	Port      uint16    `json:"port"`
	FirstSeen time.Time `json:"first_seen"`
}

// LoadBaseline opens the baseline at path (a missing file starts an empty
// one). New destinations are learned silently for learn after the baseline's
// first entry; max bounds its size (0: 100000).
func LoadBaseline(path string, learn time.Duration, max int) (*Baseline, error) {
	if max <= 0 {
		max = 100000
	}
	b := &Baseline{path: path, learn: learn, max: max}
	newBaselineDests(b)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("egress: baseline: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBaselineFile+1))
	if err != nil {
		return nil, fmt.Errorf("egress: baseline %s: %w", path, err)
	}
	if len(data) > maxBaselineFile {
		return nil, fmt.Errorf("egress: baseline %s is larger than %d MiB", path, maxBaselineFile>>20)
	}
	var bf baselineFile
	if err := json.Unmarshal(data, &bf); err != nil {
		return nil, fmt.Errorf("egress: baseline %s: %w (remove it or run with --reset-baseline)", path, err)
	}
	if bf.Version != 1 {
		return nil, fmt.Errorf("egress: baseline %s: version %d is not supported", path, bf.Version)
	}
	if !bf.Created.IsZero() {
		b.created = bf.Created.UnixNano()
	}
	for i, en := range bf.Entries {
		cam, err1 := netip.ParseAddr(en.Camera)
		dst, err2 := netip.ParseAddr(en.Dst)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("egress: baseline %s: entry %d: bad address", path, i+1)
		}
		b.dests.put(cam, baseDest{dst: dst, proto: en.Proto, port: en.Port}, en.FirstSeen.UnixNano(), 0)
	}
	return b, nil
}

// resetBaseline removes the baseline file at path (missing is fine).
func resetBaseline(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("egress: resetting the baseline: %w", err)
	}
	return nil
}

// Len returns the number of learned destinations.
func (b *Baseline) Len() int { return b.dests.n }

// seen records a contact and reports whether it was new and whether the
// baseline is still in its learning period.
func (b *Baseline) seen(k baseKey, ts int64) (isNew, learning bool) {
	d := baseDest{dst: k.dst, proto: k.proto, port: k.port}
	if _, ok := b.dests.get(k.cam, d); ok {
		return false, false
	}
	if b.created == 0 {
		b.created = ts
	}
	learning = ts < b.created+int64(b.learn)
	if b.dests.put(k.cam, d, ts, ts) {
		b.dirty = true
	} // else reported, not remembered (counted)
	return true, learning
}

// maybeSave saves at most once a minute of engine time.
func (b *Baseline) maybeSave(now int64) error {
	if !b.dirty || now < b.nextSave {
		return nil
	}
	b.nextSave = now + int64(time.Minute)
	return b.Save()
}

// Save writes the baseline atomically (temporary file and rename).
func (b *Baseline) Save() error {
	if !b.dirty {
		return nil
	}
	bf := baselineFile{Version: 1, Entries: make([]baselineEntry, 0, b.dests.n)}
	if b.created != 0 {
		bf.Created = time.Unix(0, b.created).UTC()
	}
	for cam, cs := range b.dests.cams {
		for k, t := range cs {
			bf.Entries = append(bf.Entries, baselineEntry{Camera: cam.String(), Dst: k.dst.String(), Proto: k.proto, Port: k.port, FirstSeen: time.Unix(0, t).UTC()})
		}
	}
	slices.SortFunc(bf.Entries, func(x, y baselineEntry) int {
		return strings.Compare(fmt.Sprint(x.Camera, x.Dst, x.Proto, x.Port), fmt.Sprint(y.Camera, y.Dst, y.Proto, y.Port))
	})
	data, err := json.MarshalIndent(bf, "", " ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(b.path)
	tmp, err := os.CreateTemp(dir, ".baseline-*")
	if err != nil {
		return fmt.Errorf("egress: saving the baseline: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("egress: saving the baseline: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("egress: saving the baseline: %w", err)
	}
	if err := os.Rename(tmp.Name(), b.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("egress: saving the baseline: %w", err)
	}
	b.dirty = false
	return nil
}

// Package rebuild turns a camera's RTP media into clean reader-facing media:
// only video and (optionally) audio cross, and every packet is either rebuilt
// from validated access units (mode rebuild) or has its header rewritten
// (mode passthrough). It is the seam between the camera-facing and the
// reader-facing halves of the proxy: the proxy asks for a Plan when a camera
// session starts, and feeds every camera packet through the plan's Tracks.
package rebuild

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// Mode is how a camera's packets are cleaned.
type Mode string

// Modes.
const (
	// ModeRebuild depacketizes to access units, keeps an allow-list of NAL unit
	// types, validates parameter sets and re-packetizes.
	ModeRebuild Mode = "rebuild"
	// ModePassthrough forwards RTP payloads with a rewritten header (no
	// extensions, padding or CSRCs; fresh SSRC and sequence numbers).
	ModePassthrough Mode = "passthrough"
)

// AudioPolicy says whether audio crosses.
type AudioPolicy string

// Audio policies.
const (
	AudioKeep AudioPolicy = "keep"
	AudioDrop AudioPolicy = "drop"
)

// Config is the per-camera cleaning configuration.
type Config struct {
	// Mode defaults to ModeRebuild.
	Mode Mode
	// KeepSEI lists SEI payload types (by name, e.g. "recovery_point") that
	// survive in rebuild mode. Every other SEI is dropped.
	KeepSEI []string
	// Audio defaults to AudioKeep.
	Audio AudioPolicy
}

// ErrMediaChanged is returned by Plan.Rebind when a reconnected camera offers
// media that cannot continue the reader-facing tracks.
var ErrMediaChanged = errors.New("rebuild: camera media changed")

// Counters count what was dropped, by reason (sei, nal_type, extension,
// padding, csrc, media, invalid_sps, ...). Safe for concurrent use.
type Counters struct {
	m sync.Map // reason -> *Count
}

// Count is a number of dropped units and their bytes.
type Count struct {
	Units atomic.Uint64
	Bytes atomic.Uint64
}

// Drop adds one dropped unit of n bytes for reason.
func (c *Counters) Drop(reason string, n int) {
	if c == nil {
		return
	}
	v, ok := c.m.Load(reason)
	if !ok {
		v, _ = c.m.LoadOrStore(reason, new(Count))
	}
	cnt := v.(*Count)
	cnt.Units.Add(1)
	cnt.Bytes.Add(uint64(n))
}

// Snapshot returns the current counts by reason.
func (c *Counters) Snapshot() map[string][2]uint64 {
	out := map[string][2]uint64{}
	c.m.Range(func(k, v any) bool {
		cnt := v.(*Count)
		out[k.(string)] = [2]uint64{cnt.Units.Load(), cnt.Bytes.Load()}
		return true
	})
	return out
}

// Plan is the set of tracks that cross for one camera.
type Plan struct {
	cfg      Config
	counters *Counters
	Tracks   []*Track
}

// Track cleans one camera media into one reader-facing media.
type Track struct {
	camMedia  *description.Media
	camFormat format.Format
	media     *description.Media
	counters  *Counters
	seq       uint16
}

// NewPlan selects the camera medias that may cross and builds their tracks.
// It fails when nothing can cross.
func NewPlan(cam *description.Session, cfg Config, c *Counters) (*Plan, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeRebuild
	}
	if cfg.Audio == "" {
		cfg.Audio = AudioKeep
	}
	p := &Plan{cfg: cfg, counters: c}
	for _, m := range cam.Medias {
		if m.IsBackChannel {
			c.Drop("media", 0)
			continue
		}
		if m.Type != description.MediaTypeVideo && (m.Type != description.MediaTypeAudio || cfg.Audio == AudioDrop) {
			c.Drop("media", 0)
			continue
		}
		if len(m.Formats) == 0 {
			continue
		}
		f := m.Formats[0]
		p.Tracks = append(p.Tracks, &Track{
			camMedia:  m,
			camFormat: f,
			media:     &description.Media{Type: m.Type, Formats: []format.Format{f}},
			counters:  c,
		})
	}
	if len(p.Tracks) == 0 {
		return nil, fmt.Errorf("rebuild: the camera offers no video or audio track that may cross")
	}
	return p, nil
}

// Medias returns the reader-facing medias, in track order.
func (p *Plan) Medias() []*description.Media {
	ms := make([]*description.Media, len(p.Tracks))
	for i, t := range p.Tracks {
		ms[i] = t.media
	}
	return ms
}

// Rebind points the plan's tracks at a new camera session (after a
// reconnect). The reader-facing medias stay the same; it returns an error
// wrapping ErrMediaChanged when the new session cannot feed them.
func (p *Plan) Rebind(cam *description.Session) error {
	np, err := NewPlan(cam, p.cfg, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMediaChanged, err)
	}
	if len(np.Tracks) != len(p.Tracks) {
		return fmt.Errorf("%w: %d tracks instead of %d", ErrMediaChanged, len(np.Tracks), len(p.Tracks))
	}
	for i, t := range np.Tracks {
		old := p.Tracks[i]
		if t.camFormat.RTPMap() != old.camFormat.RTPMap() {
			return fmt.Errorf("%w: track %d is %s instead of %s", ErrMediaChanged, i, t.camFormat.RTPMap(), old.camFormat.RTPMap())
		}
		old.camMedia, old.camFormat = t.camMedia, t.camFormat
	}
	return nil
}

// CameraMedia is the camera-side media this track reads.
func (t *Track) CameraMedia() *description.Media { return t.camMedia }

// CameraFormat is the camera-side format this track reads.
func (t *Track) CameraFormat() format.Format { return t.camFormat }

// Media is the reader-facing media this track writes.
func (t *Track) Media() *description.Media { return t.media }

// Process cleans one camera packet. It returns the packets to send to readers
// (possibly none) and whether the first of them starts a random-access unit
// (a keyframe: where a new reader can start). The returned packets are owned
// by the caller.
//
// This seed implementation only rewrites headers; package rebuild's full
// implementation replaces it.
func (t *Track) Process(pkt *rtp.Packet) ([]*rtp.Packet, bool, error) {
	out := &rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			Marker:         pkt.Marker,
			PayloadType:    pkt.PayloadType,
			SequenceNumber: t.seq,
			Timestamp:      pkt.Timestamp,
		},
		Payload: pkt.Payload,
	}
	t.seq++
	if pkt.Extension {
		t.counters.Drop("extension", 0)
	}
	return []*rtp.Packet{out}, false, nil
}

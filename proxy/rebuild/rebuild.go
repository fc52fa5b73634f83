// Package rebuild turns a camera's RTP media into clean reader-facing media:
// only video and (optionally) audio cross, and every packet is either rebuilt
// from validated access units (mode rebuild) or has its header rewritten
// (mode passthrough). It is the seam between the camera-facing and the
// reader-facing halves of the proxy: the proxy asks for a Plan when a camera
// session starts, and feeds every camera packet through the plan's Tracks.
//
// In rebuild mode an H.264/H.265 track is depacketized to access units, each
// NAL unit is checked against an allow-list (parameter sets and slices), SEI
// is dropped unless Config.KeepSEI names its payload type, SPS/PPS/VPS are
// validated (absurd sizes, levels, reference counts or malformed syntax are
// refused with ErrInvalidParameters), and the access unit is re-packetized
// (packetization-mode 1, at most 1462-byte packets) with fresh sequence
// numbers and a timestamp base that stays continuous across camera
// reconnects. An MJPEG (RFC 2435) track is reassembled frame by frame, the
// JPEG's structure is validated, APPn/COM segments and data after EOI are
// dropped (they can carry anything, as SEI can), and the frame is
// re-packetized; every frame is a keyframe. Audio (AAC, G.711, Opus) gets
// the passthrough header rewrite in both modes. The reader-facing formats are built here from
// validated parameters, never copied from the camera.
package rebuild

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
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
	// KeepSEI lists SEI payload types (by name, e.g. "recovery_point"; see
	// SEINames) that survive in rebuild mode. Every other SEI is dropped.
	// "user_data_unregistered=<uuid>" keeps the user data of one UUID only.
	KeepSEI []string
	// Audio defaults to AudioKeep.
	Audio AudioPolicy
	// AUD, in rebuild mode, starts every access unit with a freshly written
	// access unit delimiter. It defaults to false (the camera's AUDs are
	// dropped and none is written).
	AUD bool
}

// Validate checks the configuration (an empty Mode or Audio is valid: it
// takes the default). A configuration loader calls it so a bad keep_sei
// entry is reported when the file is read, not when the camera connects.
func (c Config) Validate() error {
	switch c.Mode {
	case "", ModeRebuild, ModePassthrough:
	default:
		return fmt.Errorf("rebuild: mode %q: want rebuild or passthrough", c.Mode)
	}
	switch c.Audio {
	case "", AudioKeep, AudioDrop:
	default:
		return fmt.Errorf("rebuild: audio %q: want keep or drop", c.Audio)
	}
	if len(c.KeepSEI) > 0 && c.Mode == ModePassthrough {
		return errors.New("rebuild: keep_sei only applies to mode rebuild (passthrough keeps every SEI)")
	}
	_, err := parseKeepSEI(c.KeepSEI)
	return err
}

// ErrMediaChanged is returned by Plan.Rebind when a reconnected camera offers
// media that cannot continue the reader-facing tracks.
var ErrMediaChanged = errors.New("rebuild: camera media changed")

// Counters count what was dropped, by reason (sei, nal_type, extension,
// padding, csrc, media, invalid_sps, ...). Safe for concurrent use.
type Counters struct {
	m sync.Map // reason -> *Count
	// fixed caches the *Count of the reasons this package drops for
	// (dropReasons order), so a drop per packet costs no map lookup.
	fixed [len(dropReasons)]atomic.Pointer[Count]
}

// dropReasons are the reasons this package counts; reasonIndex maps them
// to their index.
var dropReasons = [...]string{"extension", "padding", "csrc", "payload_type", "malformed", "oversized",
	"sei", "nal_type", "lost", "au_size", "before_keyframe", "nal_count", "invalid_sps", "media",
	"jpeg_segment", "jpeg_trailing", "jpeg_invalid"}

func reasonIndex(r string) int {
	switch r {
	case "extension":
		return 0
	case "padding":
		return 1
	case "csrc":
		return 2
	case "payload_type":
		return 3
	case "malformed":
		return 4
	case "oversized":
		return 5
	case "sei":
		return 6
	case "nal_type":
		return 7
	case "lost":
		return 8
	case "au_size":
		return 9
	case "before_keyframe":
		return 10
	case "nal_count":
		return 11
	case "invalid_sps":
		return 12
	case "media":
		return 13
	case "jpeg_segment":
		return 14
	case "jpeg_trailing":
		return 15
	case "jpeg_invalid":
		return 16
	}
	return -1
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
	cnt := c.count(reason)
	cnt.Units.Add(1)
	cnt.Bytes.Add(uint64(n))
}

// count returns the Count of reason, created on first use.
func (c *Counters) count(reason string) *Count {
	i := reasonIndex(reason)
	if i >= 0 {
		if cnt := c.fixed[i].Load(); cnt != nil {
			return cnt
		}
	}
	v, ok := c.m.Load(reason)
	if !ok {
		v, _ = c.m.LoadOrStore(reason, new(Count))
	}
	cnt := v.(*Count)
	if i >= 0 {
		c.fixed[i].Store(cnt) // racing stores write the same pointer
	}
	return cnt
}

// Snapshot returns the current counts by reason: [units, bytes].
func (c *Counters) Snapshot() map[string][2]uint64 {
	out := map[string][2]uint64{}
	if c == nil {
		return out
	}
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
	sei      []seiRule
	counters *Counters
	Tracks   []*Track
}

// Track cleans one camera media into one reader-facing media.
type Track struct {
	mu        sync.Mutex
	camMedia  *description.Media
	camFormat format.Format
	media     *description.Media
	counters  *Counters
	cfg       Config
	sei       []seiRule

	kind      trackKind
	codec     videoCodec // video tracks with NAL units
	outPT     uint8
	clock     uint32
	seq       uint16
	ts        tsMapper
	info      videoInfo // from the validated SPS (0 when unknown)
	params    params    // current validated parameter sets
	video     *videoRebuilder
	mjpeg     *mjpegRebuilder
	lastKeyTS uint32
	haveKey   bool
	one       [1]*rtp.Packet // the slice passthrough returns
}

type trackKind uint8

const (
	kindRebuild     trackKind = iota + 1 // H.264/H.265 in rebuild mode
	kindPassthrough                      // header rewrite (H.264/H.265/MJPEG passthrough, audio)
	kindMJPEG                            // MJPEG in rebuild mode
)

// params are the parameter sets in force, already validated.
type params struct{ vps, sps, pps []byte }

// NewPlan selects the camera medias that may cross and builds their tracks.
// It fails when nothing can cross, when KeepSEI names an unknown SEI type,
// or (wrapping ErrInvalidParameters) when the camera's SDP carries an
// invalid parameter set.
func NewPlan(cam *description.Session, cfg Config, c *Counters) (*Plan, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeRebuild
	}
	if cfg.Audio == "" {
		cfg.Audio = AudioKeep
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rules, err := parseKeepSEI(cfg.KeepSEI)
	if err != nil {
		return nil, err
	}
	p := &Plan{cfg: cfg, sei: rules, counters: c}
	if cam == nil {
		return nil, errors.New("rebuild: no camera session description")
	}
	hasVideo := false
	for i, m := range cam.Medias {
		if m.IsBackChannel {
			c.Drop("media", 0)
			continue
		}
		if m.Type == description.MediaTypeAudio && cfg.Audio == AudioDrop {
			c.Drop("media", 0)
			continue
		}
		if m.Type != description.MediaTypeVideo && m.Type != description.MediaTypeAudio {
			c.Drop("media", 0) // application/* (ONVIF metadata), text, ...
			continue
		}
		if m.Type == description.MediaTypeVideo && hasVideo {
			c.Drop("media", 0) // one video track: a second one could carry anything
			continue
		}
		t, err := p.newTrack(m)
		if err != nil {
			if errors.Is(err, ErrInvalidParameters) {
				c.Drop("invalid_sps", 0)
				return nil, fmt.Errorf("rebuild: media %d (%s): %w", i, m.Type, err)
			}
			c.Drop("media", 0)
			continue
		}
		if t == nil {
			c.Drop("media", 0)
			continue
		}
		if m.Type == description.MediaTypeVideo {
			hasVideo = true
		}
		p.Tracks = append(p.Tracks, t)
	}
	if len(p.Tracks) == 0 {
		return nil, fmt.Errorf("rebuild: the camera offers no video or audio track that may cross")
	}
	return p, nil
}

// newTrack builds the track for the first usable format of m, or returns
// nil when none may cross.
func (p *Plan) newTrack(m *description.Media) (*Track, error) {
	for _, f := range m.Formats {
		t := &Track{
			camMedia:  m,
			camFormat: f,
			counters:  p.counters,
			cfg:       p.cfg,
			sei:       p.sei,
			seq:       uint16(rand.Uint32()),
			clock:     uint32(f.ClockRate()),
		}
		t.ts.offset = rand.Uint32()
		out, err := t.readerFormat(f)
		if err != nil {
			return nil, err
		}
		if out == nil {
			continue
		}
		t.outPT = out.PayloadType()
		t.media = &description.Media{Type: m.Type, Formats: []format.Format{out}}
		_, isJPEG := out.(*format.MJPEG)
		switch {
		case t.codec != 0 && p.cfg.Mode == ModeRebuild:
			t.kind = kindRebuild
			if err := t.initRebuilder(); err != nil {
				return nil, err
			}
		case isJPEG && p.cfg.Mode == ModeRebuild:
			t.kind = kindMJPEG
			if err := t.initMJPEG(); err != nil {
				return nil, err
			}
		default:
			t.kind = kindPassthrough
		}
		return t, nil
	}
	return nil, nil
}

// readerFormat builds the reader-facing format for a camera format, from
// validated values only, or returns nil for a format that may not cross.
func (t *Track) readerFormat(f format.Format) (format.Format, error) {
	switch f := f.(type) {
	case *format.H264:
		return t.readerH264(f)
	case *format.H265:
		return t.readerH265(f)
	case *format.MJPEG:
		return &format.MJPEG{}, nil
	case *format.G711:
		return readerG711(f), nil
	case *format.MPEG4Audio:
		if f.Config == nil || f.SizeLength != 13 || f.IndexLength != 3 || f.IndexDeltaLength != 3 {
			return nil, nil // only the usual AAC-hbr layout
		}
		cfg := *f.Config
		if cfg.SampleRate < 8000 || cfg.SampleRate > 96000 || cfg.ChannelConfig < 1 || cfg.ChannelConfig > 7 {
			return nil, nil
		}
		return &format.MPEG4Audio{PayloadTyp: 97, ProfileLevelID: 1, Config: &cfg,
			SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}, nil
	case *format.Opus:
		if f.ChannelCount < 1 || f.ChannelCount > 2 {
			return nil, nil
		}
		return &format.Opus{PayloadTyp: 111, ChannelCount: f.ChannelCount}, nil
	}
	return nil, nil
}

// readerH264 is the reader-facing H.264 format (packetization mode 1) with
// the camera's parameter sets from the SDP, validated.
func (t *Track) readerH264(f *format.H264) (format.Format, error) {
	t.codec = codecH264
	sps, pps := f.SPS, f.PPS
	out := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	if sps != nil {
		info, err := validateH264SPS(sps)
		if err != nil {
			return nil, fmt.Errorf("camera SDP: %w", err)
		}
		t.info, t.params.sps, out.SPS = info, bytes.Clone(sps), bytes.Clone(sps)
	}
	if pps != nil {
		if err := validateH264PPS(pps); err != nil {
			return nil, fmt.Errorf("camera SDP: %w", err)
		}
		t.params.pps, out.PPS = bytes.Clone(pps), bytes.Clone(pps)
	}
	return out, nil
}

// readerH265 is the reader-facing H.265 format with the camera's parameter
// sets from the SDP, validated; nil with DONL.
func (t *Track) readerH265(f *format.H265) (format.Format, error) {
	if f.MaxDONDiff != 0 {
		return nil, nil // DONL is not supported by gortsplib's depacketizers either
	}
	t.codec = codecH265
	vps, sps, pps := f.VPS, f.SPS, f.PPS
	out := &format.H265{PayloadTyp: 96}
	if vps != nil {
		if err := validateH265VPS(vps); err != nil {
			return nil, fmt.Errorf("camera SDP: %w", err)
		}
		t.params.vps, out.VPS = bytes.Clone(vps), bytes.Clone(vps)
	}
	if sps != nil {
		info, err := validateH265SPS(sps)
		if err != nil {
			return nil, fmt.Errorf("camera SDP: %w", err)
		}
		t.info, t.params.sps, out.SPS = info, bytes.Clone(sps), bytes.Clone(sps)
	}
	if pps != nil {
		if err := validateH265PPS(pps); err != nil {
			return nil, fmt.Errorf("camera SDP: %w", err)
		}
		t.params.pps, out.PPS = bytes.Clone(pps), bytes.Clone(pps)
	}
	return out, nil
}

// readerG711 is the reader-facing G.711 format (static payload types for
// 8 kHz mono); nil for rates and channels recorders do not take.
func readerG711(f *format.G711) format.Format {
	if f.SampleRate < 8000 || f.SampleRate > 48000 || f.ChannelCount < 1 || f.ChannelCount > 2 {
		return nil
	}
	out := &format.G711{MULaw: f.MULaw, SampleRate: f.SampleRate, ChannelCount: f.ChannelCount, PayloadTyp: 97}
	if f.SampleRate == 8000 && f.ChannelCount == 1 {
		out.PayloadTyp = 8
		if f.MULaw {
			out.PayloadTyp = 0
		}
	}
	return out
}

// Medias returns the reader-facing medias, in track order.
func (p *Plan) Medias() []*description.Media {
	ms := make([]*description.Media, len(p.Tracks))
	for i, t := range p.Tracks {
		ms[i] = t.media
	}
	return ms
}

// Config returns the configuration in force (with defaults filled).
func (p *Plan) Config() Config { return p.cfg }

// Rebind points the plan's tracks at a new camera session (after a
// reconnect). The reader-facing medias stay the same, sequence numbers and
// timestamps continue where they stopped; it returns an error wrapping
// ErrMediaChanged when the new session cannot feed them.
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
		if t.media.Formats[0].RTPMap() != old.media.Formats[0].RTPMap() {
			return fmt.Errorf("%w: track %d is %s instead of %s", ErrMediaChanged, i,
				t.media.Formats[0].RTPMap(), old.media.Formats[0].RTPMap())
		}
		if t.info != (videoInfo{}) && old.info != (videoInfo{}) && t.info != old.info {
			return fmt.Errorf("%w: track %d is %dx%d instead of %dx%d", ErrMediaChanged, i,
				t.info.width, t.info.height, old.info.width, old.info.height)
		}
	}
	for i, t := range np.Tracks {
		old := p.Tracks[i]
		old.mu.Lock()
		old.camMedia, old.camFormat = t.camMedia, t.camFormat
		old.ts.rebase = true
		if old.video != nil {
			// Wait for a keyframe: pictures from the new session may not
			// reference the old one's.
			old.video.asm.reset()
			old.video.started = false
			if t.params.sps != nil {
				old.params = t.params
			}
		}
		if old.mjpeg != nil {
			if old.mjpeg.pending > 0 {
				old.counters.Drop("lost", old.mjpeg.pending)
			}
			old.mjpeg.reset()
		}
		old.mu.Unlock()
	}
	return nil
}

// CameraMedia is the camera-side media this track reads.
func (t *Track) CameraMedia() *description.Media {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.camMedia
}

// CameraFormat is the camera-side format this track reads.
func (t *Track) CameraFormat() format.Format {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.camFormat
}

// Media is the reader-facing media this track writes.
func (t *Track) Media() *description.Media { return t.media }

// NoKey is Process's key index when no returned packet starts a
// random-access unit.
const NoKey = -1

// Process cleans one camera packet. It returns the packets to send to readers
// (possibly none) and key, the index of the packet that starts a
// random-access unit (a keyframe: where a new reader can start, and where a
// GOP cache starts again), or NoKey. Package rebuild is the one place that
// knows codecs: a keyframe is flagged once, on the first packet of its
// access unit (the last one when a call returns two). The returned packets are owned
// by the caller and stay valid for as long as it keeps them; their payloads
// may share memory with pkt's, with earlier camera packets' (rebuild mode
// forwards a camera's FU payloads unchanged when they are byte for byte
// what it would build) and with other returned packets', so neither camera
// nor returned payloads may be modified afterwards (gortsplib allocates a
// buffer per camera packet). In passthrough mode the packet returned may be
// pkt itself with its header rewritten, and the slice is reused by the next
// call: use it before calling Process again.
//
// In rebuild mode packets are buffered until their access unit completes.
// The error is nil for anything merely dropped (it is counted); it wraps
// ErrInvalidParameters when the camera sends a parameter set that fails
// validation (that access unit is dropped; the proxy may refuse the camera).
func (t *Track) Process(pkt *rtp.Packet) ([]*rtp.Packet, int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.countHeader(pkt)
	if pkt.PayloadType != t.camFormat.PayloadType() {
		t.counters.Drop("payload_type", len(pkt.Payload))
		return nil, NoKey, nil
	}
	switch t.kind {
	case kindRebuild:
		return t.processRebuild(pkt)
	case kindMJPEG:
		return t.processMJPEG(pkt)
	}
	return t.processPassthrough(pkt)
}

// HoldsInput reports whether the track still refers to the payload of a
// packet Process has returned from: the NAL units of an access unit in
// progress, or the fragments of an MJPEG frame. Packets Process returned
// are not the track's. A caller reusing input memory (the camera tap)
// waits until it does not.
func (t *Track) HoldsInput() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch t.kind {
	case kindRebuild:
		return t.video != nil && t.video.asm.active
	case kindMJPEG:
		return t.mjpeg != nil && t.mjpeg.pending > 0
	}
	return false
}

// countHeader counts what the rewritten header leaves out.
func (t *Track) countHeader(pkt *rtp.Packet) {
	if pkt.Extension {
		t.counters.Drop("extension", pkt.Header.MarshalSize()-12-4*len(pkt.CSRC))
	}
	if pkt.Padding || pkt.PaddingSize > 0 {
		t.counters.Drop("padding", int(pkt.PaddingSize))
	}
	if len(pkt.CSRC) > 0 {
		t.counters.Drop("csrc", 4*len(pkt.CSRC))
	}
}

// newPacket returns a clean packet: version 2, no padding, extension or
// CSRC, the reader-facing payload type and the next sequence number.
func (t *Track) newPacket(ts uint32, marker bool, payload []byte) *rtp.Packet {
	p := &rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			Marker:         marker,
			PayloadType:    t.outPT,
			SequenceNumber: t.seq,
			Timestamp:      ts,
		},
		Payload: payload,
	}
	t.seq++
	return p
}

// tsMapper maps camera timestamps to reader timestamps: out = in + offset.
// After a reconnect (rebase) the offset is chosen so the first new timestamp
// follows the last one sent by one typical step.
type tsMapper struct {
	offset  uint32
	last    uint32
	step    uint32
	started bool
	rebase  bool
}

func (m *tsMapper) mapTS(in uint32, clock uint32) uint32 {
	if m.rebase && m.started {
		step := m.step
		if step == 0 || step > clock {
			step = clock / 25
		}
		m.offset = m.last + step - in
		m.rebase = false
	}
	out := in + m.offset
	if m.started {
		if d := out - m.last; d != 0 && d < clock { // forward, less than a second
			m.step = d
		}
	}
	m.last, m.started = out, true
	return out
}

// processPassthrough rewrites the header; oversized H.264/H.265 payloads
// are re-fragmented to fit readers' packets.
func (t *Track) processPassthrough(pkt *rtp.Packet) ([]*rtp.Packet, int, error) {
	if len(pkt.Payload) == 0 {
		t.counters.Drop("malformed", 0)
		return nil, NoKey, nil
	}
	ts := t.ts.mapTS(pkt.Timestamp, t.clock)
	key := NoKey
	switch {
	case t.codec != 0:
		// Another slice or parameter set of the same keyframe is not a
		// second start.
		if isKeyPayload(t.codec, pkt.Payload) && (!t.haveKey || t.lastKeyTS != ts) {
			key, t.haveKey, t.lastKeyTS = 0, true, ts
		}
	case t.media.Type == description.MediaTypeVideo:
		// MJPEG: every frame is a keyframe; it starts at fragment offset 0.
		if isMJPEGStart(pkt.Payload) {
			key = 0
		}
	}
	if len(pkt.Payload) <= maxPayload {
		// The common case: pkt itself, its header rewritten, in a slice kept
		// for the purpose (no allocation per packet).
		pkt.Header = rtp.Header{Version: 2, Marker: pkt.Marker, PayloadType: t.outPT, SequenceNumber: t.seq, Timestamp: ts}
		t.seq++
		t.one[0] = pkt
		return t.one[:], key, nil
	}
	t.counters.Drop("oversized", len(pkt.Payload))
	if t.codec == 0 {
		return nil, NoKey, nil // audio or MJPEG this big is not a camera's
	}
	payloads := repacketize(t.codec, pkt.Payload, encoderPayload)
	if len(payloads) == 0 {
		t.counters.Drop("malformed", len(pkt.Payload))
		return nil, NoKey, nil
	}
	out := make([]*rtp.Packet, len(payloads))
	for i, p := range payloads {
		out[i] = t.newPacket(ts, pkt.Marker && i == len(payloads)-1, p)
	}
	return out, key, nil
}

// repacketize splits one oversized H.264/H.265 payload into payloads of at
// most max bytes: single NAL units and aggregation packets become single
// NAL units or fragments; a fragment is re-fragmented keeping its S/E bits.
func repacketize(codec videoCodec, p []byte, max int) [][]byte {
	hl := codec.hdrLen()
	if len(p) < hl+1 {
		return nil
	}
	typ := codec.nalType(p)
	switch {
	case codec == codecH264 && typ == 28, codec == codecH265 && typ == 49:
		hdr := append([]byte(nil), p[:hl+1]...)
		start, end := hdr[hl]&0x80 != 0, hdr[hl]&0x40 != 0
		hdr[hl] &^= 0xc0
		return fragmentBody(hdr, p[hl+1:], max, start, end, nil)
	case codec == codecH264 && typ == 24, codec == codecH265 && typ == 48:
		var nalus [][]byte
		b := p[hl:]
		for len(b) >= 2 {
			n := int(b[0])<<8 | int(b[1])
			b = b[2:]
			if n == 0 || n > len(b) || n < hl {
				break
			}
			nalus = append(nalus, b[:n])
			b = b[n:]
		}
		return packetize(codec, nalus, max, nil)
	case codec == codecH264 && typ >= 1 && typ <= 23, codec == codecH265 && typ < 48:
		return packetize(codec, [][]byte{p}, max, nil)
	}
	return nil
}

// isKeyPayload reports whether an RTP payload begins a keyframe: an IDR/IRAP
// slice or an SPS (H.265: a VPS or SPS too), alone, anywhere in an
// aggregation packet (cameras put an AUD or SEI first), or in a starting
// fragment. It never trusts a length past the payload's end.
func isKeyPayload(codec videoCodec, p []byte) bool {
	hl := codec.hdrLen()
	if len(p) < hl+1 {
		return false
	}
	typ := codec.nalType(p)
	switch {
	case codec == codecH264 && typ == 28:
		return p[1]&0x80 != 0 && codec.keyType(p[1]&0x1f)
	case codec == codecH265 && typ == 49:
		return p[2]&0x80 != 0 && codec.keyType(p[2]&0x3f)
	case codec == codecH264 && typ == 24, codec == codecH265 && typ == 48:
		for b := p[hl:]; len(b) >= 2; {
			n := int(b[0])<<8 | int(b[1])
			b = b[2:]
			if n < hl || n > len(b) {
				return false
			}
			if codec.keyType(codec.nalType(b)) {
				return true
			}
			b = b[n:]
		}
		return false
	}
	return codec.keyType(typ)
}

// keyType reports whether NAL units of type typ start a keyframe.
func (c videoCodec) keyType(typ uint8) bool {
	if c == codecH264 {
		return typ == 5 || typ == 7
	}
	return (typ >= 16 && typ <= 21) || typ == 32 || typ == 33
}

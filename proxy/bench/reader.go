package bench

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/pion/rtp"
)

// reader is one RTSP reader that counts what it receives: RTP bytes and
// packets, sequence gaps, and the coded-slice bytes of each frame (see
// videoCount). With frames set, it also depacketizes H.264 and records when each access unit completed, keyed
// by a hash of its slice NAL units (which survive both proxy modes unchanged),
// so the same frame can be matched on a direct and a proxied reader.
type reader struct {
	url    string
	fps    int       // the camera's frame rate; it defaults to 25
	frames *frameLog // nil: count only
	video  *videoCount
	// onVideo, when set, sees the RTP timestamp of every video packet
	// and whether the window is open (bench trunk counts frames and
	// stalls with it).
	onVideo func(ts uint32, counting bool)

	counting atomic.Bool
	bytes    atomic.Uint64
	packets  atomic.Uint64
	lost     atomic.Uint64

	client *gortsplib.Client
}

// frameLog records when each frame completed. A simulated camera loops a
// short clip, so the same frame content recurs: every occurrence is kept.
type frameLog struct {
	mu   sync.Mutex
	seen map[[16]byte][]time.Time
}

func newFrameLog() *frameLog { return &frameLog{seen: map[[16]byte][]time.Time{}} }

func (r *reader) start(ctx context.Context) error {
	u, err := base.ParseURL(r.url)
	if err != nil {
		return err
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp, ReadTimeout: 20 * time.Second}
	if err := c.Start(); err != nil {
		return err
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		c.Close()
		return err
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		c.Close()
		return err
	}
	lastSeq := map[*description.Media]uint16{}
	var videoMedia *description.Media
	videoMedia, r.video = findVideo(desc, r.fps)
	var dec *rtph264.Decoder
	var h264Media *description.Media
	if r.frames != nil {
		for _, m := range desc.Medias {
			for _, f := range m.Formats {
				if h, ok := f.(*format.H264); ok && dec == nil {
					dec, err = h.CreateDecoder()
					if err != nil {
						c.Close()
						return err
					}
					h264Media = m
				}
			}
		}
	}
	c.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		// With TCP transport, one goroutine delivers every packet of a client.
		if prev, ok := lastSeq[m]; ok && pkt.SequenceNumber != prev+1 && r.counting.Load() {
			r.lost.Add(uint64(pkt.SequenceNumber - prev - 1))
		}
		lastSeq[m] = pkt.SequenceNumber
		counting := r.counting.Load()
		if counting {
			r.packets.Add(1)
			r.bytes.Add(uint64(pkt.MarshalSize()))
		}
		if m == videoMedia {
			r.video.packet(pkt.Timestamp, pkt.Payload, counting)
			if r.onVideo != nil {
				r.onVideo(pkt.Timestamp, counting)
			}
		}
		if dec != nil && m == h264Media {
			au, err := dec.Decode(pkt)
			if err != nil {
				return
			}
			if key, ok := sliceKey(au); ok {
				now := time.Now()
				r.frames.mu.Lock()
				r.frames.seen[key] = append(r.frames.seen[key], now)
				r.frames.mu.Unlock()
			}
		}
	})
	if _, err := c.Play(nil); err != nil {
		c.Close()
		return err
	}
	r.client = c
	return nil
}

// findVideo returns the first H.264 or H.265 media of desc and a counter
// for its video bytes at fps (25 when 0), or nil and a counter that sees
// nothing.
func findVideo(desc *description.Session, fps int) (*description.Media, *videoCount) {
	if fps <= 0 {
		fps = 25
	}
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			switch f.(type) {
			case *format.H264:
				return m, &videoCount{step: uint32(90000 / fps)}
			case *format.H265:
				return m, &videoCount{step: uint32(90000 / fps), h265: true}
			}
		}
	}
	return nil, &videoCount{step: uint32(90000 / fps)}
}

// sliceKey hashes the slice NAL units (types 1 and 5) of an access unit.
func sliceKey(au [][]byte) ([16]byte, bool) {
	h := sha256.New()
	n := 0
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		if t := nalu[0] & 0x1f; t == 1 || t == 5 {
			h.Write(nalu)
			n++
		}
	}
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k, n > 0
}

func (r *reader) close() {
	if r.client != nil {
		r.client.Close()
	}
}

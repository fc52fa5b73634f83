package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/bluenviron/gortsplib/v5/pkg/sdpunmarshaler"
	"github.com/pion/rtp"
)

// reader is one RTSP reader (TCP interleaved) that counts what it
// receives: RTP bytes and packets, sequence gaps, and the coded-slice
// bytes of each frame (see videoCount). It is the bench's own minimal
// client: DESCRIBE, SETUP (interleaved) and PLAY, then one goroutine reads
// the interleaved frames through one 256 KiB buffer, with no allocation
// per packet, so that 500 of them leave the CPU to the system under test.
//
// With frames set (the latency samples), it also depacketizes H.264 and
// records when each access unit completed, keyed by a hash of its slice
// NAL units (which survive both proxy modes unchanged), so the same frame
// can be matched on a direct and a proxied reader. It then reads one RTP
// packet at a time with the kernel's receive timestamp (SO_TIMESTAMPNS,
// Linux): the time the sender wrote the packet's last byte into loopback,
// which does not depend on when the bench gets to read it.
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

	playing bool // the handshake succeeded (set by start)
	conn    net.Conn
	stream  *rtpStream
	done    chan struct{}
	err     error // why the read loop stopped, after done
}

// frameLog records when each frame completed. A simulated camera loops a
// short clip, so the same frame content recurs: every occurrence is kept.
type frameLog struct {
	mu   sync.Mutex
	seen map[[16]byte][]frameTime
}

// frameTime is when a reader completed a frame: user is when the bench's
// goroutine parsed its last packet, kernel when that packet's last byte
// arrived in the socket (zero when unknown).
type frameTime struct{ user, kernel time.Time }

// at is the kernel time when known, else the user time.
func (f frameTime) at() time.Time {
	if f.kernel.IsZero() {
		return f.user
	}
	return f.kernel
}

func newFrameLog() *frameLog { return &frameLog{seen: map[[16]byte][]frameTime{}} }

// Timeouts of the reader: the handshake, a read while playing, and close.
const (
	handshakeTimeout = 20 * time.Second
	readTimeout      = 20 * time.Second
	closeTimeout     = 2 * time.Second
	keepalive        = 20 * time.Second
)

func (r *reader) start(ctx context.Context) error {
	u, err := base.ParseURL(r.url)
	if err != nil {
		return err
	}
	if u.Scheme != "rtsp" {
		return fmt.Errorf("reader %s: scheme %q: only rtsp", r.url, u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "554")
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	if r.frames != nil {
		enableStamps(conn)
	}
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	h := &handshake{conn: conn, br: bufio.NewReaderSize(conn, 4096), url: u}
	st, err := h.run(r.fps, r.frames != nil)
	if err != nil {
		conn.Close()
		return fmt.Errorf("reader %s: %w", r.url, err)
	}
	conn.SetDeadline(time.Time{})
	r.stream, r.video = st, st.video
	st.r = r
	// What the server sent after PLAY's response is already buffered.
	buffered, _ := h.br.Peek(h.br.Buffered())
	r.conn, r.playing, r.done = conn, true, make(chan struct{})
	fb := newFrameBuf(conn, buffered, r.frames != nil)
	go func() {
		defer close(r.done)
		r.err = r.loop(fb, h)
	}()
	return nil
}

// loop reads interleaved frames until the connection fails or is closed.
func (r *reader) loop(fb *frameBuf, h *handshake) error {
	next := time.Now().Add(keepalive)
	for n := 0; ; n++ {
		if n%256 == 0 {
			if now := time.Now(); now.After(next) {
				// Some servers end sessions that send nothing.
				if err := h.keepalive(); err != nil {
					return err
				}
				next = now.Add(keepalive)
			}
		}
		ch, pkt, stamp, err := fb.next()
		if err != nil {
			return err
		}
		r.stream.packet(ch, pkt, stamp)
	}
}

// close stops the reader: it closes the connection, which ends the read
// loop, and waits for the loop at most closeTimeout (it never hangs).
func (r *reader) close() {
	if r.conn == nil {
		return
	}
	r.conn.Close()
	select {
	case <-r.done:
	case <-time.After(closeTimeout):
	}
}

// handshake is the RTSP exchange before PLAY.
type handshake struct {
	conn    net.Conn
	br      *bufio.Reader
	url     *base.URL
	cseq    int
	session string
	sdp     []byte // DESCRIBE's body, after run
}

// do sends one request and reads its response (interleaved frames that
// come first are skipped).
func (h *handshake) do(method base.Method, u *base.URL, hdr base.Header) (*base.Response, error) {
	h.cseq++
	if hdr == nil {
		hdr = base.Header{}
	}
	hdr["CSeq"] = base.HeaderValue{strconv.Itoa(h.cseq)}
	hdr["User-Agent"] = base.HeaderValue{"cordon-bench"}
	if h.session != "" {
		hdr["Session"] = base.HeaderValue{h.session}
	}
	req := base.Request{Method: method, URL: u, Header: hdr}
	b, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := h.conn.Write(b); err != nil {
		return nil, err
	}
	for {
		c, err := h.br.Peek(4)
		if err != nil {
			return nil, err
		}
		if c[0] != '$' {
			break
		}
		if _, err := h.br.Discard(4 + (int(c[2])<<8 | int(c[3]))); err != nil {
			return nil, err
		}
	}
	var res base.Response
	if err := res.Unmarshal(h.br); err != nil {
		return nil, err
	}
	if res.StatusCode != base.StatusOK {
		return nil, fmt.Errorf("%s: %d %s", method, res.StatusCode, res.StatusMessage)
	}
	return &res, nil
}

// keepalive sends an OPTIONS request while playing; its response is
// skipped by frameBuf.
func (h *handshake) keepalive() error {
	h.cseq++
	req := base.Request{Method: base.Options, URL: h.url, Header: base.Header{
		"CSeq": base.HeaderValue{strconv.Itoa(h.cseq)}, "Session": base.HeaderValue{h.session},
	}}
	b, err := req.Marshal()
	if err != nil {
		return err
	}
	h.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = h.conn.Write(b)
	return err
}

// run does DESCRIBE, SETUP of every medium (TCP, interleaved channels 2i
// and 2i+1) and PLAY, and returns the stream's counters.
func (h *handshake) run(fps int, frames bool) (*rtpStream, error) {
	res, err := h.do(base.Describe, h.url, base.Header{"Accept": base.HeaderValue{"application/sdp"}})
	if err != nil {
		return nil, err
	}
	h.sdp = res.Body
	sd, err := sdpunmarshaler.Unmarshal(res.Body)
	if err != nil {
		return nil, fmt.Errorf("DESCRIBE: SDP: %w", err)
	}
	var desc description.Session
	if err := desc.Unmarshal2(sd); err != nil {
		return nil, fmt.Errorf("DESCRIBE: SDP: %w", err)
	}
	if len(desc.Medias) == 0 || len(desc.Medias) > maxChannels/2 {
		return nil, fmt.Errorf("DESCRIBE: %d media", len(desc.Medias))
	}
	baseURL := contentBase(h.url, res)
	st := &rtpStream{videoCh: -1}
	var videoMedia *description.Media
	videoMedia, st.video = findVideo(&desc, fps)
	for i, m := range desc.Medias {
		mu, err := m.URL(baseURL)
		if err != nil {
			return nil, err
		}
		ids := [2]int{2 * i, 2*i + 1}
		tr := headers.Transport{Protocol: headers.TransportProtocolTCP, InterleavedIDs: &ids}
		dl := headers.TransportDeliveryUnicast
		tr.Delivery = &dl
		res, err := h.do(base.Setup, mu, base.Header{"Transport": tr.Marshal()})
		if err != nil {
			return nil, err
		}
		if h.session == "" {
			var s headers.Session
			if err := s.Unmarshal(res.Header["Session"]); err != nil {
				return nil, fmt.Errorf("SETUP: Session: %w", err)
			}
			h.session = s.Session
		}
		if m == videoMedia {
			st.videoCh = 2 * i
			if err := st.setupFrames(m, frames); err != nil {
				return nil, err
			}
		}
	}
	if _, err := h.do(base.Play, baseURL, base.Header{"Range": base.HeaderValue{"npt=0-"}}); err != nil {
		return nil, err
	}
	return st, nil
}

// contentBase is the base URL of the media's control attributes.
func contentBase(u *base.URL, res *base.Response) *base.URL {
	if cb, ok := res.Header["Content-Base"]; ok && len(cb) == 1 {
		s := cb[0]
		if len(s) > 0 && s[0] == '/' {
			s = u.Scheme + "://" + u.Host + s
		}
		if b, err := base.ParseURL(s); err == nil {
			return b
		}
	}
	return u
}

// maxChannels is the most interleaved channels a reader tracks.
const maxChannels = 8

// rtpStream counts one reader's RTP packets.
type rtpStream struct {
	r       *reader
	videoCh int // interleaved channel of the video's RTP, -1 if none
	video   *videoCount
	seq     [maxChannels]uint16
	seen    [maxChannels]bool
	dec     *rtph264.Decoder // for the frame log; nil otherwise
}

func (s *rtpStream) setupFrames(m *description.Media, frames bool) error {
	if !frames {
		return nil
	}
	for _, f := range m.Formats {
		if h, ok := f.(*format.H264); ok {
			dec, err := h.CreateDecoder()
			if err != nil {
				return err
			}
			s.dec = dec
			return nil
		}
	}
	return nil
}

// rtpHeader is what the counters need of an RTP packet.
type rtpHeader struct {
	seq     uint16
	ts      uint32
	payload []byte
}

var errRTP = errors.New("malformed RTP packet")

// parseRTP reads an RTP header (RFC 3550: CSRCs, extension and padding
// skipped) without copying.
func parseRTP(p []byte) (rtpHeader, error) {
	if len(p) < 12 || p[0]>>6 != 2 {
		return rtpHeader{}, errRTP
	}
	h := rtpHeader{seq: uint16(p[2])<<8 | uint16(p[3]), ts: uint32(p[4])<<24 | uint32(p[5])<<16 | uint32(p[6])<<8 | uint32(p[7])}
	off := 12 + 4*int(p[0]&0x0f)
	if p[0]&0x10 != 0 {
		if len(p) < off+4 {
			return rtpHeader{}, errRTP
		}
		off += 4 + 4*(int(p[off+2])<<8|int(p[off+3]))
	}
	end := len(p)
	if p[0]&0x20 != 0 && end > 0 {
		end -= int(p[end-1])
	}
	if off > end {
		return rtpHeader{}, errRTP
	}
	h.payload = p[off:end]
	return h, nil
}

// packet counts one interleaved frame: RTP on even channels, RTCP on odd
// ones (ignored). stamp is the kernel's arrival time of its last byte, or
// zero.
func (s *rtpStream) packet(ch byte, p []byte, stamp time.Time) {
	if ch%2 != 0 || int(ch) >= maxChannels {
		return
	}
	h, err := parseRTP(p)
	if err != nil {
		return
	}
	r := s.r
	counting := r.counting.Load()
	if s.seen[ch] && h.seq != s.seq[ch]+1 && counting {
		r.lost.Add(uint64(h.seq - s.seq[ch] - 1))
	}
	s.seq[ch], s.seen[ch] = h.seq, true
	if counting {
		r.packets.Add(1)
		r.bytes.Add(uint64(len(p)))
	}
	if int(ch) != s.videoCh {
		return
	}
	s.video.packet(h.ts, h.payload, counting)
	if r.onVideo != nil {
		r.onVideo(h.ts, counting)
	}
	if s.dec != nil {
		s.logFrame(p, stamp)
	}
}

// logFrame depacketizes for the frame log (latency samples only: it
// copies the packet, which the decoder keeps).
func (s *rtpStream) logFrame(p []byte, stamp time.Time) {
	var pkt rtp.Packet
	if pkt.Unmarshal(append([]byte(nil), p...)) != nil {
		return
	}
	au, err := s.dec.Decode(&pkt)
	if err != nil {
		return
	}
	if key, ok := sliceKey(au); ok {
		ft := frameTime{user: time.Now(), kernel: stamp}
		s.r.frames.mu.Lock()
		s.r.frames.seen[key] = append(s.r.frames.seen[key], ft)
		s.r.frames.mu.Unlock()
	}
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

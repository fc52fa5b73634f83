package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
)

// Floor is not a proxy. It is the least a Go relay of a proxy's shape does,
// run as system "floor" to show what is reachable on the machine: per
// camera one upstream connection (the bench's own minimal RTSP client:
// DESCRIBE, SETUP TCP interleaved, PLAY), and for the bench's readers the
// minimal RTSP answers they need (DESCRIBE with the camera's SDP, SETUP
// echoing the interleaved channels asked for, PLAY). Then it copies bytes:
// one read per arrival from the camera into one buffer, and the whole
// interleaved frames it holds written, as they are, to each of the camera's
// readers. No RTP parsing (only the interleaved frames' 4-byte headers are
// walked, to write whole frames and to drop the answers to its own
// keepalives), no GOP cache, no rebuild, no per-reader state beyond the
// socket, no timeouts on writes, no answers to a reader after PLAY. Its
// reads and writes are the raw system calls cordon's own are
// (floor_linux.go), and it lets GOMAXPROCS follow its CPU use as cordon
// does (cmd/cordon), so that it is a floor for cordon as cordon runs.
//
// What it measures is the cost of "read each frame once, write it once per
// reader" in Go on this machine: the floor under any Go proxy that reads a
// camera's socket per arrival and writes a reader's socket per frame.
//
// The bytes pass unchanged because the bench's readers ask for the same
// interleaved channels (2i, 2i+1 for medium i) as the floor asks the camera
// for; a reader asking for others would get the camera's channels.
type Floor struct {
	// Listen is the RTSP listen address. It defaults to "127.0.0.1:8554".
	Listen string
	// Sources maps a path name to the camera URL it pulls.
	Sources map[string]string
	Logger  *slog.Logger

	cams     map[string]*floorCamera
	sessions atomic.Uint64
}

// floorCamera is one camera's upstream state and readers.
type floorCamera struct {
	sdp     atomic.Pointer[[]byte]       // the camera's SDP; nil until it plays
	readers atomic.Pointer[[]*floorConn] // copied on change
	mu      sync.Mutex                   // serialises changes to readers
}

func (c *floorCamera) add(conn *floorConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rs []*floorConn
	if p := c.readers.Load(); p != nil {
		rs = append(rs, *p...)
	}
	rs = append(rs, conn)
	c.readers.Store(&rs)
}

func (c *floorCamera) remove(conn *floorConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.readers.Load()
	if p == nil {
		return
	}
	rs := make([]*floorConn, 0, len(*p))
	for _, r := range *p {
		if r != conn {
			rs = append(rs, r)
		}
	}
	c.readers.Store(&rs)
}

// send writes b to each reader; a reader whose write fails is closed and
// dropped.
func (c *floorCamera) send(b []byte) {
	p := c.readers.Load()
	if p == nil {
		return
	}
	for _, conn := range *p {
		if _, err := conn.Write(b); err != nil {
			conn.Close()
			c.remove(conn)
		}
	}
}

// floorBufSize is the upstream buffer: several frames of a camera, and
// room for the largest interleaved frame after a partial one.
const floorBufSize = 256 << 10

// maxInterleaved is the largest interleaved frame: '$', channel, 16-bit
// length, packet.
const maxInterleaved = 4 + 65535

// Run serves until ctx is done.
func (f *Floor) Run(ctx context.Context) error {
	if f.Listen == "" {
		f.Listen = "127.0.0.1:8554"
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	f.cams = make(map[string]*floorCamera, len(f.Sources))
	for name := range f.Sources {
		f.cams[name] = &floorCamera{}
	}
	l, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	for name, url := range f.Sources {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := f.pull(ctx, f.cams[name], url)
				if ctx.Err() == nil {
					f.Logger.Warn("floor source failed", "path", name, "error", err)
					_ = sleep(ctx, time.Second)
				}
			}
		})
	}
	for {
		conn, err := l.Accept()
		if err != nil {
			break
		}
		wg.Go(func() { f.serve(ctx, conn) })
	}
	wg.Wait()
	return nil
}

// pull plays one camera and relays its bytes to its readers until the
// connection fails or ctx is done.
func (f *Floor) pull(ctx context.Context, cam *floorCamera, rawURL string) error {
	u, err := base.ParseURL(rawURL)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	h := &handshake{conn: conn, br: bufio.NewReaderSize(conn, 4096), url: u}
	if _, err := h.run(25, false); err != nil {
		return err
	}
	conn.SetDeadline(time.Time{})
	sdp := h.sdp
	cam.sdp.Store(&sdp)
	buf := make([]byte, floorBufSize)
	pre, _ := h.br.Peek(h.br.Buffered())
	w := copy(buf, pre)
	r, p := 0, 0 // buf[r:p] whole frames not yet sent, buf[p:w] the rest
	up := newFloorConn(conn)
	next := time.Now().Add(keepalive)
	for reads := 1; ; reads++ {
		if p, w, err = walkFrames(buf, p, w); err != nil {
			return err
		}
		if p > r {
			cam.send(buf[r:p])
			r = p
		}
		if r == w {
			r, p, w = 0, 0, 0
		} else if len(buf)-w < maxInterleaved {
			w = copy(buf, buf[r:w])
			p -= r
			r = 0
		}
		if reads%256 == 0 {
			// gortsplib servers end a session that sends nothing for 60 s.
			if now := time.Now(); now.After(next) {
				if err := h.keepalive(); err != nil {
					return err
				}
				next = now.Add(keepalive)
			}
		}
		n, err := up.Read(buf[w:])
		w += n
		if err != nil {
			return err
		}
	}
}

// walkFrames walks the interleaved frames in buf[p:w] and returns the end
// of the last whole one. RTSP messages between them (the answers to the
// keepalives) are cut out of the buffer, which moves the bytes after them
// and so returns the new w.
func walkFrames(buf []byte, p, w int) (int, int, error) {
	for p < w {
		if buf[p] != '$' {
			n, err := rtspMessageLen(buf[p:w])
			if err != nil || n == 0 {
				return p, w, err
			}
			w = p + copy(buf[p:], buf[p+n:w])
			continue
		}
		if w-p < 4 {
			break
		}
		size := 4 + (int(buf[p+2])<<8 | int(buf[p+3]))
		if w-p < size {
			break
		}
		p += size
	}
	return p, w, nil
}

// serve answers one reader's RTSP requests until PLAY, then relays the
// camera to it and discards whatever it sends (keepalives, unanswered)
// until it goes.
func (f *Floor) serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReaderSize(conn, 4096)
	session := strconv.FormatUint(f.sessions.Add(1), 10)
	for {
		conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
		var req base.Request
		if err := req.Unmarshal(br); err != nil {
			return
		}
		res, cam := f.answer(&req, session)
		b, err := res.Marshal()
		if err != nil {
			return
		}
		conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
		if _, err := conn.Write(b); err != nil {
			return
		}
		if req.Method == base.Play && cam != nil {
			conn.SetDeadline(time.Time{})
			fc := newFloorConn(conn)
			cam.add(fc)
			_, _ = io.Copy(io.Discard, br)
			cam.remove(fc)
			return
		}
	}
}

// answer is the floor's reply to one request, and the camera a PLAY that
// succeeded starts.
func (f *Floor) answer(req *base.Request, session string) (*base.Response, *floorCamera) {
	res := &base.Response{StatusCode: base.StatusOK, Header: base.Header{}}
	if cseq, ok := req.Header["CSeq"]; ok {
		res.Header["CSeq"] = cseq
	}
	var cam *floorCamera
	var sdp []byte
	if req.URL != nil {
		name, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
		cam = f.cams[name]
		if cam != nil {
			if p := cam.sdp.Load(); p != nil {
				sdp = *p
			}
		}
	}
	fail := func(code base.StatusCode) (*base.Response, *floorCamera) {
		res.StatusCode = code
		return res, nil
	}
	switch req.Method {
	case base.Options:
		res.Header["Public"] = base.HeaderValue{"DESCRIBE, SETUP, PLAY, OPTIONS"}
		return res, nil
	case base.Describe:
		if sdp == nil {
			return fail(base.StatusNotFound)
		}
		res.Header["Content-Type"] = base.HeaderValue{"application/sdp"}
		res.Header["Content-Base"] = base.HeaderValue{strings.TrimSuffix(req.URL.String(), "/") + "/"}
		res.Body = sdp
		return res, nil
	case base.Setup:
		if sdp == nil {
			return fail(base.StatusNotFound)
		}
		var ts headers.Transports
		if err := ts.Unmarshal(req.Header["Transport"]); err != nil {
			return fail(base.StatusBadRequest)
		}
		for _, t := range ts {
			if t.Protocol == headers.TransportProtocolTCP && t.InterleavedIDs != nil {
				dl := headers.TransportDeliveryUnicast
				out := headers.Transport{Protocol: headers.TransportProtocolTCP, Delivery: &dl, InterleavedIDs: t.InterleavedIDs}
				res.Header["Transport"] = out.Marshal()
				res.Header["Session"] = base.HeaderValue{session + ";timeout=60"}
				return res, nil
			}
		}
		return fail(base.StatusUnsupportedTransport)
	case base.Play:
		if sdp == nil {
			return fail(base.StatusNotFound)
		}
		res.Header["Session"] = base.HeaderValue{session}
		return res, cam
	}
	f.Logger.Debug("floor: request not answered", "method", req.Method)
	return fail(base.StatusNotImplemented)
}

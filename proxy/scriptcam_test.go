package proxy

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/pion/rtp"
)

// scriptCam is a scripted RTSP camera for tests of the camera side. On each
// connection it answers as a plain H.264 camera over TCP interleaved
// transport would, unless respond replaces an answer, and once PLAY is
// answered it runs afterPlay. It serves real sockets (listen) or any
// net.Conn (serve), such as one end of a net.Pipe inside a synctest bubble.
type scriptCam struct {
	// respond may replace the answer to a request; nil (or a nil result)
	// keeps the default answer. conn counts from 1.
	respond func(conn int64, req *base.Request) *base.Response
	// afterPlay writes to the connection after PLAY. When it returns the
	// camera closes the connection. nil keeps the connection open and
	// silent until the client leaves.
	afterPlay func(ctx context.Context, w *camWriter)

	conns  atomic.Int64 // connections accepted
	mu     sync.Mutex
	reqs   []string    // "METHOD URL [Authorization]"
	starts []time.Time // when each connection was accepted
}

// startTimes returns when each connection was accepted.
func (s *scriptCam) startTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.starts...)
}

// requests returns the requests seen so far.
func (s *scriptCam) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// listen serves s on a loopback port and returns the camera's address.
func (s *scriptCam) listen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	var open sync.Map
	t.Cleanup(func() {
		cancel()
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			open.Store(nc, nil)
			wg.Go(func() {
				s.serve(ctx, nc)
				open.Delete(nc)
			})
		}
	})
	return ln.Addr().String()
}

// camWriter serialises writes to a scripted camera's connection.
type camWriter struct {
	mu sync.Mutex
	nc net.Conn
}

func (w *camWriter) write(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.nc.Write(b)
	return err
}

// frame writes one interleaved frame.
func (w *camWriter) frame(ch int, payload []byte) error {
	b, _ := base.InterleavedFrame{Channel: ch, Payload: payload}.Marshal()
	return w.write(b)
}

// h264 sends a 25 fps H.264 stream (an IDR every second) on channel 0
// until ctx is done, d has passed, or the connection fails.
func (w *camWriter) h264(ctx context.Context, d time.Duration) {
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		nal := []byte{0x41, 0x9a, 0x00, 0x01} // P slice
		if i%25 == 0 {
			nal = []byte{0x65, 0x88, 0x84, 0x00} // IDR slice
		}
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i),
			Timestamp: uint32(i * 3600), Marker: true, SSRC: 1}, Payload: nal}
		b, _ := pkt.Marshal()
		if w.frame(0, b) != nil {
			return
		}
	}
}

// scriptSDP is the default camera's SDP: one H.264 track.
func scriptSDP() []byte {
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: goodSPS, PPS: goodPPS}
	d := &description.Session{Medias: []*description.Media{{
		Type: description.MediaTypeVideo, Control: "trackID=0", Formats: []format.Format{forma},
	}}}
	b, err := d.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

func (s *scriptCam) serve(ctx context.Context, nc net.Conn) {
	n := s.conns.Add(1)
	s.mu.Lock()
	s.starts = append(s.starts, time.Now())
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	w := &camWriter{nc: nc}
	br := bufio.NewReader(nc)
	var played sync.WaitGroup
	defer func() {
		cancel()
		nc.Close()
		played.Wait()
	}()
	for {
		var req base.Request
		if err := req.Unmarshal(br); err != nil {
			return
		}
		line := string(req.Method) + " " + req.URL.String()
		if a := req.Header["Authorization"]; len(a) > 0 {
			line += " " + strings.Join(a, ",")
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, line)
		s.mu.Unlock()
		var res *base.Response
		if s.respond != nil {
			res = s.respond(n, &req)
		}
		if res == nil {
			res = defaultAnswer(&req)
		}
		if res.Header == nil {
			res.Header = base.Header{}
		}
		res.Header["CSeq"] = req.Header["CSeq"]
		b, _ := res.Marshal()
		if w.write(b) != nil {
			return
		}
		if req.Method == base.Teardown {
			return
		}
		if req.Method == base.Play && res.StatusCode == base.StatusOK {
			if s.afterPlay == nil {
				continue
			}
			played.Go(func() {
				s.afterPlay(ctx, w)
				nc.Close()
			})
		}
	}
}

// defaultAnswer is what a plain H.264 camera answers.
func defaultAnswer(req *base.Request) *base.Response {
	res := &base.Response{StatusCode: base.StatusOK, Header: base.Header{"Session": base.HeaderValue{"12345678;timeout=60"}}}
	switch req.Method {
	case base.Options:
		res.Header["Public"] = base.HeaderValue{"DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"}
	case base.Describe:
		res.Header["Content-Type"] = base.HeaderValue{"application/sdp"}
		res.Header["Content-Base"] = base.HeaderValue{"rtsp://" + req.URL.Host + req.URL.Path + "/"}
		res.Body = scriptSDP()
	case base.Setup:
		var tr headers.Transports
		if err := tr.Unmarshal(req.Header["Transport"]); err != nil || len(tr) == 0 {
			return &base.Response{StatusCode: base.StatusBadRequest}
		}
		res.Header["Transport"] = tr[0].Marshal()
	}
	return res
}

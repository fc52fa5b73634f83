package rebuild

import (
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
)

// rtspTestServer is a camera made with gortsplib's server: it serves desc
// and writes whatever packets the test gives it, as they are.
type rtspTestServer struct {
	desc   *description.Session
	srv    *gortsplib.Server
	stream *gortsplib.ServerStream
}

func (s *rtspTestServer) start(t *testing.T) string {
	t.Helper()
	var addr net.Addr
	s.srv = &gortsplib.Server{
		Handler:     s,
		RTSPAddress: "127.0.0.1:0",
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err == nil {
				addr = l.Addr()
			}
			return l, err
		},
	}
	if err := s.srv.Start(); err != nil {
		t.Fatal(err)
	}
	s.stream = &gortsplib.ServerStream{Server: s.srv, Desc: s.desc}
	if err := s.stream.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stream.Close(); s.srv.Close() })
	return "rtsp://" + addr.String() + "/cam"
}

// feed writes the video packets in a loop at about 100 frames a second,
// and meta on the first media after every frame, until the stream closes.
func (s *rtspTestServer) feed(t *testing.T, video []*rtp.Packet, meta *rtp.Packet) {
	var ts uint32
	for loop := 0; ; loop++ {
		for _, p := range video {
			q := *p
			q.Timestamp += uint32(loop) * 200000
			if err := s.stream.WritePacketRTP(s.desc.Medias[1], &q); err != nil {
				return
			}
			if p.Marker {
				m := *meta
				m.Timestamp, ts = ts, ts+900
				if err := s.stream.WritePacketRTP(s.desc.Medias[0], &m); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (s *rtspTestServer) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, s.stream, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (s *rtspTestServer) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, s.stream, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (s *rtspTestServer) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

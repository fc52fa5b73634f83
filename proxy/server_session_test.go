package proxy

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/conn"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
)

// TestReaderSessionSetup: the media a reader's SETUP names is gortsplib's
// choice (the URL forms of GStreamer and of FFmpeg, which puts the query
// first), and the interleaved channel it asked for (or the one gortsplib
// picked) is the one its frame-batched media comes on. SETUPs naming no
// media of the stream are refused and leave no reader.
func TestReaderSessionSetup(t *testing.T) {
	sim := startCamsim(t, "cam")
	log, _ := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "cam", URL: MustParseSecretURL(sim.URL("cam"))}), log)
	waitFor(t, "cam up", 10*time.Second, func() bool { return p.Status()[0].State == stateUp })
	camURL := readerURL(p, "cam")
	for _, tc := range []struct {
		url       string
		transport string
		play      string // the PLAY url
		want      int    // the channel media comes on; -1: SETUP refused
	}{
		{camURL + "/trackID=0", "RTP/AVP/TCP;unicast;interleaved=6-7", camURL, 6},
		{camURL + "?x=1/trackID=0", "RTP/AVP/TCP;unicast;interleaved=2-3", camURL + "?x=1", 2}, // ffmpeg puts the query first
		{camURL + "/trackID=0", "RTP/AVP/TCP;unicast", camURL, 0},                              // gortsplib picks the channel
		{camURL + "/trackID=1", "RTP/AVP/TCP;unicast;interleaved=0-1", "", -1},
		{camURL + "/trackID=-1", "RTP/AVP/TCP;unicast;interleaved=0-1", "", -1},
		{camURL + "/trackID=x", "RTP/AVP/TCP;unicast;interleaved=0-1", "", -1},
	} {
		t.Run(tc.url+" "+tc.transport, func(t *testing.T) {
			c, request := dialRawRTSP(t, p)
			if tc.want < 0 {
				// The previous cases' readers detach asynchronously once
				// their connections close.
				waitFor(t, "earlier readers detached", 5*time.Second, func() bool { return len(p.Status()[0].Readers) == 0 })
			}
			res := request(base.Setup, tc.url, base.Header{"Transport": base.HeaderValue{tc.transport}})
			if tc.want < 0 {
				if res.StatusCode == base.StatusOK {
					t.Fatalf("SETUP %s = %d, want a refusal", tc.url, res.StatusCode)
				}
				if n := len(p.Status()[0].Readers); n != 0 {
					t.Errorf("%d readers after a refused SETUP", n)
				}
				return
			}
			if res.StatusCode != base.StatusOK {
				t.Fatalf("SETUP %s = %d", tc.url, res.StatusCode)
			}
			var sess headers.Session
			if err := sess.Unmarshal(res.Header["Session"]); err != nil {
				t.Fatal(err)
			}
			res = request(base.Play, tc.play, base.Header{"Session": base.HeaderValue{sess.Session}})
			if res.StatusCode != base.StatusOK {
				t.Fatalf("PLAY = %d", res.StatusCode)
			}
			fr, err := c.ReadInterleavedFrame()
			if err != nil {
				t.Fatal(err)
			}
			if fr.Channel != tc.want && fr.Channel != tc.want+1 {
				t.Errorf("media on channel %d, want %d (RTP) or %d (RTCP)", fr.Channel, tc.want, tc.want+1)
			}
			rs := p.Status()[0].Readers
			if len(rs) != 1 || !rs[0].BatchedWrites {
				t.Errorf("readers %+v, want one with batched writes", rs)
			}
		})
	}
}

// dialRawRTSP connects to p's RTSP listener for hand-written requests
// (within 5 s; closed when the test ends): request sends one and returns
// the answer.
func dialRawRTSP(t *testing.T, p *Proxy) (*conn.Conn, func(m base.Method, url string, h base.Header) *base.Response) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", p.RTSPAddr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	c := conn.NewConn(bufio.NewReader(nc), nc)
	request := func(m base.Method, url string, h base.Header) *base.Response {
		t.Helper()
		u, err := base.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		h["CSeq"] = base.HeaderValue{"1"}
		if err := c.WriteRequest(&base.Request{Method: m, URL: u, Header: h}); err != nil {
			t.Fatal(err)
		}
		res, err := c.ReadResponse()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	return c, request
}

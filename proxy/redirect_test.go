package proxy

import (
	"context"
	"encoding/base64"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/pion/rtp"
)

// basicCamera answers DESCRIBE with a Basic challenge until the request
// carries credentials.
func basicChallenge(req *base.Request) *base.Response {
	if req.Method == base.Describe && len(req.Header["Authorization"]) == 0 {
		return &base.Response{StatusCode: base.StatusUnauthorized, Header: base.Header{
			"WWW-Authenticate": base.HeaderValue{`Basic realm="cam"`},
		}}
	}
	return nil
}

// TestRedirectToAnotherHostRefused: a camera answers DESCRIBE with a
// redirect to another host. The proxy must not connect there at all (the
// other host would get the camera's credentials in answer to its Basic
// challenge, and readers its stream); the refusal is logged, shown in
// /v1/cameras, and the camera is retried with backoff.
func TestRedirectToAnotherHostRefused(t *testing.T) {
	other := &scriptCam{respond: func(_ int64, req *base.Request) *base.Response { return basicChallenge(req) },
		afterPlay: func(ctx context.Context, w *camWriter) { w.h264(ctx, time.Minute) }}
	otherAddr := other.listen(t)
	cam := &scriptCam{respond: func(_ int64, req *base.Request) *base.Response {
		if req.Method != base.Describe {
			return nil
		}
		return &base.Response{StatusCode: base.StatusFound, Header: base.Header{
			"Location": base.HeaderValue{"rtsp://evil:hunter2@" + otherAddr + "/stolen?token=abc"},
		}}
	}}
	addr := cam.listen(t)
	log, lb := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "r", URL: MustParseSecretURL("rtsp://admin:s3cret@" + addr + "/cam")}), log)

	want := "camera redirected to another host (" + otherAddr + "); refused"
	waitFor(t, "the refusal in /v1/cameras", 10*time.Second, func() bool {
		return strings.Contains(p.Status()[0].LastError, want)
	})
	waitFor(t, "a retry", 10*time.Second, func() bool { return cam.conns.Load() >= 2 })
	if n := other.conns.Load(); n != 0 {
		t.Fatalf("the proxy connected %d times to the host the camera redirected to; requests: %q", n, other.requests())
	}
	if s := cameraState(p, "r"); s == stateUp {
		t.Errorf("camera state %s", s)
	}
	out := lb.String()
	if !strings.Contains(out, "camera redirected to another host") || !strings.Contains(out, otherAddr) {
		t.Errorf("the refusal is not logged with its target")
	}
	for _, secret := range []string{"s3cret", "hunter2", "token=abc", base64.StdEncoding.EncodeToString([]byte("admin:s3cret"))} {
		if strings.Contains(out, secret) || strings.Contains(httpGet(t, "http://"+p.AdminAddr().String()+"/v1/cameras"), secret) {
			t.Errorf("%q leaked into the log or /v1/cameras", secret)
		}
	}
}

// TestRedirectLoopBounded: a camera that redirects to itself forever is
// followed at most maxRedirects times per session; then the session fails
// and the camera backs off as usual (it was followed hundreds of thousands
// of times a minute, recursively, towards a stack overflow).
func TestRedirectLoopBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cam := &scriptCam{respond: func(n int64, req *base.Request) *base.Response {
			if req.Method != base.Describe {
				return nil
			}
			return &base.Response{StatusCode: base.StatusMovedPermanently, Header: base.Header{
				"Location": base.HeaderValue{"rtsp://cam.invalid/loop" + strconv.FormatInt(n, 10)},
			}}
		}}
		p, stop := startBubbleCamera(t, cam, Camera{Name: "l", URL: MustParseSecretURL("rtsp://cam.invalid/cam")})
		time.Sleep(time.Second / 2)
		if e := p.Status()[0].LastError; !strings.Contains(e, "camera redirected more than 5 times; refused") {
			t.Errorf("last_error %q", e)
		}
		time.Sleep(5 * time.Minute)
		stop()
		sessions := p.Status()[0].Reconnects
		if n := uint64(cam.conns.Load()); n != sessions*(maxRedirects+1) && n != (sessions+1)*(maxRedirects+1) {
			t.Errorf("%d connections in %d sessions; want %d per session", n, sessions, maxRedirects+1)
		}
		// 1+2+4+8+16 s, then 30 s (±20 %).
		if sessions < 6 || sessions > 18 {
			t.Errorf("%d sessions in 5 minutes: want the usual backoff", sessions)
		}
	})
}

// TestRedirectSameHostFollowed: a redirect to another path of the same
// host:port is followed, with the camera's credentials, and the camera plays.
func TestRedirectSameHostFollowed(t *testing.T) {
	var addr string
	cam := &scriptCam{respond: func(_ int64, req *base.Request) *base.Response {
		if req.Method == base.Describe && req.URL.Path == "/cam" {
			return &base.Response{StatusCode: base.StatusFound, Header: base.Header{
				"Location": base.HeaderValue{"rtsp://" + addr + "/real"},
			}}
		}
		return basicChallenge(req)
	}, afterPlay: func(ctx context.Context, w *camWriter) { w.h264(ctx, time.Minute) }}
	addr = cam.listen(t)
	log, _ := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "s", URL: MustParseSecretURL("rtsp://admin:s3cret@" + addr + "/cam"),
		Mode: "passthrough"}), log)
	r := waitReader(t, "a reader", 10*time.Second, readerURL(p, "s"))
	waitFor(t, "packets", 5*time.Second, func() bool { return r.packets.Load() > 5 })
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:s3cret"))
	found := false
	for _, l := range cam.requests() {
		if strings.HasPrefix(l, "DESCRIBE rtsp://"+addr+"/real "+auth) {
			found = true
		}
	}
	if !found {
		t.Errorf("no authenticated DESCRIBE of the redirect target: %q", cam.requests())
	}
}

// dialAddr must name a camera's address exactly as gortsplib dials it, or
// the guard would refuse the camera itself.
func TestDialAddr(t *testing.T) {
	for _, tc := range []struct{ scheme, host, want string }{
		{"rtsp", "10.0.0.5", "10.0.0.5:554"},
		{"rtsps", "10.0.0.5", "10.0.0.5:322"},
		{"rtsp", "10.0.0.5:8554", "10.0.0.5:8554"},
		{"rtsp", "[fe80::1]", "[fe80::1]:554"},
		{"rtsps", "[::1]:8322", "[::1]:8322"},
		{"rtsp", "Cam.Example", "Cam.Example:554"},
	} {
		if got := dialAddr(tc.scheme, tc.host); got != tc.want {
			t.Errorf("dialAddr(%s, %s) = %s, want %s", tc.scheme, tc.host, got, tc.want)
		}
	}
	g := newRedirectGuard(&base.URL{Scheme: "rtsp", Host: "Cam.Example"})
	if err := g.check("cam.example:554"); err != nil {
		t.Errorf("host names differing in case: %v", err)
	}
	if err := g.check("cam.example:555"); err == nil || !strings.Contains(err.Error(), "(cam.example:555)") {
		t.Errorf("another port: %v", err)
	}
}

// TestUDPSourceIgnored: a camera's SETUP answer may name a "source" address
// for UDP media. gortsplib would send the firewall-opening packets and RTCP
// receiver reports to it and accept RTP from it only, so a camera could
// point the proxy's UDP at any host. The proxy ignores it: UDP goes to, and
// is accepted from, the address of the RTSP connection (the camera's).
func TestUDPSourceIgnored(t *testing.T) {
	var mu sync.Mutex
	var rtpConn net.PacketConn
	var client *net.UDPAddr
	open := func() (net.PacketConn, int) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc, pc.LocalAddr().(*net.UDPAddr).Port
	}
	cam := &scriptCam{respond: func(_ int64, req *base.Request) *base.Response {
		if req.Method != base.Setup {
			return nil
		}
		var tr headers.Transports
		if err := tr.Unmarshal(req.Header["Transport"]); err != nil || tr[0].ClientPorts == nil {
			return &base.Response{StatusCode: base.StatusUnsupportedTransport}
		}
		pc, p1 := open()
		_, p2 := open()
		mu.Lock()
		rtpConn, client = pc, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tr[0].ClientPorts[0]}
		mu.Unlock()
		src := "::1" // another host than the camera's 127.0.0.1 (still loopback)
		uni := headers.TransportDeliveryUnicast
		th := headers.Transport{Protocol: headers.TransportProtocolUDP, Delivery: &uni, Source2: &src,
			ClientPorts: tr[0].ClientPorts, ServerPorts: &[2]int{p1, p2}}
		return &base.Response{StatusCode: base.StatusOK, Header: base.Header{
			"Transport": th.Marshal(), "Session": base.HeaderValue{"12345678;timeout=60"},
		}}
	}, afterPlay: func(ctx context.Context, _ *camWriter) {
		mu.Lock()
		pc, to := rtpConn, client
		mu.Unlock()
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			<-tick.C
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i),
				Timestamp: uint32(i * 3600), Marker: true, SSRC: 1}, Payload: []byte{0x65, 0x88, 0x84, 0x00}}
			b, _ := pkt.Marshal()
			if _, err := pc.WriteTo(b, to); err != nil {
				return
			}
		}
	}}
	addr := cam.listen(t)
	log, _ := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "u", URL: MustParseSecretURL("rtsp://" + addr + "/cam"), Transport: TransportUDP}), log)
	waitFor(t, "UDP media from the camera's address", 10*time.Second, func() bool {
		st := p.Status()[0]
		return st.State == stateUp && st.PacketsIn > 10
	})
}

var transportCases = []struct{ in, want string }{
	{"RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001;source=10.9.9.9", "RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001"},
	{"RTP/AVP;unicast;source=cam.example;client_port=5000-5001;server_port=6000-6001;ssrc=0000ABCD", "RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001;ssrc=0000ABCD"},
	{"RTP/AVP/TCP;unicast;interleaved=0-1", ""},
	{"RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001", ""},
	{"garbage;source=1.2.3.4", ""},
}

// TestDropTransportSource: only the source parameter goes; the rest of the
// header reads the same to gortsplib.
func TestDropTransportSource(t *testing.T) {
	for _, tc := range transportCases {
		res := &base.Response{Header: base.Header{"Transport": base.HeaderValue{tc.in}}}
		dropped := dropTransportSource(res)
		if dropped != (tc.want != "") {
			t.Errorf("%s: dropped %v", tc.in, dropped)
			continue
		}
		if !dropped {
			if res.Header["Transport"][0] != tc.in {
				t.Errorf("%s: changed to %s", tc.in, res.Header["Transport"][0])
			}
			continue
		}
		var got, want headers.Transport
		if err := got.Unmarshal(res.Header["Transport"]); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		want.Unmarshal(base.HeaderValue{tc.want})
		if got.Source2 != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %s, want %s", tc.in, got.Marshal(), tc.want)
		}
	}
}

func FuzzDropTransportSource(f *testing.F) {
	for _, tc := range transportCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		res := &base.Response{Header: base.Header{"Transport": base.HeaderValue{in}}}
		dropTransportSource(res)
		var th headers.Transport
		if th.Unmarshal(res.Header["Transport"]) == nil && th.Source2 != nil {
			t.Fatalf("%q: source left in %q", in, res.Header["Transport"])
		}
	})
}

package proxy

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// oddSDP is what some vendor cameras send: a good H.264 track, an AAC track
// whose config gortsplib rejects (failing DESCRIBE for every track) and an
// ONVIF metadata track.
const oddSDP = "v=0\r\no=- 1 1 IN IP4 10.9.8.7\r\ns=Vendor Camera\r\nt=0 0\r\na=control:*\r\n" +
	"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
	"a=fmtp:96 packetization-mode=1;profile-level-id=42C00D;sprop-parameter-sets=Z0LADdoFB+wFqDAwNSgAAAMACAAAAwGUeKFV,aM48gA==\r\n" +
	"a=control:trackID=1\r\n" +
	"m=audio 0 RTP/AVP 98\r\na=rtpmap:98 MPEG4-GENERIC/16000/1\r\na=fmtp:98 streamtype=5;config=zz\r\na=control:trackID=2\r\n" +
	"m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:trackID=3\r\n" +
	"m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\na=control:trackID=4\r\n" // ONVIF back-channel

func TestLenientDescription(t *testing.T) {
	for _, tc := range lenientCases {
		d, dropped, err := lenientDescription([]byte(tc.sdp))
		if tc.medias < 0 {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || len(d.Medias) != tc.medias || dropped != tc.dropped {
			t.Errorf("%s: %d medias, %d dropped, %v; want %d, %d", tc.name, lenMedias(d), dropped, err, tc.medias, tc.dropped)
		}
	}
}

func lenMedias(d *description.Session) int {
	if d == nil {
		return -1
	}
	return len(d.Medias)
}

var lenientCases = []struct {
	name            string
	sdp             string
	medias, dropped int // medias -1: an error
}{
	{"vendor", oddSDP, 3, 1},
	{"lf only", strings.ReplaceAll(oddSDP, "\r\n", "\n"), 3, 1},
	{"nothing parses", "v=0\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP\r\n", -1, 0},
	{"no media", "v=0\r\ns=x\r\nt=0 0\r\n", -1, 0},
	{"too big", oddSDP + strings.Repeat("a=x:y\r\n", 10000), -1, 0},
	{"too many", "v=0\r\ns=x\r\nt=0 0\r\n" + strings.Repeat("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", 40), -1, 0},
}

func FuzzLenientDescription(f *testing.F) {
	for _, tc := range lenientCases {
		f.Add([]byte(tc.sdp))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, dropped, err := lenientDescription(b)
		if err == nil && (len(d.Medias) == 0 || dropped < 0) {
			t.Fatalf("accepted an SDP with no media: %+v", d)
		}
	})
}

// fakeVendorCamera is a minimal RTSP camera that sends oddSDP and streams
// H.264 over TCP interleaved channel 0 after PLAY.
func fakeVendorCamera(t *testing.T) (url string, requests func() []string) {
	var setups []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var setupMu sync.Mutex
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveFakeCamera(nc, ln.Addr().String(), &setupMu, &setups) })
		}
	})
	return "rtsp://" + ln.Addr().String() + "/cam", func() []string {
		setupMu.Lock()
		defer setupMu.Unlock()
		return slices.Clone(setups)
	}
}

func serveFakeCamera(nc net.Conn, addr string, setupMu *sync.Mutex, setups *[]string) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	var mu sync.Mutex
	stop := make(chan struct{})
	defer close(stop)
	for {
		var req base.Request
		if err := req.Unmarshal(br); err != nil {
			return
		}
		res := base.Response{StatusCode: base.StatusOK, Header: base.Header{"CSeq": req.Header["CSeq"], "Session": base.HeaderValue{"12345678"}}}
		switch req.Method {
		case base.Options:
			res.Header["Public"] = base.HeaderValue{"DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"}
		case base.Describe:
			res.Header["Content-Type"] = base.HeaderValue{"application/sdp"}
			res.Header["Content-Base"] = base.HeaderValue{"rtsp://" + addr + "/cam/"}
			res.Body = []byte(oddSDP)
		case base.Setup:
			setupMu.Lock()
			*setups = append(*setups, req.URL.String())
			setupMu.Unlock()
			var tr headers.Transports
			tr.Unmarshal(req.Header["Transport"])
			res.Header["Transport"] = tr[0].Marshal()
		case base.SetParameter, base.GetParameter:
			setupMu.Lock()
			*setups = append(*setups, string(req.Method)+" "+string(req.Body))
			setupMu.Unlock()
		case base.Play:
			go func() {
				seq := uint16(0)
				ts := uint32(0)
				tick := time.NewTicker(40 * time.Millisecond)
				defer tick.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					nal := []byte{0x41, 0x9a, 0x00, 0x01} // P slice
					if i%25 == 0 {
						nal = []byte{0x65, 0x88, 0x84, 0x00} // IDR slice
					}
					pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, Marker: true, SSRC: 1}, Payload: nal}
					b, _ := pkt.Marshal()
					fr := base.InterleavedFrame{Channel: 0, Payload: b}
					out, _ := fr.Marshal()
					mu.Lock()
					_, err := nc.Write(out)
					mu.Unlock()
					if err != nil {
						return
					}
					seq++
					ts += 3600
				}
			}()
		case base.Teardown:
			return
		}
		out, _ := res.Marshal()
		mu.Lock()
		nc.Write(out)
		mu.Unlock()
	}
}

// TestLenientCamera reads a camera whose SDP gortsplib rejects as a whole:
// the proxy keeps the video track, drops the unparsable one, the metadata
// one and the ONVIF back-channel, and readers get the video only.
func TestLenientCamera(t *testing.T) {
	url, requests := fakeVendorCamera(t)
	log, lb := newLog(t)
	p := startProxy(t, testConfig(Camera{Name: "v", URL: MustParseSecretURL(url), Mode: Mode(rebuild.ModePassthrough)}), log)
	r := waitReader(t, "reader", 10*time.Second, readerURL(p, "v"))
	waitFor(t, "packets", 5*time.Second, func() bool { return r.packets.Load() > 5 })
	if len(r.desc.Medias) != 1 || r.desc.Medias[0].Type != description.MediaTypeVideo {
		t.Errorf("reader medias: %+v", r.desc.Medias)
	}
	if !strings.Contains(lb.String(), "camera SDP has media sections that cannot be parsed") {
		t.Error("no warning about the dropped SDP section")
	}
	if d := p.Status()[0].Dropped["sdp_media"]; d.Units != 1 {
		t.Errorf("sdp_media drops = %d, want 1", d.Units)
	}
	// A reader's SET_PARAMETER / GET_PARAMETER are answered by the proxy,
	// never relayed to the camera.
	for _, m := range []base.Method{base.SetParameter, base.GetParameter} {
		u, _ := base.ParseURL(readerURL(p, "v"))
		req := base.Request{Method: m, URL: u, Header: base.Header{"CSeq": base.HeaderValue{"1"}, "Content-Type": base.HeaderValue{"text/parameters"}},
			Body: []byte("relay-me: 1\r\n")}
		res, err := rawRequestReq(p.RTSPAddr().String(), &req)
		if err != nil || res.StatusCode != base.StatusOK {
			t.Errorf("%s: %v %v", m, res, err)
		}
	}
	if h := httpGet(t, "http://"+p.AdminAddr().String()+"/healthz"); h != "ok\n" {
		t.Errorf("/healthz = %q", h)
	}
	// Only the video track is set up at the camera: not the metadata track,
	// not the ONVIF back-channel (which is not offered to readers either).
	p.Close()
	setups := requests()
	for _, u := range setups {
		if strings.Contains(u, "relay-me") {
			t.Errorf("a reader's request reached the camera: %s", u)
		} else if !strings.HasSuffix(u, "/cam/trackID=1") && !strings.HasPrefix(u, "GET_PARAMETER") {
			t.Errorf("the proxy set up %s at the camera", u)
		}
	}
	if len(setups) == 0 {
		t.Error("no SETUP seen")
	}
}

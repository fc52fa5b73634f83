package proxy

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// startFakeEdge is an edge that speaks the trunk protocol as play says:
// a pinned certificate, the catalogue cams, and for each play request
// whatever play writes.
func startFakeEdge(t *testing.T, k trunkKeys, coreFP string, cams []string, play func(name string, st *quic.Stream)) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", trunkTLS(cert, trunkPins(coreFP), true, testutil.Logger(t), "core"), trunkQUICConfig(Timeouts{Camera: 3 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					st, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						defer st.Close()
						var req trunkRequest
						if readJSONFrame(st, maxTrunkRequest, &req) != nil {
							return
						}
						if req.Op == trunkOpCatalogue {
							var ans trunkAnswer
							for _, c := range cams {
								ans.Cameras = append(ans.Cameras, trunkCameraInfo{Name: c, State: stateUp})
							}
							writeJSONFrame(st, ans)
							return
						}
						play(req.Camera, st)
					}()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTrunkHostileEdge: the core does not trust the edge. A camera whose
// frames break the protocol (a media index the SDP does not have, a frame
// over the size limit, an SDP that does not parse) is refused with the
// reason and retried; the trunk and the edge's other camera go on.
func TestTrunkHostileEdge(t *testing.T) {
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	sdp, err := testDesc().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	addr := startFakeEdge(t, edgeK, coreK.fp, []string{"good", "index", "huge", "sdp"}, func(name string, st *quic.Stream) {
		if name == "sdp" {
			writeJSONFrame(st, trunkAnswer{SDP: "v=0\r\nm=video"})
			return
		}
		writeJSONFrame(st, trunkAnswer{SDP: string(sdp)})
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}, Payload: []byte{0x65, 0x88, 0x80}}
		for i := 0; ; i++ {
			pkt.SequenceNumber = uint16(i)
			f, _ := packetFrame(0, pkt)
			switch {
			case name == "index" && i == 3:
				f[5] = 7
			case name == "huge" && i == 3:
				f = appendFrameHeader(nil, framePacket, 1<<20)
			}
			if _, err := st.Write(f); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	clog, _ := newLog(t)
	ccfg := coreConfig(addr, coreK, edgeK.fp, "*")
	ccfg.Trunks[0].AlwaysOn = true
	core := startProxy(t, ccfg, clog)
	want := map[string]string{
		"site-a/index": "media index 7, the SDP has 1",
		"site-a/huge":  "1048576 bytes, at most 65536",
		"site-a/sdp":   "SDP",
	}
	waitFor(t, "each hostile camera refused with its reason", 10*time.Second, func() bool {
		n := 0
		for _, s := range core.Status() {
			if w, ok := want[s.Name]; ok && s.Reconnects > 0 && strings.Contains(s.LastError, w) {
				n++
			}
		}
		return n == len(want)
	})
	for _, s := range core.Status() {
		if s.Name == "site-a/good" && (s.State != stateUp || s.Reconnects != 0 || s.PacketsIn == 0) {
			t.Errorf("the good camera was disturbed: %+v", s)
		}
	}
	if st := core.TrunksStatus().Trunks[0]; st.State != trunkUp || st.Reconnects != 0 {
		t.Errorf("the trunk was disturbed by one camera's bad frames: %+v", st)
	}

	// A reload keeps the trunk's cameras (they are not in cameras:).
	cfg := coreConfig(addr, coreK, edgeK.fp, "*")
	cfg.Trunks[0].AlwaysOn = true
	cfg.Cameras = []Camera{{Name: "local", URL: MustParseSecretURL("rtsp://127.0.0.1:1/x")}}
	if err := core.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range core.Status() {
		if s.Name == "site-a/good" {
			found = true
			if s.State != stateUp || s.Reconnects != 0 {
				t.Errorf("after a reload: %+v", s)
			}
		}
	}
	if !found || core.camera("local") == nil {
		t.Errorf("after a reload: %d cameras, site-a/good found %v", len(core.Status()), found)
	}
}

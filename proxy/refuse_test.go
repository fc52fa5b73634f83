package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

// A 640x360 High-profile SPS and its PPS, as x264 writes them.
var (
	goodSPS = []byte{0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x61, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96}
	goodPPS = []byte{0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0}
)

// startBadSPSCamera serves a camera whose SDP carries a valid SPS but whose
// stream then sends, in-band, an SPS with an impossible level_idc.
func startBadSPSCamera(t *testing.T) string {
	t.Helper()
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: goodSPS, PPS: goodPPS}
	medi := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}
	stream, url := startStreamServer(t, medi)
	enc, err := forma.CreateEncoder()
	if err != nil {
		t.Fatal(err)
	}
	badSPS := append([]byte(nil), goodSPS...)
	badSPS[3] = 0xfe // level_idc 254
	idr := append([]byte{0x65, 0x88, 0x84}, make([]byte, 200)...)
	everyFrame(t, func(i uint32) bool {
		pkts, err := enc.Encode([][]byte{badSPS, goodPPS, idr})
		if err != nil {
			return false
		}
		for _, p := range pkts {
			p.Timestamp = i * 3600
			_ = stream.WritePacketRTP(medi, p)
		}
		return true
	})
	return url
}

// everyFrame calls frame with 0, 1, 2... every 40 ms (25 fps) until the
// test ends or frame returns false.
func everyFrame(t *testing.T, frame func(i uint32) bool) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := uint32(0); ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if !frame(i) {
				return
			}
		}
	}()
}

// TestInvalidParameterSetsRefused: a camera that sends a malformed SPS in-band
// is refused with a clear log line and retried; the proxy keeps running and a
// healthy camera's reader keeps receiving.
func TestInvalidParameterSetsRefused(t *testing.T) {
	badURL := startBadSPSCamera(t)
	sim := startCamsim(t, "good")
	log, lb := newLog(t)
	cfg := testConfig(
		Camera{Name: "bad", URL: MustParseSecretURL(badURL)},
		Camera{Name: "good", URL: MustParseSecretURL(sim.URL("good"))},
	)
	p := startProxy(t, cfg, log)
	waitFor(t, "the healthy camera", 10*time.Second, func() bool { return cameraState(p, "good") == stateUp })
	r, err := dialReader(t, readerURL(p, "good"), gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal log line", 10*time.Second, func() bool {
		return strings.Contains(lb.String(), "camera stream refused: it sent invalid parameter sets")
	})
	if !strings.Contains(lb.String(), "level_idc 254") {
		t.Errorf("the log does not say what was wrong with the SPS:\n%s", lb.String())
	}
	before := r.packets.Load()
	time.Sleep(time.Second)
	if r.packets.Load() <= before {
		t.Fatal("the healthy camera's reader stopped receiving")
	}
	// The bad camera is retried (its reconnects count up), not given up on.
	waitFor(t, "a reconnect of the refused camera", 10*time.Second, func() bool {
		return strings.Count(lb.String(), "camera stream refused") >= 2
	})
}

package proxy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// startAVCamera serves a camera with two medias, H.264 video and G.711
// audio, sending a keyframe and an audio packet every 40 ms.
func startAVCamera(t *testing.T) string {
	t.Helper()
	vf := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: goodSPS, PPS: goodPPS}
	af := &format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}
	video := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{vf}}
	audio := &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{af}}
	stream, url := startStreamServer(t, video, audio)
	enc, err := vf.CreateEncoder()
	if err != nil {
		t.Fatal(err)
	}
	idr := append([]byte{0x65, 0x88, 0x84}, make([]byte, 200)...)
	everyFrame(t, func(i uint32) bool {
		pkts, err := enc.Encode([][]byte{goodSPS, goodPPS, idr})
		if err != nil {
			return false
		}
		for _, p := range pkts {
			p.Timestamp = i * 3600
			_ = stream.WritePacketRTP(video, p)
		}
		_ = stream.WritePacketRTP(audio, &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: i * 320, SSRC: 1},
			Payload: make([]byte, 320),
		})
		return true
	})
	return url
}

// TestConcurrentUDPSetups: many UDP readers (and a few TCP ones) from one
// address SETUP the two medias of one camera at the same time. gortsplib (v5.6.4) checks a new UDP
// reader's client ports against every other UDP reader of the stream from
// the same address by ranging over that reader's set-up medias, a map the
// other reader's own SETUP writes under another lock: without the proxy's
// SETUP serialization the race detector reports it, and at worst the
// process dies with "concurrent map iteration and map write", which no
// recover catches.
func TestConcurrentUDPSetups(t *testing.T) {
	url := startAVCamera(t)
	log, _ := newLog(t)
	cfg := withUDP(t, testConfig(Camera{Name: "av", URL: MustParseSecretURL(url)}))
	p := startProxy(t, cfg, log)
	rawURL := readerURL(p, "av")
	u, err := base.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	var desc *description.Session
	waitFor(t, "camera up", 10*time.Second, func() bool {
		cl := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, ReadTimeout: 5 * time.Second}
		if cl.Start() != nil {
			return false
		}
		defer cl.Close()
		d, _, err := cl.Describe(u)
		desc = d
		return err == nil
	})
	if len(desc.Medias) != 2 {
		t.Fatalf("the proxy offers %d medias, want 2", len(desc.Medias))
	}

	const readers, rounds = 16, 8
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		clients := make(chan *gortsplib.Client, readers)
		start := make(chan struct{})
		for i := range readers {
			wg.Go(func() {
				proto := gortsplib.ProtocolUDP
				if i%4 == 3 {
					// TCP readers too: a UDP reader's first SETUP also reads
					// theirs (gortsplib replaces a session's transport at each
					// SETUP).
					proto = gortsplib.ProtocolTCP
				}
				cl := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto, ReadTimeout: 5 * time.Second}
				if err := cl.Start(); err != nil {
					errs <- err
					return
				}
				clients <- cl
				d, _, err := cl.Describe(u)
				if err != nil {
					errs <- fmt.Errorf("reader %d: DESCRIBE: %w", i, err)
					return
				}
				<-start
				if err := cl.SetupAll(d.BaseURL, d.Medias); err != nil {
					errs <- fmt.Errorf("reader %d: SETUP: %w", i, err)
				}
			})
		}
		// Let the DESCRIBEs finish so that the SETUPs overlap.
		time.Sleep(200 * time.Millisecond)
		close(start)
		wg.Wait()
		close(errs)
		close(clients)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		for cl := range clients {
			cl.Close()
		}
	}
}

// TestSetupGateBusyRefuses: a UDP reader whose camera's SETUP gate stays
// held is answered 503 after setupWaitMax, with a log line, and SETUPs go
// through again once the gate is given back.
func TestSetupGateBusyRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("waits setupWaitMax")
	}
	url := startAVCamera(t)
	log, logs := newLog(t)
	cfg := withUDP(t, testConfig(Camera{Name: "av", URL: MustParseSecretURL(url)}))
	p := startProxy(t, cfg, log)
	rawURL := readerURL(p, "av")
	waitFor(t, "camera up", 10*time.Second, func() bool {
		r, err := dialReaderNoCleanup(rawURL, gortsplib.ProtocolUDP)
		if err == nil {
			r.cl.Close()
		}
		return err == nil
	})
	h := p.servers[0].Handler.(*handler)
	st, err := p.camera("av").streamFor(p.servers[0], time.Second)
	if err != nil {
		t.Fatal(err)
	}
	holder := &gortsplib.ServerConn{}
	if !h.setups.acquire(holder, st, false, time.Second, time.Minute, nil) {
		t.Fatal("gate busy with no reader")
	}
	start := time.Now()
	if _, err := dialReaderNoCleanup(rawURL, gortsplib.ProtocolUDP); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("UDP reader while the gate is held: err = %v, want a 503", err)
	}
	if d := time.Since(start); d < setupWaitMax {
		t.Errorf("refused after %v, want at least %v", d, setupWaitMax)
	}
	if !strings.Contains(logs.String(), "SETUP gate stayed busy") {
		t.Error("no log line for the refused SETUP")
	}
	// A TCP reader only takes the gate shared: it is not held up.
	r, err := dialReader(t, rawURL, gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatalf("TCP reader while the gate is held shared: %v", err)
	}
	r.cl.Close()
	h.setups.release(holder)
	if r, err := dialReader(t, rawURL, gortsplib.ProtocolUDP); err != nil {
		t.Fatalf("UDP reader after the gate was given back: %v", err)
	} else {
		r.cl.Close()
	}
}

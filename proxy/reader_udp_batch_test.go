package proxy

import (
	"bytes"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"golang.org/x/net/ipv4"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// udpTestTracks returns the tracks of a camera with H.264 video and PCMU audio.
func udpTestTracks(t *testing.T) (video, audio *rebuild.Track) {
	t.Helper()
	desc := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: goodSPS, PPS: goodPPS}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}}},
	}}
	plan, err := rebuild.NewPlan(desc, rebuild.Config{Mode: rebuild.ModePassthrough}, &rebuild.Counters{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Tracks) != 2 {
		t.Fatalf("%d tracks, want 2", len(plan.Tracks))
	}
	return plan.Tracks[0], plan.Tracks[1]
}

func listenLoopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(8 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// udpDatagram is what a test reader received: from where, and the bytes.
type udpDatagram struct {
	from string
	b    []byte
}

// collectUDP reads c into a slice until c is closed.
func collectUDP(c *net.UDPConn, mu *sync.Mutex, into *[]udpDatagram) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		mu.Lock()
		*into = append(*into, udpDatagram{from.String(), bytes.Clone(buf[:n])})
		mu.Unlock()
	}
}

// TestUDPBatchOrderAddressesCounts writes a cached GOP (paced, sent in
// batches by the pacing goroutine) then live frames (batched per frame by
// the stream's goroutine) of video and audio to a batched UDP reader on
// loopback. The reader must get every packet, in the order written, from
// the server's RTP port, with each media's SSRC, on each media's client
// port; its counters must match; a packet too large for a datagram is
// counted as dropped; sender reports come from the server's RTCP port and
// state the frames' own wall-clock times.
func TestUDPBatchOrderAddressesCounts(t *testing.T) {
	video, audio := udpTestTracks(t)
	srvRTP, srvRTCP := listenLoopbackUDP(t), listenLoopbackUDP(t)
	socks := &udpSockets{rtp: srvRTP, rtcp: srvRTCP, rtpB: ipv4.NewPacketConn(srvRTP)}
	vRTP, vRTCP, aRTP, aRTCP := listenLoopbackUDP(t), listenLoopbackUDP(t), listenLoopbackUDP(t), listenLoopbackUDP(t)
	port := func(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }
	ports := map[*description.Media][2]int{video.Media(): {port(vRTP), port(vRTCP)}, audio.Media(): {port(aRTP), port(aRTCP)}}
	ssrcs := map[*description.Media]uint32{video.Media(): 0x1111, audio.Media(): 0x2222}

	r := &reader{}
	o := newUDPOutput(nil, r, nil, 10000)
	b, ok := newUDPBatch(socks, r, net.IPv4(127, 0, 0, 1), "", []*description.Media{video.Media(), audio.Media()}, ports, ssrcs, time.Second)
	if !ok {
		t.Fatal("newUDPBatch refused a reader with ports and SSRCs")
	}
	o.b = b
	defer o.stop()

	var mu sync.Mutex
	var got [4][]udpDatagram // video RTP, video RTCP, audio RTP, audio RTCP
	for i, c := range []*net.UDPConn{vRTP, vRTCP, aRTP, aRTCP} {
		go collectUDP(c, &mu, &got[i])
	}

	const frames, interval = 40, 20 * time.Millisecond
	w := &udpFrameWriter{t: t, o: o, video: video, audio: audio, bigAt: []int{5, frames + 2}, // one queued, one live
		frameNTP: map[uint32]time.Time{}, vseq: 1000, aseq: 5000}
	start := time.Now()
	for f := range frames { // the cached GOP, 0.8 s old: paced over 0.2 s
		w.frame(f, start.Add(time.Duration(f-frames)*interval))
	}
	for f := frames; f < frames+15; f++ { // live
		time.Sleep(interval)
		w.frame(f, time.Now())
	}
	wantV, wantA, sentBytes, streamDropped, frameNTP := w.wantV, w.wantA, w.sentBytes, w.streamDropped, w.frameNTP

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got[0]) + len(got[2])
		mu.Unlock()
		if n == len(wantV)+len(wantA) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The last live frame went out when it ended, with its marker.
	mu.Lock()
	defer mu.Unlock()
	checkUDPStream(t, "video", got[0], srvRTP.LocalAddr().String(), 0x1111, wantV)
	checkUDPStream(t, "audio", got[2], srvRTP.LocalAddr().String(), 0x2222, wantA)
	if p := r.packets.Load(); p != uint64(len(wantV)+len(wantA)) {
		t.Errorf("packets counter %d, want %d", p, len(wantV)+len(wantA))
	}
	if by := r.bytes.Load(); by != sentBytes {
		t.Errorf("bytes counter %d, want %d", by, sentBytes)
	}
	if d := r.dropped.Load() + streamDropped; d != 2 {
		t.Errorf("%d packets counted as dropped, want 2 (the oversized ones)", d)
	}
	checkUDPReports(t, got[1], srvRTCP.LocalAddr().String(), 0x1111, frameNTP)
}

// udpFrameWriter writes frames of 12 video packets and one audio packet
// to o, remembering what the reader must get.
type udpFrameWriter struct {
	t            *testing.T
	o            *udpOutput
	video, audio *rebuild.Track
	bigAt        []int // frames whose fourth packet is too big for a datagram

	wantV, wantA             []uint16
	sentBytes, streamDropped uint64
	frameNTP                 map[uint32]time.Time
	vseq, aseq               uint16
}

func (w *udpFrameWriter) frame(f int, ntp time.Time) {
	const per = 12
	ts := uint32(f) * 1800
	w.frameNTP[ts] = ntp
	for k := range per {
		big := k == 3 && slices.Contains(w.bigAt, f)
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: w.vseq, Timestamp: ts, Marker: k == per-1},
			Payload: bytes.Repeat([]byte{byte(f), byte(k)}, 600)}
		if big {
			pkt.Payload = make([]byte, 2000)
		} else {
			w.wantV = append(w.wantV, w.vseq)
			w.sentBytes += uint64(pkt.MarshalSize())
		}
		w.vseq++
		// A packet written at once returns its error to the stream (which
		// counts dropped); a queued one's is counted by the output.
		full, dropped, err := w.o.write(w.video, pkt, time.Now(), ntp)
		if full || (err != nil) != (dropped != 0) || !big && err != nil {
			w.t.Fatalf("frame %d packet %d: full=%v dropped=%d err=%v", f, k, full, dropped, err)
		}
		w.streamDropped += dropped
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: w.aseq, Timestamp: uint32(f) * 160}, Payload: make([]byte, 160)}
	w.wantA = append(w.wantA, w.aseq)
	w.sentBytes += uint64(pkt.MarshalSize())
	w.aseq++
	if full, _, err := w.o.write(w.audio, pkt, time.Now(), ntp); full || err != nil {
		w.t.Fatalf("frame %d audio: full=%v err=%v", f, full, err)
	}
}

func checkUDPStream(t *testing.T, what string, got []udpDatagram, from string, ssrc uint32, want []uint16) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d packets received, want %d", what, len(got), len(want))
	}
	for i, d := range got {
		var pkt rtp.Packet
		if err := pkt.Unmarshal(d.b); err != nil {
			t.Fatalf("%s packet %d: %v", what, i, err)
		}
		if d.from != from {
			t.Fatalf("%s packet %d came from %s, want the server's RTP port %s", what, i, d.from, from)
		}
		if pkt.SSRC != ssrc {
			t.Fatalf("%s packet %d: SSRC %#x, want %#x", what, i, pkt.SSRC, ssrc)
		}
		if i < len(want) && pkt.SequenceNumber != want[i] {
			t.Fatalf("%s packet %d: sequence number %d, want %d (order or loss)", what, i, pkt.SequenceNumber, want[i])
		}
	}
}

func checkUDPReports(t *testing.T, got []udpDatagram, from string, ssrc uint32, frameNTP map[uint32]time.Time) {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("no RTCP sender report")
	}
	for _, d := range got {
		if d.from != from {
			t.Errorf("sender report from %s, want the server's RTCP port %s", d.from, from)
		}
		var sr rtcp.SenderReport
		if err := sr.Unmarshal(d.b); err != nil {
			t.Fatal(err)
		}
		want, ok := frameNTP[sr.RTPTime]
		if sr.SSRC != ssrc || !ok || sr.NTPTime != ntpTime(want) || sr.PacketCount == 0 {
			t.Errorf("sender report %+v: want SSRC %#x and the NTP time of frame RTP time %d (%v)", sr, ssrc, sr.RTPTime, want)
		}
	}
}

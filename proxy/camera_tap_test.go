package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/conn"
	"github.com/pion/rtp"
)

// A camera read over TCP has its RTP taken by the tap once it plays, and a
// reader gets it all the same; gortsplib keeps the session (its read
// time-out sees the tap's keep-alive frames).
func TestCameraTapTakesRTP(t *testing.T) {
	for _, coalesce := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(fmt.Sprint("read_coalesce=", coalesce), func(t *testing.T) { testCameraTapTakesRTP(t, coalesce) })
	}
}

func testCameraTapTakesRTP(t *testing.T, coalesce time.Duration) {
	sim := startCamsim(t, "cam1")
	cfg := testConfig(Camera{Name: "lobby", URL: MustParseSecretURL(sim.URL("cam1")), Transport: TransportTCP})
	cfg.Timeouts.Camera = 2 * time.Second
	cfg.CameraSide.ReadCoalesce = coalesce
	log, _ := newLog(t)
	p := startProxy(t, cfg, log)
	r := waitReader(t, "a reader of the camera", 10*time.Second, readerURL(p, "lobby"))
	src := p.camera("lobby").src
	waitFor(t, "packets taken by the camera tap", 5*time.Second, func() bool { return src.tapped.Load() > 50 })
	n := r.packets.Load()
	// Longer than the camera time-out: the session must go on.
	time.Sleep(3 * time.Second)
	if got := r.packets.Load(); got <= n+50 {
		t.Fatalf("reader got %d packets in 3 s after %d", got-n, n)
	}
	if tp, in := src.tapped.Load(), src.packetsIn.Load(); tp+10 < in*9/10 {
		t.Errorf("tap took %d of %d camera packets", tp, in)
	}
	if l := src.lost.Load(); l != 0 {
		t.Errorf("%d packets counted lost", l)
	}
	if coalesce > 0 && reactorAvailable {
		if r, _ := reactorFor(coalesce); r.registered() != 1 {
			t.Errorf("the reactor has %d sockets, want the camera's", r.registered())
		}
	}
}

// The tap takes exactly the RTP frames of its channels and payload types
// once armed, in order, whatever the TCP segmentation, and gortsplib's
// reader gets every other message unchanged: RTSP messages with and without
// a body, RTCP, frames of other channels and payload types. Half the seeds
// move the socket to the camera-read reactor once armed
// (camera_side.read_coalesce).
func TestCameraTapByteStream(t *testing.T) {
	if !fastSockets {
		t.Skip("no read-ahead connection on this platform")
	}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		tc, peer := tcpPair(t)
		c := newReadAheadConn(tc.Conn).(*readAheadConn)
		tap := &cameraTap{}
		c.tap = tap
		if seed%2 == 1 {
			c.coalesce = time.Duration(seed%4) * time.Millisecond
		}
		data, want, wantRTP := tapWire(rng)

		var gotRTP [][]byte
		tap.add(0, 96, func(p *rtp.Packet, _ time.Time) {
			b, _ := p.Marshal()
			gotRTP = append(gotRTP, b)
		}, func(n uint64) { t.Errorf("seed %d: %d packets counted lost", seed, n) }, nil)

		go func() {
			rest := data
			for len(rest) > 0 {
				n := min(len(rest), 1+rng.IntN(3000))
				if _, err := peer.Write(rest[:n]); err != nil {
					return
				}
				rest = rest[n:]
				if rng.IntN(4) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		got := readPastTap(t, seed, c, tap, len(want))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: gortsplib read %d messages, want %d (or other ones)", seed, len(got), len(want))
		}
		if !reflect.DeepEqual(gotRTP, wantRTP) {
			t.Fatalf("seed %d: the tap delivered %d packets, want %d (or other ones)", seed, len(gotRTP), len(wantRTP))
		}
		if moved := c.rfd.Load() != nil; moved != (seed%2 == 1 && reactorAvailable) {
			t.Fatalf("seed %d: moved to the reactor: %v", seed, moved)
		}
		c.Close()
	}
}

// tapWire is a camera's side of one TCP session for
// TestCameraTapByteStream: the bytes, the messages gortsplib must read in
// order (responses as "status cseq", frames as their payloads), and the RTP
// packets the tap must take (channel 0, payload type 96).
func tapWire(rng *rand.Rand) (data []byte, want []any, wantRTP [][]byte) {
	var wire bytes.Buffer
	frame := func(ch byte, payload []byte) {
		wire.Write([]byte{'$', ch, byte(len(payload) >> 8), byte(len(payload))})
		wire.Write(payload)
	}
	rtpPkt := func(pt uint8, seq uint16) []byte {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 3600}, Payload: bytes.Repeat([]byte{byte(seq)}, 1+rng.IntN(1400))}
		b, _ := p.Marshal()
		return b
	}
	// Before PLAY (the tap not armed yet): a DESCRIBE answer, then the PLAY answer.
	sdp := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\n"
	wire.WriteString("RTSP/1.0 200 OK\r\nCSeq: 2\r\ncontent-length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp)
	want = append(want, "200 2")
	wire.WriteString("RTSP/1.0 200 OK\r\nCSeq: 4\r\n\r\n")
	want = append(want, "200 4")
	seq := uint16(65000)
	for i := range 400 {
		switch rng.IntN(10) {
		case 0:
			b := []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
			frame(1, b) // RTCP
			want = append(want, b)
		case 1:
			b := rtpPkt(97, 1) // another payload type
			frame(0, b)
			want = append(want, b)
		case 2:
			b := rtpPkt(96, 2) // another channel
			frame(4, b)
			want = append(want, b)
		case 3:
			wire.WriteString("RTSP/1.0 200 OK\r\nCSeq: " + strconv.Itoa(10+i) + "\r\n\r\n")
			want = append(want, "200 "+strconv.Itoa(10+i))
		default:
			b := rtpPkt(96, seq)
			seq++
			frame(0, b)
			wantRTP = append(wantRTP, b)
		}
	}
	wire.WriteString("RTSP/1.0 200 OK\r\nCSeq: 9999\r\n\r\n")
	want = append(want, "200 9999")
	return wire.Bytes(), want, wantRTP
}

// readPastTap reads n messages through c as gortsplib's client does,
// arming the tap after the second (the PLAY answer) and skipping its
// keep-alive frames.
func readPastTap(t *testing.T, seed uint64, c *readAheadConn, tap *cameraTap, n int) []any {
	var got []any
	rc := conn.NewConn(bufio.NewReaderSize(c, 4096), io.Discard)
	for len(got) < n {
		m, err := rc.Read()
		if err != nil {
			t.Fatalf("seed %d: gortsplib's reader: %v after %d messages", seed, err, len(got))
		}
		switch m := m.(type) {
		case *base.Response:
			got = append(got, fmt.Sprintf("%d %s", m.StatusCode, m.Header["CSeq"][0]))
			if len(got) == 2 {
				if !tap.arm() {
					t.Fatal("no idle channel")
				}
			}
		case *base.InterleavedFrame:
			if m.Channel == int(tap.idle) && len(m.Payload) == 0 {
				continue // keep-alive
			}
			got = append(got, m.Payload)
		}
	}
	return got
}

// A tap with no track (a session over UDP, or a SETUP answer without
// interleaved channels) is never armed: gortsplib must not see its
// keep-alive frames there.
func TestCameraTapNotArmedWithoutTracks(t *testing.T) {
	var tap cameraTap
	if tap.arm() || tap.armed.Load() {
		t.Fatal("a tap without tracks armed")
	}
	tap.add(0, 96, func(*rtp.Packet, time.Time) {}, func(uint64) {}, nil)
	if !tap.arm() || tap.idle == 0 || tap.idle == 1 {
		t.Fatalf("a tap with a track on 0-1: armed %v, keep-alive channel %d", tap.armed.Load(), tap.idle)
	}
}

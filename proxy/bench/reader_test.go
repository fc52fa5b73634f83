package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
)

// interleaved returns an interleaved frame of an RTP packet (channel ch,
// sequence number seq, payload of n bytes).
func interleaved(ch byte, seq uint16, n int) []byte {
	p := make([]byte, 4+12+n)
	p[0], p[1] = '$', ch
	binary.BigEndian.PutUint16(p[2:], uint16(12+n))
	p[4] = 0x80
	p[5] = 96
	binary.BigEndian.PutUint16(p[6:], seq)
	binary.BigEndian.PutUint32(p[8:], 9000)
	return p
}

// TestFrameBufSplitAndLoss feeds interleaved frames, an RTSP response and
// RTCP through reads of 1 to 3 bytes: every packet must come out whole,
// and the gap of one sequence number must be counted as one lost packet.
func TestFrameBufSplitAndLoss(t *testing.T) {
	var stream []byte
	stream = append(stream, interleaved(0, 65534, 100)...)
	stream = append(stream, interleaved(0, 65535, 1400)...)
	stream = append(stream, "RTSP/1.0 200 OK\r\nCSeq: 5\r\ncontent-length: 3\r\n\r\nabc"...)
	stream = append(stream, interleaved(1, 7, 20)...) // RTCP: not counted
	stream = append(stream, interleaved(0, 1, 10)...) // 0 is missing
	pos, step := 0, 0
	fb := &frameBuf{buf: make([]byte, 4096), read: func(p []byte) (int, time.Time, error) {
		step++
		n := min(len(p), 1+step%3, len(stream)-pos)
		if n == 0 {
			return 0, time.Time{}, net.ErrClosed
		}
		copy(p, stream[pos:pos+n])
		pos += n
		return n, time.Time{}, nil
	}}
	r := &reader{}
	r.counting.Store(true)
	st := &rtpStream{r: r, videoCh: -1}
	sizes := []int{112, 1412, 32, 22}
	for i, want := range sizes {
		ch, pkt, _, err := fb.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(pkt) != want {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(pkt), want)
		}
		st.packet(ch, pkt, time.Time{})
	}
	if _, _, _, err := fb.next(); err == nil {
		t.Fatal("read past the end of the stream")
	}
	if r.lost.Load() != 1 || r.packets.Load() != 3 || r.bytes.Load() != 112+1412+22 {
		t.Fatalf("lost %d, packets %d, bytes %d; want 1, 3, %d", r.lost.Load(), r.packets.Load(), r.bytes.Load(), 112+1412+22)
	}
}

// TestParseRTP checks CSRCs, extension and padding are skipped.
func TestParseRTP(t *testing.T) {
	p := []byte{0xb1, 96, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, // CSRC
		0xbe, 0xde, 0, 1, 1, 2, 3, 4, // extension of one word
		0x65, 0xaa, 0, 0, 2} // payload, padding of 2
	h, err := parseRTP(p)
	if err != nil || h.seq != 9 || h.ts != 1 || string(h.payload) != "\x65\xaa\x00" {
		t.Fatalf("%+v %v", h, err)
	}
	for _, bad := range [][]byte{p[:11], {0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := parseRTP(bad); err == nil {
			t.Fatalf("%x: no error", bad)
		}
	}
}

// TestReaderCloseBounded plays from a server that answers the handshake,
// then sends nothing and never closes: close must return at once.
func TestReaderCloseBounded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go silentServer(l)
	r := &reader{url: "rtsp://" + l.Addr().String() + "/cam", frames: newFrameLog()}
	if err := r.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	r.close()
	if d := time.Since(t0); d > closeTimeout/2 {
		t.Fatalf("close took %s", d)
	}
	select {
	case <-r.done:
	default:
		t.Fatal("read loop still running after close")
	}
}

// silentServer answers DESCRIBE, SETUP and PLAY for one H.264 medium,
// then holds the connection open without sending anything.
func silentServer(l net.Listener) {
	c, err := l.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	const sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n"
	for {
		var req base.Request
		if err := req.Unmarshal(br); err != nil {
			return
		}
		res := base.Response{StatusCode: base.StatusOK, Header: base.Header{"CSeq": req.Header["CSeq"]}}
		switch req.Method {
		case base.Describe:
			res.Header["Content-Type"] = base.HeaderValue{"application/sdp"}
			res.Header["Content-Length"] = base.HeaderValue{strconv.Itoa(len(sdp))}
			res.Body = []byte(sdp)
		case base.Setup:
			res.Header["Session"] = base.HeaderValue{"12345678"}
			res.Header["Transport"] = req.Header["Transport"]
		}
		b, _ := res.Marshal()
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

// TestHandshakeSkipsInterleaved: interleaved frames that come before a
// response are skipped whole, whatever their length (260 bytes here, whose
// low byte has bit 2 set: a length read as 4+c2<<8|c3 would cut it).
func TestHandshakeSkipsInterleaved(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		br := bufio.NewReader(server)
		var req base.Request
		if err := req.Unmarshal(br); err != nil {
			return
		}
		frame := interleaved(0, 1, 260-12)
		_, _ = server.Write(append(frame, "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"...))
	}()
	u, err := base.ParseURL("rtsp://127.0.0.1:554/cam")
	if err != nil {
		t.Fatal(err)
	}
	h := &handshake{conn: client, br: bufio.NewReader(client), url: u}
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	res, err := h.do(base.Options, u, nil)
	if err != nil || res.Header["CSeq"][0] != "1" {
		t.Fatalf("response %v, err %v", res, err)
	}
}

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// frameBufSize is a reader's buffer: several frames of a camera at once,
// and more than the largest interleaved frame (4 + 65535 bytes).
const frameBufSize = 256 << 10

// frameBuf splits a TCP stream of RTSP interleaved frames ('$', channel,
// 16-bit length, packet), skipping RTSP messages between them (the
// responses to keepalives), through one buffer: no allocation per packet.
type frameBuf struct {
	conn  net.Conn // its read deadline moves before each read (nil: none)
	read  func(p []byte) (int, time.Time, error)
	buf   []byte
	r, w  int
	exact bool      // never read past the end of the frame in progress
	stamp time.Time // kernel arrival time of the last read's last byte, or zero
}

// newFrameBuf reads from conn, starting with the bytes in pre (already
// read). With stamps it reads one frame at a time with the kernel's
// receive timestamps (see stampedRead), so that each frame's stamp is its
// own last byte's.
func newFrameBuf(conn net.Conn, pre []byte, stamps bool) *frameBuf {
	b := &frameBuf{conn: conn, buf: make([]byte, max(frameBufSize, len(pre)))}
	b.w = copy(b.buf, pre)
	b.read = func(p []byte) (int, time.Time, error) {
		n, err := conn.Read(p)
		return n, time.Time{}, err
	}
	if stamps {
		if rd := stampedRead(conn); rd != nil {
			b.read, b.exact = rd, true
		}
	}
	return b
}

var errRTSPMessage = errors.New("RTSP message between interleaved frames too long or malformed")

// next returns the next interleaved frame's channel and packet (valid
// until the following call) and, with exact reads, when its last byte
// arrived (zero if unknown).
func (b *frameBuf) next() (byte, []byte, time.Time, error) {
	for {
		avail := b.buf[b.r:b.w]
		need := 4
		switch {
		case len(avail) > 0 && avail[0] != '$':
			n, err := rtspMessageLen(avail)
			if err != nil {
				return 0, nil, time.Time{}, err
			}
			if n > 0 {
				b.r += n
				continue
			}
			need = len(avail) + 1
		case len(avail) >= 4:
			size := 4 + (int(avail[2])<<8 | int(avail[3]))
			if len(avail) >= size {
				b.r += size
				var stamp time.Time
				if b.exact && b.r == b.w {
					stamp = b.stamp
				}
				return avail[1], avail[4:size], stamp, nil
			}
			need = size
		}
		if err := b.fill(need - len(avail)); err != nil {
			return 0, nil, time.Time{}, err
		}
	}
}

// fill reads at least one byte, and with exact reads at most more bytes.
func (b *frameBuf) fill(more int) error {
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
	if len(b.buf)-b.w < more || (b.r > 0 && len(b.buf)-b.w < len(b.buf)/4) {
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	if len(b.buf)-b.w < more {
		return errRTSPMessage // only an RTSP message can be that long
	}
	end := len(b.buf)
	if b.exact {
		end = b.w + max(more, 1)
	}
	if b.conn != nil {
		b.conn.SetReadDeadline(time.Now().Add(readTimeout))
	}
	n, stamp, err := b.read(b.buf[b.w:end])
	b.w += n
	if n > 0 {
		b.stamp = stamp
	}
	if err != nil {
		return err
	}
	if n == 0 {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// rtspMessageLen returns the length of the RTSP message (headers and
// body) at the start of p, 0 if it is not complete yet.
func rtspMessageLen(p []byte) (int, error) {
	end := bytes.Index(p, []byte("\r\n\r\n"))
	if end < 0 {
		if len(p) > 64<<10 {
			return 0, errRTSPMessage
		}
		return 0, nil
	}
	head := p[:end]
	if !bytes.HasPrefix(head, []byte("RTSP/")) {
		return 0, fmt.Errorf("%w: %.20q", errRTSPMessage, head)
	}
	body := 0
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil || n < 0 || n > 64<<10 {
				return 0, fmt.Errorf("%w: Content-Length %q", errRTSPMessage, v)
			}
			body = n
		}
	}
	if len(p) < end+4+body {
		return 0, nil
	}
	return end + 4 + body, nil
}

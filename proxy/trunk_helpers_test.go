package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
)

// Encoders and readers of the trunk's wire format and TLS set-up that only
// the tests use (the proxy uses trunkFrame.appendPacket, readPlayAnswerID,
// readAgedPacket, trunkClientTLS and trunkEdge.serverTLS).

// packetFrame encodes one RTP packet of media index i as a frame.
func packetFrame(i int, pkt *rtp.Packet) ([]byte, error) {
	n := pkt.MarshalSize()
	if 1+n > maxTrunkPacket {
		return nil, fmt.Errorf("%w: RTP packet of %d bytes", errTrunkFrameSize, n)
	}
	b := appendFrameHeader(make([]byte, 0, 6+n), framePacket, 1+n)
	b = append(b, byte(i))
	b = b[:6+n]
	if _, err := pkt.MarshalTo(b[6:]); err != nil {
		return nil, err
	}
	return b, nil
}

// readPlayAnswer reads the edge's answer to a play request: its refusal
// (errTrunkRemote), or the camera's medias.
func readPlayAnswer(r io.Reader) (*description.Session, error) {
	desc, _, err := readPlayAnswerID(r)
	return desc, err
}

// readPacket reads the next packet frame of a camera with medias medias:
// the media index, the packet and the frame's size on the wire.
func readPacket(r io.Reader, medias int) (int, *rtp.Packet, int, error) {
	i, pkt, _, size, err := readAgedPacket(r, medias)
	return i, pkt, size, err
}

// trunkTLS is the TLS configuration of one end of a trunk: its own
// certificate, and the peer's pinned (there is no chain to verify).
func trunkTLS(cert tls.Certificate, pins [][sha256.Size]byte, server bool, log *slog.Logger, who string) *tls.Config {
	c := trunkClientTLS(cert, trunkALPN, &trunkTrust{pins: pins}, nil, log, who)
	if server {
		c.ClientAuth = tls.RequireAnyClientCert
	}
	return c
}

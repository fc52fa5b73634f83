package proxy

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// The trunk protocol, on each QUIC stream the core opens: the core sends
// one request frame, the edge answers with one JSON frame and then, for
// "play", media frames until either end closes the stream. A frame is a
// type byte, a big-endian uint32 length and that many bytes. Every length
// is bounded before anything is allocated, and everything the edge sends
// is validated by the core (SDP parsed into medias, RTP unmarshalled, the
// media index checked) before its own cleaner sees it.
const (
	frameJSON   = 'J' // a trunkRequest (core → edge) or trunkAnswer (edge → core)
	framePacket = 'P' // one RTP packet: media index (1 byte), then the packet
	// framePacketAged is one RTP packet and how long before it was sent
	// the packet was live at the edge (its GOP cache replays old ones):
	// media index (1 byte), age in microseconds (uint32), then the
	// packet. Sent only to a core that asked for ages.
	framePacketAged = 'A'
)

// Frame size limits.
const (
	maxTrunkRequest = 4 << 10    // a request names one camera
	maxTrunkAnswer  = 4 << 20    // a catalogue: names and SDPs of every camera
	maxTrunkPacket  = 1 + 0xFFFF // an index and the largest RTP packet RTSP/TCP carries
)

// Trunk request operations.
const (
	trunkOpCatalogue   = "catalogue"
	trunkOpPlay        = "play"
	trunkOpHello       = "hello"       // an edge that dials: which connection of the trunk this is
	trunkOpConnections = "connections" // to an edge that dials: open this many connections
)

// trunkRequest is what a core asks of an edge: its catalogue, or one of
// its cameras by name (never a URL).
type trunkRequest struct {
	Op     string `json:"op"`
	Camera string `json:"camera,omitempty"`
	// Transport "datagram" asks for the camera in DATAGRAM frames
	// (trunk_datagram.go); otherwise packets come on the stream.
	Transport string `json:"transport,omitempty"`
	// MaxBitrate is the core's cap for the whole trunk (bit/s; 0: none).
	MaxBitrate int64 `json:"max_bitrate,omitempty"`
	// Connections, in a catalogue request, is the trunk's number of QUIC
	// connections: an edge that dials opens that many (trunk_link.go).
	Connections int `json:"connections,omitempty"`
	// Ages, in a play request of a stream camera, asks the edge to send
	// each packet its GOP cache replays with its age (framePacketAged),
	// so that the core's timeline places it when it was live.
	Ages bool `json:"ages,omitempty"`
	// FEC, in a play request of a datagram camera, asks for repair
	// datagrams (trunk_fec.go); an edge that has FEC answers with the
	// FEC it sends, an older one without (the camera then has none).
	FEC *trunkFECWire `json:"fec,omitempty"`
	// Connection, in the hello an edge that dials sends on a
	// unidirectional stream of each connection, is the connection's slot.
	Connection int `json:"connection,omitempty"`
}

// trunkAnswer is the edge's answer: an error, the camera's reader-facing
// SDP (play), or the catalogue.
type trunkAnswer struct {
	Error   string            `json:"error,omitempty"`
	SDP     string            `json:"sdp,omitempty"`
	Cameras []trunkCameraInfo `json:"cameras,omitempty"`
	// Datagram is the id of the camera's datagrams (transport datagram).
	Datagram uint32 `json:"datagram,omitempty"`
	// FEC is the FEC of the camera's datagrams (none without it).
	FEC *trunkFECWire `json:"fec,omitempty"`
}

// trunkCameraInfo is one camera in an edge's catalogue.
type trunkCameraInfo struct {
	Name  string `json:"name"`
	State string `json:"state"`
	SDP   string `json:"sdp,omitempty"` // the cleaned, reader-facing SDP; empty until the camera first played
}

var (
	errTrunkFrame     = errors.New("trunk: bad frame")
	errTrunkFrameSize = errors.New("trunk: frame too large")
)

// readFrame reads one frame of at most max bytes, of type want.
func readFrame(r io.Reader, want byte, max int) ([]byte, error) {
	_, b, err := readFrameOf(r, want, want, max)
	return b, err
}

// readFrameOf reads one frame of at most max bytes, of type a or b, and
// returns its type.
func readFrameOf(r io.Reader, a, b byte, max int) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if h[0] != a && h[0] != b {
		return 0, nil, fmt.Errorf("%w: type %q, want %q", errTrunkFrame, h[0], a)
	}
	if n > uint32(max) {
		return 0, nil, fmt.Errorf("%w: %d bytes, at most %d", errTrunkFrameSize, n, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("trunk: frame of %d bytes cut short: %w", n, err) // (a connection lost, not a bad frame)
	}
	return h[0], body, nil
}

// appendFrameHeader appends a frame header for n bytes of type typ.
func appendFrameHeader(b []byte, typ byte, n int) []byte {
	b = append(b, typ)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// writeJSONFrame writes v as one JSON frame.
func writeJSONFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(appendFrameHeader(make([]byte, 0, 5+len(body)), frameJSON, len(body)), body...))
	return err
}

// readJSONFrame reads one JSON frame of at most max bytes into v.
func readJSONFrame(r io.Reader, max int, v any) error {
	b, err := readFrame(r, frameJSON, max)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", errTrunkFrame, err)
	}
	return nil
}

// decodePacket decodes a packet frame's body: the media index (below
// medias) and the RTP packet.
func decodePacket(b []byte, medias int) (int, *rtp.Packet, error) {
	if len(b) < 1+12 {
		return 0, nil, fmt.Errorf("%w: packet frame of %d bytes", errTrunkFrame, len(b))
	}
	i := int(b[0])
	if i >= medias {
		return 0, nil, fmt.Errorf("%w: media index %d, the SDP has %d", errTrunkFrame, i, medias)
	}
	pkt := &rtp.Packet{}
	if err := pkt.Unmarshal(b[1:]); err != nil {
		return 0, nil, fmt.Errorf("%w: RTP: %v", errTrunkFrame, err)
	}
	return i, pkt, nil
}

// parseTrunkSDP parses the SDP an edge sent for a camera.
func parseTrunkSDP(s string) (*description.Session, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(s)); err != nil {
		return nil, fmt.Errorf("%w: SDP: %v", errTrunkFrame, err)
	}
	var desc description.Session
	if err := desc.Unmarshal2(&sd); err != nil {
		return nil, fmt.Errorf("%w: SDP: %v", errTrunkFrame, err)
	}
	if len(desc.Medias) == 0 || len(desc.Medias) > 255 {
		return nil, fmt.Errorf("%w: SDP with %d medias", errTrunkFrame, len(desc.Medias))
	}
	return &desc, nil
}

// readPlayAnswerID reads the edge's answer to a play request: its refusal
// (errTrunkRemote), or the camera's medias and the answer (its datagram
// id, 0 when the packets come on the stream, and the datagrams' FEC).
func readPlayAnswerID(r io.Reader) (*description.Session, trunkAnswer, error) {
	var ans trunkAnswer
	if err := readJSONFrame(r, maxTrunkAnswer, &ans); err != nil {
		return nil, ans, fmt.Errorf("trunk answer: %w", err)
	}
	if ans.Error != "" {
		return nil, ans, fmt.Errorf("%w: %s", errTrunkRemote, ans.Error)
	}
	desc, err := parseTrunkSDP(ans.SDP)
	return desc, ans, err
}

// maxTrunkAge bounds the age of a packet the core takes from the edge
// (beyond it, the packet is taken as live).
const maxTrunkAge = 10 * time.Second

// readAgedPacket reads the next packet frame of a camera with medias
// medias: the media index, the packet, its age at the edge (0 for a packet
// frame without one) and the frame's size on the wire.
func readAgedPacket(r io.Reader, medias int) (int, *rtp.Packet, time.Duration, int, error) {
	typ, b, err := readFrameOf(r, framePacket, framePacketAged, maxTrunkPacket)
	if err != nil {
		return 0, nil, 0, 0, err
	}
	size := 5 + len(b)
	var age time.Duration
	if typ == framePacketAged {
		if len(b) < 5 {
			return 0, nil, 0, size, fmt.Errorf("%w: aged packet frame of %d bytes", errTrunkFrame, len(b))
		}
		age = time.Duration(binary.BigEndian.Uint32(b[1:5])) * time.Microsecond
		if age > maxTrunkAge {
			age = 0
		}
		b[4] = b[0] // the index, then the packet: decodePacket's layout
		b = b[4:]
	}
	i, pkt, err := decodePacket(b, medias)
	return i, pkt, age, size, err
}

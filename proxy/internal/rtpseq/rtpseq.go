// Package rtpseq encodes a sequence of RTP packets, with the events of a
// real network between them (loss, reordering, timestamp jumps), as one
// byte string: the input of the stream cleaner's sequence fuzz targets, and
// of the proxy's hostile-camera test, which replays the fuzz corpus through
// a real camera connection. It is test support with no use in production.
//
// Each packet is [2-byte big-endian payload length][1 flag byte][payload].
// Flags:
//
//	bit 0  marker bit set
//	bit 1  timestamp advances by 3000 (a new frame at 30 fps)
//	bit 2  one sequence number skipped before it (a packet lost)
//	bit 3  sequence number 3 lower than the next expected (reordered or
//	       duplicated)
//	bit 4  timestamp goes back by 3000 (a camera clock step)
//
// A length larger than what is left takes what is left. Decoding stops after
// MaxPackets packets.
package rtpseq

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pion/rtp"
)

// Flag bits, as above.
const (
	FlagMarker   = 1 << 0
	FlagNewFrame = 1 << 1
	FlagLost     = 1 << 2
	FlagReorder  = 1 << 3
	FlagTSBack   = 1 << 4
)

// MaxPackets bounds one decoded sequence.
const MaxPackets = 2000

// Timestamp and sequence number of the first decoded packet (close to the
// 16-bit wrap, so wrapping is always exercised).
const (
	FirstTimestamp = 1000
	FirstSeq       = 65000
)

// Encode frames pkts, deriving each packet's flags from its header relative
// to the previous packet (timestamp change: FlagNewFrame; sequence gap:
// FlagLost).
func Encode(pkts []*rtp.Packet) []byte {
	var b []byte
	var lastTS uint32
	var lastSeq uint16
	for i, p := range pkts {
		var flags byte
		if p.Marker {
			flags |= FlagMarker
		}
		if i > 0 && p.Timestamp != lastTS {
			flags |= FlagNewFrame
		}
		if i > 0 && p.SequenceNumber != lastSeq+1 {
			flags |= FlagLost
		}
		lastTS, lastSeq = p.Timestamp, p.SequenceNumber
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Payload)))
		b = append(b, flags)
		b = append(b, p.Payload...)
	}
	return b
}

// Decode returns the packets b frames, with payload type pt. Payloads
// reference b.
func Decode(b []byte, pt uint8) []*rtp.Packet {
	var out []*rtp.Packet
	ts, seq := uint32(FirstTimestamp), uint16(FirstSeq)
	for len(b) >= 3 && len(out) < MaxPackets {
		n := int(binary.BigEndian.Uint16(b))
		flags := b[2]
		b = b[3:]
		n = min(n, len(b))
		if flags&FlagNewFrame != 0 {
			ts += 3000
		}
		if flags&FlagTSBack != 0 {
			ts -= 3000
		}
		if flags&FlagLost != 0 {
			seq++
		}
		s := seq
		if flags&FlagReorder != 0 {
			s = seq - 3
		} else {
			seq++
		}
		out = append(out, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: flags&FlagMarker != 0,
			SequenceNumber: s, Timestamp: ts}, Payload: b[:n]})
		b = b[n:]
	}
	return out
}

// ReadCorpus returns the []byte inputs of a `go test -fuzz` corpus folder
// (testdata/fuzz/FuzzX), in file-name order. Files that hold anything but
// one []byte value are an error.
func ReadCorpus(dir string) ([][]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		if len(lines) != 2 || string(lines[0]) != "go test fuzz v1" ||
			!bytes.HasPrefix(lines[1], []byte("[]byte(")) || !bytes.HasSuffix(lines[1], []byte(")")) {
			return nil, fmt.Errorf("%s: not a one-[]byte fuzz corpus file", f)
		}
		lit := lines[1][len("[]byte(") : len(lines[1])-1]
		s, err := strconv.Unquote(string(lit))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, []byte(s))
	}
	return out, nil
}

// Package tlsparse extracts the server name (SNI) and ALPN protocols from a TLS
// ClientHello, either from the TLS records at the start of a TCP stream or from
// a bare handshake message (the CRYPTO stream of a QUIC Initial). It reads
// untrusted bytes: every length is checked against what is left, and the
// message size is bounded.
package tlsparse

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxHelloLen bounds the ClientHello handshake message this package accepts
// (real ones are under 2 KiB, post-quantum key shares included).
const MaxHelloLen = 16 << 10

// ErrTruncated reports that the input ends before the ClientHello does: feed
// more bytes of the stream (it is a flow-control condition, not a failure).
var ErrTruncated = errors.New("tlsparse: ClientHello is truncated; more bytes needed")

// ErrNotClientHello reports input that is not a TLS handshake starting with a
// ClientHello.
var ErrNotClientHello = errors.New("tlsparse: not a TLS ClientHello")

// FormatError reports a malformed ClientHello at a byte offset of the handshake message.
type FormatError struct {
	Offset int
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("tlsparse: %s at offset %d", e.Msg, e.Offset)
}

// ClientHello holds the fields of a ClientHello that egress alerts on.
type ClientHello struct {
	ServerName string   // host_name from the server_name extension, "" if absent
	ALPN       []string // application protocols offered, in order
}

// LooksLikeRecord reports whether b starts like a TLS handshake record
// (content type 22, major version 3).
func LooksLikeRecord(b []byte) bool {
	return len(b) >= 3 && b[0] == 22 && b[1] == 3
}

// ParseRecords reads a ClientHello from the TLS records at the start of a
// stream. It returns ErrTruncated when stream ends before the message does.
func ParseRecords(stream []byte) (ClientHello, error) {
	if !LooksLikeRecord(stream) {
		return ClientHello{}, ErrNotClientHello
	}
	// Fast path: the whole handshake message is in the first record.
	if len(stream) >= 5 {
		rl := int(binary.BigEndian.Uint16(stream[3:5]))
		if len(stream) >= 5+rl && rl >= 4 {
			frag := stream[5 : 5+rl]
			if 4+hsLen(frag) <= len(frag) {
				return ParseHandshake(frag)
			}
		}
	}
	// Slow path: the message spans records; join their fragments.
	var msg []byte
	for off := 0; ; {
		if off+5 > len(stream) {
			return ClientHello{}, ErrTruncated
		}
		if stream[off] != 22 {
			return ClientHello{}, &FormatError{Offset: off, Msg: fmt.Sprintf("record type %d inside the ClientHello", stream[off])}
		}
		rl := int(binary.BigEndian.Uint16(stream[off+3 : off+5]))
		if rl == 0 || rl > 1<<14+256 {
			return ClientHello{}, &FormatError{Offset: off, Msg: fmt.Sprintf("record length %d", rl)}
		}
		switch {
		case off+5+rl > len(stream) && msg == nil:
			msg = stream[off+5:] // the first record, cut: read in place (it is the last)
		case off+5+rl > len(stream):
			msg = append(msg, stream[off+5:]...)
		default:
			msg = append(msg, stream[off+5:off+5+rl]...)
		}
		if len(msg) >= 4 && 4+hsLen(msg) <= len(msg) {
			return ParseHandshake(msg)
		}
		if len(msg) > MaxHelloLen+4 {
			return ClientHello{}, &FormatError{Offset: off, Msg: "ClientHello larger than 16 KiB"}
		}
		off += 5 + rl
	}
}

func hsLen(b []byte) int { return int(b[1])<<16 | int(b[2])<<8 | int(b[3]) }

// ParseHandshake reads a ClientHello handshake message (type 1, 24-bit length,
// body). It returns ErrTruncated when msg ends before the message does.
func ParseHandshake(msg []byte) (ClientHello, error) {
	var ch ClientHello
	if len(msg) < 4 {
		return ch, ErrTruncated
	}
	if msg[0] != 1 {
		return ch, ErrNotClientHello
	}
	n := hsLen(msg)
	if n > MaxHelloLen {
		return ch, &FormatError{Offset: 1, Msg: fmt.Sprintf("ClientHello length %d exceeds %d", n, MaxHelloLen)}
	}
	if len(msg) < 4+n {
		return ch, ErrTruncated
	}
	r := reader{b: msg[:4+n], off: 4}
	if !r.skip(2 + 32) { // legacy_version, random
		return ch, r.err("version and random")
	}
	if !r.skipVec8() {
		return ch, r.err("session id")
	}
	if !r.skipVec16() {
		return ch, r.err("cipher suites")
	}
	if !r.skipVec8() {
		return ch, r.err("compression methods")
	}
	if r.off == len(r.b) {
		return ch, nil // no extensions
	}
	extEnd, ok := r.len16()
	if !ok {
		return ch, r.err("extensions length")
	}
	for r.off < extEnd {
		typ, ok1 := r.u16()
		l, ok2 := r.len16()
		if !ok1 || !ok2 || l > extEnd {
			return ch, r.err("extension header")
		}
		body := reader{b: r.b[:l], off: r.off}
		var err error
		switch typ {
		case 0: // server_name
			err = body.serverName(&ch)
		case 16: // application_layer_protocol_negotiation
			err = body.alpn(&ch)
		}
		if err != nil {
			return ch, err
		}
		r.off = l
	}
	return ch, nil
}

// serverName reads a server_name extension's body: the first host_name
// entry becomes ch.ServerName.
func (r *reader) serverName(ch *ClientHello) error {
	listEnd, ok := r.len16()
	for ok && r.off < listEnd {
		var nt byte
		nt, ok = r.u8()
		var ne int
		if ok {
			ne, ok = r.len16()
		}
		if ok && ne <= listEnd && nt == 0 && ch.ServerName == "" {
			ch.ServerName = string(r.b[r.off:ne])
		}
		r.off = ne
	}
	if !ok {
		return r.err("server_name extension")
	}
	return nil
}

// alpn reads an application_layer_protocol_negotiation extension's body
// into ch.ALPN (16 protocols at most).
func (r *reader) alpn(ch *ClientHello) error {
	listEnd, ok := r.len16()
	for ok && r.off < listEnd && len(ch.ALPN) < 16 {
		var pl byte
		pl, ok = r.u8()
		if ok && r.off+int(pl) <= listEnd {
			ch.ALPN = append(ch.ALPN, string(r.b[r.off:r.off+int(pl)]))
			r.off += int(pl)
		} else {
			ok = false
		}
	}
	if !ok {
		return r.err("ALPN extension")
	}
	return nil
}

// reader walks a byte slice; lengths it returns are absolute end offsets.
type reader struct {
	b   []byte
	off int
}

func (r *reader) err(what string) error {
	return &FormatError{Offset: r.off, Msg: "malformed " + what}
}

func (r *reader) skip(n int) bool {
	if r.off+n > len(r.b) {
		return false
	}
	r.off += n
	return true
}

func (r *reader) u8() (byte, bool) {
	if r.off+1 > len(r.b) {
		return 0, false
	}
	r.off++
	return r.b[r.off-1], true
}

func (r *reader) u16() (int, bool) {
	if r.off+2 > len(r.b) {
		return 0, false
	}
	r.off += 2
	return int(binary.BigEndian.Uint16(r.b[r.off-2:])), true
}

// len16 reads a 16-bit length and returns the end offset of the data it covers.
func (r *reader) len16() (int, bool) {
	n, ok := r.u16()
	if !ok || r.off+n > len(r.b) {
		return 0, false
	}
	return r.off + n, true
}

func (r *reader) skipVec8() bool {
	n, ok := r.u8()
	return ok && r.skip(int(n))
}

func (r *reader) skipVec16() bool {
	end, ok := r.len16()
	if ok {
		r.off = end
	}
	return ok
}

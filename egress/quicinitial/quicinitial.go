// Package quicinitial decrypts the Initial packets a QUIC client sends first
// and reassembles the TLS ClientHello they carry, so egress can read the
// server name of QUIC connections. Initial keys derive from the client's
// Destination Connection ID alone (RFC 9001 §5.2, RFC 9369 §3.3.1 for QUIC
// v2), so anyone on the path can do this. Header protection is removed
// (RFC 9001 §5.4), the payload opened with AES-128-GCM, and CRYPTO frames
// from several Initial packets reassembled (a post-quantum ClientHello spans
// two). Inputs are untrusted: header fields, frame lengths and the reassembly
// buffer are all bounded.
package quicinitial

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cordon-vms/cordon/egress/tlsparse"
	"github.com/quic-go/quic-go/quicvarint"
)

// QUIC versions whose Initial packets this package decrypts.
const (
	Version1 uint32 = 0x00000001 // RFC 9000
	Version2 uint32 = 0x6b3343cf // RFC 9369
)

// Limits on untrusted input.
const (
	MaxCryptoLen  = tlsparse.MaxHelloLen + 4 // CRYPTO stream bytes reassembled
	MaxPackets    = 8                        // Initial packets one Assembler accepts
	maxCoalesced  = 4                        // QUIC packets read from one datagram
	maxConnIDLen  = 20
	maxTokenLen   = 1024
	minPayloadLen = 20 // header-protection sample (16) + at least 4 bytes of packet number
)

var (
	salt1 = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	salt2 = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

var (
	// ErrNotInitial reports a datagram that does not start with a QUIC v1/v2 Initial packet.
	ErrNotInitial = errors.New("quicinitial: not a QUIC Initial packet")
	// ErrMorePacketsNeeded reports that the ClientHello continues in a later Initial packet.
	ErrMorePacketsNeeded = errors.New("quicinitial: ClientHello incomplete; more Initial packets needed")
	// ErrDecrypt reports an Initial packet that does not authenticate with the
	// keys of its connection ID (a server Initial, or not QUIC at all).
	ErrDecrypt = errors.New("quicinitial: Initial packet does not decrypt with the client keys")
)

// FormatError reports a malformed packet at a byte offset of the datagram.
type FormatError struct {
	Offset int
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("quicinitial: %s at offset %d", e.Msg, e.Offset)
}

// Keys are the client Initial packet protection keys (AES-128-GCM).
type Keys struct {
	Key [16]byte
	IV  [12]byte
	HP  [16]byte
}

// ClientKeys derives the client Initial keys of version from the Destination
// Connection ID of the client's first Initial packet.
func ClientKeys(version uint32, dcid []byte) (Keys, error) {
	var k Keys
	salt, prefix := salt1, "quic "
	switch version {
	case Version1:
	case Version2:
		salt, prefix = salt2, "quicv2 "
	default:
		return k, fmt.Errorf("quicinitial: version 0x%08x is not supported", version)
	}
	initial, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		return k, err
	}
	client, err := expandLabel(initial, "client in", 32)
	if err != nil {
		return k, err
	}
	for _, o := range []struct {
		label string
		dst   []byte
	}{{prefix + "key", k.Key[:]}, {prefix + "iv", k.IV[:]}, {prefix + "hp", k.HP[:]}} {
		b, err := expandLabel(client, o.label, len(o.dst))
		if err != nil {
			return k, err
		}
		copy(o.dst, b)
	}
	return k, nil
}

// expandLabel is HKDF-Expand-Label of TLS 1.3 (RFC 8446 §7.1) with an empty context.
func expandLabel(secret []byte, label string, n int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	return hkdf.Expand(sha256.New, secret, string(info), n)
}

// IsInitial reports whether b starts with a long-header Initial packet of a
// supported version. It is cheap enough to call on every UDP datagram.
func IsInitial(b []byte) bool {
	if len(b) < 7 || b[0]&0xc0 != 0xc0 {
		return false
	}
	switch binary.BigEndian.Uint32(b[1:5]) {
	case Version1:
		return (b[0]>>4)&3 == 0
	case Version2:
		return (b[0]>>4)&3 == 1
	}
	return false
}

// Packet is one decrypted Initial packet.
type Packet struct {
	Version uint32
	DCID    []byte // aliases the datagram
	SCID    []byte // aliases the datagram
	Number  uint64 // packet number (truncated, as sent)
	Payload []byte // decrypted frames
	Len     int    // bytes of the datagram this packet occupied
}

// Decrypt removes header protection from the Initial packet at the start of b
// and decrypts it with keys derived from its own DCID (the first Initial of a
// client; later ones carry the same DCID). The payload is appended to dst.
func Decrypt(b, dst []byte) (Packet, error) {
	p, pnOff, end, err := parseHeader(b)
	if err != nil {
		return p, err
	}
	keys, err := ClientKeys(p.Version, p.DCID)
	if err != nil {
		return p, err
	}
	return decrypt(b, dst, p, pnOff, end, &keys)
}

func parseHeader(b []byte) (p Packet, pnOff, end int, err error) {
	if !IsInitial(b) {
		return p, 0, 0, ErrNotInitial
	}
	p.Version = binary.BigEndian.Uint32(b[1:5])
	off := 5
	cid := func(what string) ([]byte, error) {
		if off >= len(b) {
			return nil, &FormatError{Offset: off, Msg: what + " length missing"}
		}
		n := int(b[off])
		if n > maxConnIDLen || off+1+n > len(b) {
			return nil, &FormatError{Offset: off, Msg: fmt.Sprintf("%s length %d", what, n)}
		}
		off += 1 + n
		return b[off-n : off], nil
	}
	if p.DCID, err = cid("destination connection ID"); err != nil {
		return p, 0, 0, err
	}
	if p.SCID, err = cid("source connection ID"); err != nil {
		return p, 0, 0, err
	}
	tl, n, err := quicvarint.Parse(b[off:])
	if err != nil || tl > maxTokenLen || off+n+int(tl) > len(b) {
		return p, 0, 0, &FormatError{Offset: off, Msg: "token length"}
	}
	off += n + int(tl)
	l, n, err := quicvarint.Parse(b[off:])
	if err != nil || l > uint64(len(b)) || off+n+int(l) > len(b) || l < minPayloadLen {
		return p, 0, 0, &FormatError{Offset: off, Msg: "packet length"}
	}
	pnOff = off + n
	return p, pnOff, pnOff + int(l), nil
}

func decrypt(b, dst []byte, p Packet, pnOff, end int, keys *Keys) (Packet, error) {
	hp, err := aes.NewCipher(keys.HP[:])
	if err != nil {
		return p, err
	}
	var mask [16]byte
	hp.Encrypt(mask[:], b[pnOff+4:pnOff+20])
	first := b[0] ^ (mask[0] & 0x0f)
	pnLen := int(first&3) + 1
	hdr := make([]byte, pnOff+pnLen)
	copy(hdr, b[:pnOff+pnLen])
	hdr[0] = first
	var pn uint64
	for i := 0; i < pnLen; i++ {
		hdr[pnOff+i] ^= mask[1+i]
		pn = pn<<8 | uint64(hdr[pnOff+i])
	}
	p.Number = pn
	block, err := aes.NewCipher(keys.Key[:])
	if err != nil {
		return p, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return p, err
	}
	nonce := keys.IV
	for i := 0; i < 8; i++ {
		nonce[len(nonce)-1-i] ^= byte(pn >> (8 * i))
	}
	out, err := aead.Open(dst, nonce[:], b[pnOff+pnLen:end], hdr)
	if err != nil {
		return p, ErrDecrypt
	}
	p.Payload = out
	p.Len = end
	return p, nil
}

// Assembler reassembles the ClientHello from the Initial packets of one
// client (one flow). The zero value is ready to use; it is not safe for
// concurrent use.
type Assembler struct {
	version uint32
	dcid    []byte
	keys    Keys
	packets int
	buf     []byte   // CRYPTO stream, grown up to MaxCryptoLen
	ranges  [][2]int // received [start, end) ranges, sorted and merged
	scratch []byte
}

// Add feeds one UDP datagram sent by the client. It returns the ClientHello
// once its CRYPTO data is complete, ErrMorePacketsNeeded while it is not, and
// ErrNotInitial for datagrams without a client Initial packet.
func (a *Assembler) Add(datagram []byte) (tlsparse.ClientHello, error) {
	var ch tlsparse.ClientHello
	sawInitial := false
	b := datagram
	for i := 0; i < maxCoalesced && len(b) > 0; i++ {
		if !IsInitial(b) {
			break // later coalesced packets (0-RTT, Handshake) are not for us
		}
		p, pnOff, end, err := parseHeader(b)
		if err != nil {
			return ch, err
		}
		if a.dcid == nil {
			k, err := ClientKeys(p.Version, p.DCID)
			if err != nil {
				return ch, err
			}
			a.version, a.dcid, a.keys = p.Version, append([]byte{}, p.DCID...), k
		} else if p.Version != a.version || string(p.DCID) != string(a.dcid) {
			return ch, &FormatError{Offset: 6, Msg: "Initial packet of another connection (DCID changed)"}
		}
		a.packets++
		if a.packets > MaxPackets {
			return ch, &FormatError{Offset: 0, Msg: fmt.Sprintf("more than %d Initial packets without a complete ClientHello", MaxPackets)}
		}
		p, err = decrypt(b, a.scratch[:0], p, pnOff, end, &a.keys)
		if err != nil {
			return ch, err
		}
		a.scratch = p.Payload
		if err := a.frames(p.Payload); err != nil {
			return ch, err
		}
		sawInitial = true
		b = b[end:]
	}
	if !sawInitial {
		return ch, ErrNotInitial
	}
	n := a.contiguous()
	if n < 4 {
		return ch, ErrMorePacketsNeeded
	}
	ch, err := tlsparse.ParseHandshake(a.buf[:n])
	if errors.Is(err, tlsparse.ErrTruncated) {
		return ch, ErrMorePacketsNeeded
	}
	return ch, err
}

// Started reports whether the assembler holds CRYPTO data from a
// decrypted Initial: a datagram it then rejects does not belong to this
// handshake, while one rejected before is no loss to it.
func (a *Assembler) Started() bool { return len(a.ranges) > 0 }

// frames walks the frames of a decrypted Initial payload and stores CRYPTO data.
func (a *Assembler) frames(b []byte) error {
	off := 0
	varint := func() (uint64, error) {
		v, n, err := quicvarint.Parse(b[off:])
		if err != nil {
			return 0, &FormatError{Offset: off, Msg: "truncated frame"}
		}
		off += n
		return v, nil
	}
	for off < len(b) {
		typ := b[off]
		off++
		switch typ {
		case 0x00, 0x01: // PADDING, PING
		case 0x02, 0x03: // ACK
			var vals [4]uint64
			for i := range vals {
				v, err := varint()
				if err != nil {
					return err
				}
				vals[i] = v
			}
			if vals[2] > 256 {
				return &FormatError{Offset: off, Msg: "ACK frame with too many ranges"}
			}
			extra := 2 * vals[2]
			if typ == 0x03 {
				extra += 3
			}
			for ; extra > 0; extra-- {
				if _, err := varint(); err != nil {
					return err
				}
			}
		case 0x06: // CRYPTO
			o, err := varint()
			if err != nil {
				return err
			}
			l, err := varint()
			if err != nil {
				return err
			}
			if l > uint64(len(b)-off) {
				return &FormatError{Offset: off, Msg: "CRYPTO frame longer than the packet"}
			}
			if o+l > MaxCryptoLen {
				return &FormatError{Offset: off, Msg: fmt.Sprintf("CRYPTO data beyond %d bytes", MaxCryptoLen)}
			}
			a.store(int(o), b[off:off+int(l)])
			off += int(l)
		case 0x1c, 0x1d: // CONNECTION_CLOSE: nothing more of interest
			return nil
		default:
			return &FormatError{Offset: off - 1, Msg: fmt.Sprintf("frame type 0x%02x not allowed in an Initial packet", typ)}
		}
	}
	return nil
}

func (a *Assembler) store(off int, data []byte) {
	if len(data) == 0 {
		return
	}
	end := off + len(data)
	if end > len(a.buf) {
		a.buf = append(a.buf, make([]byte, end-len(a.buf))...)
	}
	copy(a.buf[off:end], data)
	// Insert [off,end) into the sorted range list and merge neighbours.
	rs := append(a.ranges, [2]int{off, end})
	for i := len(rs) - 1; i > 0 && rs[i][0] < rs[i-1][0]; i-- {
		rs[i], rs[i-1] = rs[i-1], rs[i]
	}
	merged := rs[:0]
	for _, r := range rs {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	a.ranges = merged
}

// contiguous returns how many CRYPTO bytes from offset 0 have arrived.
func (a *Assembler) contiguous() int {
	if len(a.ranges) == 0 || a.ranges[0][0] != 0 {
		return 0
	}
	return a.ranges[0][1]
}

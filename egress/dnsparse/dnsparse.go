// Package dnsparse reads the question of a DNS message without allocating:
// the query name, type and class, bounded by the limits of RFC 1035 (names of
// at most 255 bytes, labels of at most 63, a bounded number of compression
// pointers). It is the DNS decoder of cordon egress and reads untrusted
// packets, so every read is bounds-checked.
package dnsparse

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Limits from RFC 1035.
const (
	MaxNameLen  = 255 // presentation length of a name, without the trailing dot
	maxLabelLen = 63
	maxPointers = 16 // compression pointers followed while reading one name
	headerLen   = 12
)

// Query types that carry data back to a tunnelling client.
const (
	TypeA    = 1
	TypeNULL = 10
	TypeTXT  = 16
	TypeAAAA = 28
)

// ErrNoQuestion reports a DNS message without a question (QDCOUNT 0).
var ErrNoQuestion = errors.New("dnsparse: message has no question")

// FormatError reports malformed input at a byte offset of the message.
type FormatError struct {
	Offset int
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("dnsparse: %s at offset %d", e.Msg, e.Offset)
}

// Question is the first question of a DNS message.
type Question struct {
	ID       uint16
	Response bool   // QR bit: the message is a response
	Opcode   uint8  // 0 for a standard query
	Name     []byte // lower-case presentation form without the trailing dot ("" for the root); aliases the buf given to Parse
	Type     uint16
	Class    uint16
}

// Parse reads the header and the first question of msg. The name is written
// into buf (which must have room for MaxNameLen bytes to avoid allocation) and
// Question.Name aliases it.
func Parse(msg, buf []byte) (Question, error) {
	var q Question
	if len(msg) < headerLen {
		return q, &FormatError{Offset: len(msg), Msg: "message shorter than the 12-byte header"}
	}
	q.ID = binary.BigEndian.Uint16(msg[0:2])
	q.Response = msg[2]&0x80 != 0
	q.Opcode = (msg[2] >> 3) & 0x0f
	if binary.BigEndian.Uint16(msg[4:6]) == 0 {
		return q, ErrNoQuestion
	}
	name, off, err := readName(msg, headerLen, buf[:0])
	if err != nil {
		return q, err
	}
	if off+4 > len(msg) {
		return q, &FormatError{Offset: off, Msg: "question truncated before type and class"}
	}
	q.Name = name
	q.Type = binary.BigEndian.Uint16(msg[off : off+2])
	q.Class = binary.BigEndian.Uint16(msg[off+2 : off+4])
	return q, nil
}

// readName reads a possibly compressed name at off and returns it appended to
// dst, with the offset just after the name in the original position.
func readName(msg []byte, off int, dst []byte) ([]byte, int, error) {
	end := -1 // offset after the name at its original position, once a pointer was followed
	pointers := 0
	for {
		if off >= len(msg) {
			return nil, 0, &FormatError{Offset: off, Msg: "name runs past the end of the message"}
		}
		c := int(msg[off])
		switch c & 0xc0 {
		case 0x00:
			if c == 0 {
				if end < 0 {
					end = off + 1
				}
				return dst, end, nil
			}
			if off+1+c > len(msg) {
				return nil, 0, &FormatError{Offset: off, Msg: "label runs past the end of the message"}
			}
			if len(dst) > 0 {
				dst = append(dst, '.')
			}
			if len(dst)+c > MaxNameLen {
				return nil, 0, &FormatError{Offset: off, Msg: "name longer than 255 bytes"}
			}
			for _, b := range msg[off+1 : off+1+c] {
				if b >= 'A' && b <= 'Z' {
					b += 'a' - 'A'
				}
				dst = append(dst, b)
			}
			off += 1 + c
		case 0xc0:
			if off+2 > len(msg) {
				return nil, 0, &FormatError{Offset: off, Msg: "compression pointer truncated"}
			}
			pointers++
			if pointers > maxPointers {
				return nil, 0, &FormatError{Offset: off, Msg: "too many compression pointers (loop?)"}
			}
			if end < 0 {
				end = off + 2
			}
			ptr := int(binary.BigEndian.Uint16(msg[off:off+2]) & 0x3fff)
			if ptr >= off {
				return nil, 0, &FormatError{Offset: off, Msg: "compression pointer does not point backwards"}
			}
			off = ptr
		default:
			return nil, 0, &FormatError{Offset: off, Msg: fmt.Sprintf("label type 0x%02x is not supported", c&0xc0)}
		}
	}
}

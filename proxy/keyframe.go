package proxy

import (
	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

// keyCodec is the video codec whose RTP payloads keyPacket understands.
type keyCodec uint8

const (
	codecOther keyCodec = iota
	codecH264
	codecH265
)

func codecOf(f format.Format) keyCodec {
	switch f.(type) {
	case *format.H264:
		return codecH264
	case *format.H265:
		return codecH265
	}
	return codecOther
}

// keyPacket reports whether an RTP payload (RFC 6184 for H.264, RFC 7798 for
// H.265) starts or carries the start of a random-access point: a parameter
// set or an IDR/IRAP slice. It reads at most a few bytes of each
// aggregated NAL unit and never trusts a length past the payload's end.
// It is the fallback when package rebuild does not flag keyframes.
func keyPacket(c keyCodec, p []byte) bool {
	switch c {
	case codecH264:
		return keyH264(p)
	case codecH265:
		return keyH265(p)
	}
	return false
}

func h264Key(typ byte) bool { return typ == 5 || typ == 7 } // IDR slice, SPS

func keyH264(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	typ := p[0] & 0x1f
	switch {
	case typ >= 1 && typ <= 23:
		return h264Key(typ)
	case typ == 24: // STAP-A: (2-byte size, NAL)*
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return false
			}
			if h264Key(p[i] & 0x1f) {
				return true
			}
			i += n
		}
	case typ == 28: // FU-A: only the start fragment carries the NAL type
		return len(p) >= 2 && p[1]&0x80 != 0 && h264Key(p[1]&0x1f)
	}
	return false
}

// IRAP slices (16..21), VPS (32), SPS (33).
func h265Key(typ byte) bool { return (typ >= 16 && typ <= 21) || typ == 32 || typ == 33 }

func keyH265(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	typ := (p[0] >> 1) & 0x3f
	switch {
	case typ < 48:
		return h265Key(typ)
	case typ == 48: // AP: (2-byte size, NAL)* after the 2-byte header
		for i := 2; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n < 2 || i+n > len(p) {
				return false
			}
			if h265Key((p[i] >> 1) & 0x3f) {
				return true
			}
			i += n
		}
	case typ == 49: // FU: start fragment
		return len(p) >= 3 && p[2]&0x80 != 0 && h265Key(p[2]&0x3f)
	}
	return false
}

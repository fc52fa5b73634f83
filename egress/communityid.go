package egress

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
)

// communityID returns the Community ID (version 1, seed 0) of a flow: the
// hash that Zeek, Suricata and Elastic put on their records of the same
// flow, so a SIEM joins them (github.com/corelight/community-id-spec). For
// ICMP and ICMPv6, sport and dport carry the type and code. Other
// protocols than TCP, UDP, SCTP and ICMP are hashed without ports.
func communityID(proto uint8, src, dst netip.Addr, sport, dport uint16) string {
	oneWay := false
	switch proto {
	case protoTCP, protoUDP, 132: // SCTP
	case protoICMP, protoICMPv6:
		sport, dport, oneWay = icmpPorts(proto, uint8(sport), uint8(dport))
	default:
		sport, dport = 0, 0
	}
	if !oneWay {
		if c := src.Compare(dst); c > 0 || (c == 0 && sport > dport) {
			src, dst, sport, dport = dst, src, dport, sport
		}
	}
	b := make([]byte, 0, 2+16+16+4+4)
	b = append(b, 0, 0) // seed
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	b = append(b, proto, 0)
	if proto == protoTCP || proto == protoUDP || proto == 132 || proto == protoICMP || proto == protoICMPv6 {
		b = binary.BigEndian.AppendUint16(b, sport)
		b = binary.BigEndian.AppendUint16(b, dport)
	}
	sum := sha1.Sum(b)
	return "1:" + base64.StdEncoding.EncodeToString(sum[:])
}

// icmpPorts maps an ICMP type and code to the spec's port pair: a type
// with a counterpart (echo request and reply, …) pairs with it both ways;
// any other is one-way, its code the second port.
func icmpPorts(proto, typ, code uint8) (uint16, uint16, bool) {
	var pairs map[uint8]uint8
	if proto == protoICMP {
		pairs = map[uint8]uint8{8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
	} else {
		pairs = map[uint8]uint8{128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144}
	}
	if other, ok := pairs[typ]; ok {
		return uint16(typ), uint16(other), false
	}
	return uint16(typ), uint16(code), true
}

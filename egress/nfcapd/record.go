package nfcapd

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/cordon-vms/cordon/egress"
)

// Record types (nfdump's nffileV2.h, nfx.h).
const (
	typeV3       = 11
	typeCommonV2 = 10
)

// metadataTypes are the record types that carry no flow, by the name Stats
// counts them under; legacy flow records (layout 1) count as not decoded.
var metadataTypes = map[uint16]string{
	2:      "extension-map",
	7:      "exporter-info",
	8:      "exporter-stat",
	9:      "sampler",
	12:     "nbar",
	13:     "ifname",
	14:     "vrfname",
	15:     "sampler",
	0x8001: "ident",
	0x8002: "stat",
}

// V3 record header and element ids (nfdump's nfxV3.h).
const (
	v3HeaderSize  = 12
	elemHeader    = 4
	exGenericFlow = 1
	exIPv4Flow    = 2
	exIPv6Flow    = 3
	exCntFlow     = 5
	exReceivedV4  = 12
	exReceivedV6  = 13
)

// minElemLen is the smallest length (with its 4-byte header) of the
// elements decodeV3 reads.
var minElemLen = map[uint16]int{
	exGenericFlow: elemHeader + 48,
	exIPv4Flow:    elemHeader + 8,
	exIPv6Flow:    elemHeader + 32,
	exCntFlow:     elemHeader + 24,
	exReceivedV4:  elemHeader + 4,
	exReceivedV6:  elemHeader + 16,
}

// decodeV3 decodes one V3 record (rec includes its 12-byte header, and its
// length is the record's size). rev is the reverse direction of a
// bidirectional record (NSEL, IPFIX biflows), with zero counters when there
// is none. reason is set when the record is not a flow.
func decodeV3(rec []byte) (fr, rev egress.FlowRecord, reason string) {
	le := binary.LittleEndian
	if len(rec) < v3HeaderSize {
		return fr, rev, "bad-element"
	}
	num := int(le.Uint16(rec[4:]))
	var (
		src, dst            netip.Addr
		haveFlow            bool
		sport, dport        uint16
		outPkts, outBytes   uint64
		first, last, inPkts uint64
		inBytes             uint64
	)
	o := v3HeaderSize
	for i := 0; i < num; i++ {
		if len(rec)-o < elemHeader {
			return fr, rev, "bad-element"
		}
		typ := le.Uint16(rec[o:])
		n := int(le.Uint16(rec[o+2:]))
		if n < elemHeader || n > len(rec)-o {
			return fr, rev, "bad-element"
		}
		if m, ok := minElemLen[typ]; ok && n < m {
			return fr, rev, "bad-element"
		}
		e := rec[o+elemHeader : o+n]
		o += n
		switch typ {
		case exGenericFlow:
			haveFlow = true
			first, last = le.Uint64(e[0:]), le.Uint64(e[8:])
			inPkts, inBytes = le.Uint64(e[24:]), le.Uint64(e[32:])
			sport, dport = le.Uint16(e[40:]), le.Uint16(e[42:])
			fr.Key.Proto = e[44]
			fr.TCPFlags = e[45]
		case exIPv4Flow:
			src, dst = v4(le.Uint32(e[0:])), v4(le.Uint32(e[4:]))
		case exIPv6Flow:
			src, dst = v6(e[0:]), v6(e[16:])
		case exCntFlow:
			outPkts, outBytes = le.Uint64(e[8:]), le.Uint64(e[16:])
		case exReceivedV4:
			fr.Exporter = v4(le.Uint32(e[0:]))
		case exReceivedV6:
			fr.Exporter = v6(e[0:])
		}
	}
	if !src.IsValid() {
		return fr, rev, "no-address"
	}
	if !haveFlow {
		return fr, rev, "no-flow"
	}
	fr.Key.Src = netip.AddrPortFrom(src, sport)
	fr.Key.Dst = netip.AddrPortFrom(dst, dport)
	fr.Start = time.UnixMilli(int64(first)).UTC()
	fr.End = time.UnixMilli(int64(last)).UTC()
	fr.Packets, fr.Bytes = inPkts, inBytes
	if outPkts > 0 || outBytes > 0 {
		rev = fr
		rev.Key.Src, rev.Key.Dst = fr.Key.Dst, fr.Key.Src
		rev.Packets, rev.Bytes = outPkts, outBytes
		rev.TCPFlags = 0
	}
	return fr, rev, ""
}

// v4 is an IPv4 address nfdump keeps as a host-order integer.
func v4(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// v6 is an IPv6 address nfdump keeps as two host-order 64-bit halves.
func v6(b []byte) netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[0:], binary.LittleEndian.Uint64(b[0:]))
	binary.BigEndian.PutUint64(a[8:], binary.LittleEndian.Uint64(b[8:]))
	return netip.AddrFrom16(a).Unmap()
}

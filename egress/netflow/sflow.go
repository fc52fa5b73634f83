package netflow

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	gfsflow "github.com/netsampler/goflow2/v2/decoders/sflow"

	"github.com/cordon-vms/cordon/egress"
)

// sFlow v5 datagrams (sflow.org/sflow_version_5.txt) are decoded with
// goflow2's decoder; each flow sample becomes one FlowRecord for the sampled
// packet, its counters multiplied by the sampling rate (unless RawCounts).
// sFlow carries no flow times: a record starts and ends when it arrives.

// isSFlow reports whether b starts like an sFlow v5 datagram (a 32-bit
// version, where NetFlow/IPFIX start with a 16-bit one).
func isSFlow(b []byte) bool {
	return len(b) >= 4 && binary.BigEndian.Uint32(b) == 5
}

// sflowPrecheck walks the sample headers before goflow2 does: its decoder
// sizes an expanded flow sample's record slice from the untrusted count
// alone, so a count is refused unless the sample could hold that many
// records (8 bytes of header each).
func sflowPrecheck(b []byte) error {
	off := 8
	if len(b) < off {
		return ErrTruncated
	}
	switch binary.BigEndian.Uint32(b[4:]) {
	case 1:
		off += 4
	case 2:
		off += 16
	default:
		return fmt.Errorf("%w: sFlow agent address type %d", ErrTruncated, binary.BigEndian.Uint32(b[4:]))
	}
	off += 16 // sub-agent, sequence, uptime, sample count
	if len(b) < off {
		return ErrTruncated
	}
	for off+8 <= len(b) {
		format, length := binary.BigEndian.Uint32(b[off:]), int(binary.BigEndian.Uint32(b[off+4:]))
		off += 8
		if length > len(b)-off {
			return nil // goflow2 stops here
		}
		sample := b[off : off+length]
		off += length
		// Expanded flow sample: the record count is its 11th word.
		if format == gfsflow.SAMPLE_FORMAT_EXPANDED_FLOW && len(sample) >= 44 {
			if n := int(binary.BigEndian.Uint32(sample[40:])); n > (len(sample)-44)/8 {
				return fmt.Errorf("%w: sFlow expanded sample claims %d records in %d bytes", ErrTooManyRecords, n, len(sample))
			}
		}
	}
	return nil
}

func (d *Decoder) decodeSFlow(exporter netip.AddrPort, b []byte, emit func(egress.FlowRecord)) error {
	if err := sflowPrecheck(b); err != nil {
		return err
	}
	var p gfsflow.Packet
	if err := gfsflow.DecodeMessageVersion(bytes.NewBuffer(b), &p); err != nil {
		return err
	}
	now := d.now()
	n, dropped := 0, 0
	for _, s := range p.Samples {
		var (
			rate uint32
			recs []gfsflow.FlowRecord
		)
		switch x := s.(type) {
		case gfsflow.FlowSample:
			rate, recs = x.SamplingRate, x.Records
		case gfsflow.ExpandedFlowSample:
			rate, recs = x.SamplingRate, x.Records
		default:
			continue // counter and drop samples
		}
		rec, ok := sampledPacket(recs)
		if !ok {
			d.stats.skippedRecords.Add(1)
			continue
		}
		if n >= d.maxRecords() {
			dropped++
			continue
		}
		n++
		scale := uint64(max(rate, 1))
		if d.RawCounts {
			scale = 1
		}
		rec.Packets = scale
		rec.Bytes *= scale
		rec.Start, rec.End = now, now
		rec.Exporter = exporter.Addr().Unmap()
		d.stats.records.Add(1)
		emit(rec)
	}
	if dropped > 0 {
		d.stats.droppedRecords.Add(uint64(dropped))
		return fmt.Errorf("%w: dropped %d after %d", ErrTooManyRecords, dropped, n)
	}
	return nil
}

// sampledPacket describes a sampled packet from its flow records: the raw
// header when there is one, else the decoded IPv4/IPv6 record. Bytes is
// the packet's IP length.
func sampledPacket(recs []gfsflow.FlowRecord) (egress.FlowRecord, bool) {
	for _, r := range recs {
		if h, ok := r.Data.(gfsflow.SampledHeader); ok {
			if rec, ok := parseSampledHeader(h.Protocol, h.HeaderData); ok {
				return rec, true
			}
		}
	}
	for _, r := range recs {
		var base gfsflow.SampledIPBase
		switch x := r.Data.(type) {
		case gfsflow.SampledIPv4:
			base = x.SampledIPBase
		case gfsflow.SampledIPv6:
			base = x.SampledIPBase
		default:
			continue
		}
		src, ok1 := netip.AddrFromSlice(base.SrcIP)
		dst, ok2 := netip.AddrFromSlice(base.DstIP)
		if !ok1 || !ok2 {
			continue
		}
		return egress.FlowRecord{
			Key: egress.FlowKey{Proto: uint8(base.Protocol),
				Src: netip.AddrPortFrom(src.Unmap(), uint16(base.SrcPort)), Dst: netip.AddrPortFrom(dst.Unmap(), uint16(base.DstPort))},
			Bytes: uint64(base.Length), TCPFlags: uint8(base.TcpFlags),
		}, true
	}
	return egress.FlowRecord{}, false
}

// sFlow header protocols (sampled_header.protocol).
const (
	sflowHeaderEthernet = 1
	sflowHeaderIPv4     = 11
	sflowHeaderIPv6     = 12
)

// parseSampledHeader reads the 5-tuple, IP length and TCP flags from the
// first bytes of a sampled packet (Ethernet with up to two VLAN tags, or
// raw IPv4/IPv6). Every read is bounds-checked: the header is untrusted and
// usually truncated (128 bytes).
func parseSampledHeader(proto uint32, h []byte) (rec egress.FlowRecord, ok bool) {
	var ip []byte
	switch proto {
	case sflowHeaderEthernet:
		off := 12
		for tags := 0; ; tags++ {
			if len(h) < off+2 {
				return rec, false
			}
			et := binary.BigEndian.Uint16(h[off:])
			if (et == 0x8100 || et == 0x88a8) && tags < 2 {
				off += 4
				continue
			}
			switch et {
			case 0x0800, 0x86dd:
				ip = h[off+2:]
			default:
				return rec, false
			}
			break
		}
	case sflowHeaderIPv4, sflowHeaderIPv6:
		ip = h
	default:
		return rec, false
	}
	var l4 []byte
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		ihl := int(ip[0]&0x0f) * 4
		if ihl < 20 || len(ip) < ihl {
			return rec, false
		}
		rec.Key.Proto = ip[9]
		rec.Bytes = uint64(binary.BigEndian.Uint16(ip[2:]))
		src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		rec.Key.Src, rec.Key.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		if binary.BigEndian.Uint16(ip[6:])&0x1fff == 0 { // first fragment: ports follow
			l4 = ip[ihl:]
		}
	case len(ip) >= 40 && ip[0]>>4 == 6:
		rec.Key.Proto = ip[6]
		rec.Bytes = uint64(binary.BigEndian.Uint16(ip[4:])) + 40
		src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		rec.Key.Src, rec.Key.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		l4 = ip[40:] // extension headers are not followed
	default:
		return rec, false
	}
	switch rec.Key.Proto {
	case 6, 17, 132:
		if len(l4) >= 4 {
			rec.Key.Src = netip.AddrPortFrom(rec.Key.Src.Addr(), binary.BigEndian.Uint16(l4))
			rec.Key.Dst = netip.AddrPortFrom(rec.Key.Dst.Addr(), binary.BigEndian.Uint16(l4[2:]))
		}
		if rec.Key.Proto == 6 && len(l4) >= 14 {
			rec.TCPFlags = l4[13]
		}
	}
	return rec, true
}

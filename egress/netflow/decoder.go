package netflow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	gfnetflow "github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"

	"github.com/cordon-vms/cordon/egress"
)

// Decoding errors. A *DecodeError wraps them with the exporter and version.
var (
	ErrTruncated       = errors.New("netflow: truncated datagram")
	ErrVersion         = errors.New("netflow: unsupported version")
	ErrTooManyRecords  = errors.New("netflow: too many records in one datagram")
	ErrDatagramTooLong = errors.New("netflow: datagram longer than MaxDatagramSize")
)

// DecodeError is a datagram that could not be (fully) decoded.
type DecodeError struct {
	Exporter netip.AddrPort
	Version  uint16 // NetFlow version: 5, 9 or 10 (IPFIX); 0 for sFlow
	SFlow    bool   // an sFlow v5 datagram
	Err      error
}

func (e *DecodeError) Error() string {
	if e.SFlow {
		return fmt.Sprintf("netflow: exporter %s: sFlow v5: %v", e.Exporter, e.Err)
	}
	return fmt.Sprintf("netflow: exporter %s: version %d: %v", e.Exporter, e.Version, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Stats are the decoder's counters since it was created.
type Stats struct {
	Datagrams        uint64 // datagrams decoded (fully or partly)
	Records          uint64 // flow records handed on
	DecodeErrors     uint64 // datagrams with a decoding error
	UnknownTemplates uint64 // data sets whose template is unknown (or expired)
	TemplateRejects  uint64 // templates refused: empty, or over MaxTemplatesPerExporter
	TemplatesExpired uint64 // templates dropped after TemplateTimeout
	OptionsRecords   uint64 // options data records (skipped; IPFIX systemInitTime is used)
	SkippedRecords   uint64 // data records without IP addresses (L2-only templates, ...)
	DroppedRecords   uint64 // records over MaxRecordsPerDatagram
	Exporters        int    // exporters with templates now
}

type counters struct {
	datagrams, records, decodeErrors, unknownTemplates atomic.Uint64
	templateRejects, templatesExpired, optionsRecords  atomic.Uint64
	skippedRecords, droppedRecords                     atomic.Uint64
}

// Decoder turns NetFlow v5, v9 and IPFIX datagrams into egress.FlowRecords,
// using goflow2's decoders. It keeps templates per exporter address, then
// version, source id / observation domain and template id (RFC 7011 scopes
// them to the transport session, but exporters that send from changing
// source ports are common, so the port is left out, as goflow2 and nfdump
// do). It is safe for concurrent use.
type Decoder struct {
	// MaxTemplatesPerExporter bounds the templates kept for one exporter.
	// It defaults to 256.
	MaxTemplatesPerExporter int
	// MaxExporters bounds the exporters whose templates are kept; the least
	// recently seen is forgotten first. It defaults to 1024.
	MaxExporters int
	// TemplateTimeout forgets a template not refreshed for this long
	// (exporters resend templates periodically). It defaults to 30 minutes.
	TemplateTimeout time.Duration
	// MaxRecordsPerDatagram bounds the records taken from one datagram; the
	// rest are dropped and counted. It defaults to 2048.
	MaxRecordsPerDatagram int
	// RawCounts reports packets and bytes as exported. By default they are
	// multiplied by the exporter's packet sampling interval (v5 header;
	// v9/IPFIX samplingInterval or samplingPacketInterval in options data
	// or in the record) so that volume thresholds mean the same with
	// sampled and unsampled exporters.
	RawCounts bool

	timeNow func() time.Time // test hook; time.Now by default

	mu        sync.Mutex
	exporters map[netip.Addr]*templateStore
	scratch   []byte
	stats     counters
}

func (d *Decoder) now() time.Time {
	if d.timeNow != nil {
		return d.timeNow()
	}
	return time.Now()
}

func (d *Decoder) maxTemplates() int {
	if d.MaxTemplatesPerExporter > 0 {
		return d.MaxTemplatesPerExporter
	}
	return 256
}

func (d *Decoder) maxExporters() int {
	if d.MaxExporters > 0 {
		return d.MaxExporters
	}
	return 1024
}

func (d *Decoder) templateTimeout() time.Duration {
	if d.TemplateTimeout > 0 {
		return d.TemplateTimeout
	}
	return 30 * time.Minute
}

func (d *Decoder) maxRecords() int {
	if d.MaxRecordsPerDatagram > 0 {
		return d.MaxRecordsPerDatagram
	}
	return 2048
}

// Stats returns the counters.
func (d *Decoder) Stats() Stats {
	d.mu.Lock()
	n := len(d.exporters)
	d.mu.Unlock()
	return Stats{
		Datagrams:        d.stats.datagrams.Load(),
		Records:          d.stats.records.Load(),
		DecodeErrors:     d.stats.decodeErrors.Load(),
		UnknownTemplates: d.stats.unknownTemplates.Load(),
		TemplateRejects:  d.stats.templateRejects.Load(),
		TemplatesExpired: d.stats.templatesExpired.Load(),
		OptionsRecords:   d.stats.optionsRecords.Load(),
		SkippedRecords:   d.stats.skippedRecords.Load(),
		DroppedRecords:   d.stats.droppedRecords.Load(),
		Exporters:        n,
	}
}

func (d *Decoder) store(exp netip.Addr) *templateStore {
	if d.exporters == nil {
		d.exporters = make(map[netip.Addr]*templateStore)
	}
	ts, ok := d.exporters[exp]
	if !ok {
		if len(d.exporters) >= d.maxExporters() {
			var oldest netip.Addr
			var oldestSeen time.Time
			first := true
			for k, s := range d.exporters {
				if first || s.lastSeen.Before(oldestSeen) {
					oldest, oldestSeen, first = k, s.lastSeen, false
				}
			}
			delete(d.exporters, oldest)
		}
		ts = newTemplateStore(d)
		d.exporters[exp] = ts
	}
	ts.lastSeen = d.now()
	return ts
}

// Decode decodes one datagram from exporter and calls emit for each flow
// record, in datagram order. Records decoded before an error are still
// emitted; the error is a *DecodeError. emit is called with the decoder's
// lock held: it must not call back into the Decoder.
func (d *Decoder) Decode(exporter netip.AddrPort, datagram []byte, emit func(egress.FlowRecord)) error {
	if len(datagram) < 4 {
		d.stats.decodeErrors.Add(1)
		return &DecodeError{Exporter: exporter, Err: ErrTruncated}
	}
	version := binary.BigEndian.Uint16(datagram)
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if isSFlow(datagram) {
		err = d.decodeSFlow(exporter, datagram, emit)
		d.stats.datagrams.Add(1)
		if err != nil {
			d.stats.decodeErrors.Add(1)
			return &DecodeError{Exporter: exporter, SFlow: true, Err: err}
		}
		return nil
	}
	switch version {
	case 5:
		err = d.decodeV5(exporter, datagram, emit)
	case 9, 10:
		err = d.decodeV9(exporter, version, datagram, emit)
	default:
		err = fmt.Errorf("%w %d", ErrVersion, version)
	}
	d.stats.datagrams.Add(1)
	if err != nil {
		d.stats.decodeErrors.Add(1)
		return &DecodeError{Exporter: exporter, Version: version, Err: err}
	}
	return nil
}

const (
	v5HeaderLen = 24
	v5RecordLen = 48
)

func (d *Decoder) decodeV5(exporter netip.AddrPort, b []byte, emit func(egress.FlowRecord)) error {
	if len(b) < v5HeaderLen {
		return ErrTruncated
	}
	count := int(binary.BigEndian.Uint16(b[2:]))
	if v5HeaderLen+count*v5RecordLen > len(b) {
		return fmt.Errorf("%w: header says %d records, %d bytes hold %d", ErrTruncated, count, len(b), (len(b)-v5HeaderLen)/v5RecordLen)
	}
	var p netflowlegacy.PacketNetFlowV5
	if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(b), &p); err != nil {
		return err
	}
	export := time.Unix(int64(p.UnixSecs), int64(p.UnixNSecs))
	scale := uint64(1)
	if mode, interval := p.SamplingInterval>>14, p.SamplingInterval&0x3fff; mode != 0 && interval > 1 && !d.RawCounts {
		scale = uint64(interval)
	}
	at := func(ms uint32) time.Time {
		return export.Add(time.Duration(int32(ms-p.SysUptime)) * time.Millisecond)
	}
	n := 0
	for _, r := range p.Records {
		if n >= d.maxRecords() {
			d.stats.droppedRecords.Add(uint64(len(p.Records) - n))
			return fmt.Errorf("%w (%d)", ErrTooManyRecords, len(p.Records))
		}
		n++
		rec := egress.FlowRecord{
			Key: egress.FlowKey{
				Proto: r.Proto,
				Src:   netip.AddrPortFrom(v4(uint32(r.SrcAddr)), r.SrcPort),
				Dst:   netip.AddrPortFrom(v4(uint32(r.DstAddr)), r.DstPort),
			},
			Start:    at(r.First),
			End:      at(r.Last),
			Packets:  uint64(r.DPkts) * scale,
			Bytes:    uint64(r.DOctets) * scale,
			TCPFlags: r.TCPFlags,
			Exporter: exporter.Addr().Unmap(),
		}
		d.stats.records.Add(1)
		emit(rec)
	}
	return nil
}

func v4(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

func (d *Decoder) decodeV9(exporter netip.AddrPort, version uint16, b []byte, emit func(egress.FlowRecord)) error {
	ts := d.store(exporter.Addr().Unmap())
	var (
		nf9    gfnetflow.NFv9Packet
		ipfix  gfnetflow.IPFIXPacket
		export time.Time
		uptime uint32
		domain uint32
		sets   []any
	)
	if version == 10 && len(b) >= 4 && int(binary.BigEndian.Uint16(b[2:])) > len(b) {
		return fmt.Errorf("%w: IPFIX length %d > %d bytes", ErrTruncated, binary.BigEndian.Uint16(b[2:]), len(b))
	}
	if version == 9 {
		// The v9 header's count is the number of records (templates and
		// data), which exporters fill in loosely (softflowd counts only the
		// templates); goflow2 reads it as a flowset count and would stop
		// early. Decode until the datagram ends instead (RFC 3954 §5.1
		// lets collectors ignore the count).
		d.scratch = append(d.scratch[:0], b...)
		binary.BigEndian.PutUint16(d.scratch[2:], 0xffff)
		b = d.scratch
	}
	derr := gfnetflow.DecodeMessageVersion(bytes.NewBuffer(b), ts, &nf9, &ipfix)
	if version == 9 {
		export, uptime, domain, sets = time.Unix(int64(nf9.UnixSeconds), 0), nf9.SystemUptime, nf9.SourceId, nf9.FlowSets
	} else {
		export, domain, sets = time.Unix(int64(ipfix.ExportTime), 0), ipfix.ObservationDomainId, ipfix.FlowSets
	}
	if derr != nil && errors.Is(derr, gfnetflow.ErrorTemplateNotFound) {
		// Counted per set below; not an error of the datagram.
		derr = nil
	}
	n, dropped := 0, 0
	for _, s := range sets {
		switch fs := s.(type) {
		case gfnetflow.RawFlowSet:
			d.stats.unknownTemplates.Add(1)
		case gfnetflow.OptionsDataFlowSet:
			d.optionsRecords(ts, fs, version, domain)
		case gfnetflow.DataFlowSet:
			for _, r := range fs.Records {
				if n >= d.maxRecords() {
					dropped++
					continue
				}
				n++
				rec, ok := d.record(r.Values, version, export, uptime, ts.initTime[domain], ts.sampling[domain])
				if !ok {
					d.stats.skippedRecords.Add(1)
					continue
				}
				rec.Exporter = exporter.Addr().Unmap()
				d.stats.records.Add(1)
				emit(rec)
			}
		}
	}
	if derr != nil {
		return derr
	}
	if dropped > 0 {
		d.stats.droppedRecords.Add(uint64(dropped))
		return fmt.Errorf("%w: dropped %d after %d", ErrTooManyRecords, dropped, n)
	}
	return nil
}

// optionsRecords reads what the collector keeps from an options data set,
// per observation domain: the IPFIX systemInitTimeMilliseconds (to place
// sysUpTime-relative times) and the packet sampling rate. Per-domain state
// is bounded like the templates.
func (d *Decoder) optionsRecords(ts *templateStore, fs gfnetflow.OptionsDataFlowSet, version uint16, domain uint32) {
	for _, r := range fs.Records {
		d.stats.optionsRecords.Add(1)
		var pktInterval, pktSpace uint64
		for _, f := range r.OptionsValues {
			if f.PenProvided {
				continue
			}
			v, ok := uintValue(f.Value)
			if !ok {
				continue
			}
			// Per-domain state is bounded like the templates.
			switch f.Type {
			case ieSystemInitTimeMilliseconds:
				if _, known := ts.initTime[domain]; version == 10 && (known || len(ts.initTime) < d.maxTemplates()) {
					ts.initTime[domain] = time.UnixMilli(int64(v))
				}
			case ieSamplingInterval:
				pktInterval, pktSpace = 1, v-min(v, 1)
			case ieSamplingPacketInterval:
				pktInterval = v
			case ieSamplingPacketSpace:
				pktSpace = v
			}
		}
		if rate := samplingRate(pktInterval, pktSpace); rate > 0 {
			if _, known := ts.sampling[domain]; known || len(ts.sampling) < d.maxTemplates() {
				ts.sampling[domain] = rate
			}
		}
	}
}

// Information elements (NetFlow v9 field types share the numbers below 128
// with IPFIX).
const (
	ieOctetDeltaCount            = 1
	iePacketDeltaCount           = 2
	ieProtocolIdentifier         = 4
	ieTCPControlBits             = 6
	ieSourceTransportPort        = 7
	ieSourceIPv4Address          = 8
	ieDestinationTransportPort   = 11
	ieDestinationIPv4Address     = 12
	ieFlowEndSysUpTime           = 21
	ieFlowStartSysUpTime         = 22
	ieSourceIPv6Address          = 27
	ieDestinationIPv6Address     = 28
	ieOctetTotalCount            = 85
	iePacketTotalCount           = 86
	ieFlowStartSeconds           = 150
	ieFlowEndSeconds             = 151
	ieFlowStartMilliseconds      = 152
	ieFlowEndMilliseconds        = 153
	ieFlowStartMicroseconds      = 154
	ieFlowEndMicroseconds        = 155
	ieFlowStartNanoseconds       = 156
	ieFlowEndNanoseconds         = 157
	ieSamplingInterval           = 34
	ieSystemInitTimeMilliseconds = 160
	ieSamplingPacketInterval     = 305
	ieSamplingPacketSpace        = 306
)

// samplingRate is the 1-in-N rate of count-based sampling that selects
// interval packets and then skips space packets (RFC 5477
// samplingPacketInterval/Space; NetFlow v9 SAMPLING_INTERVAL N is 1 then
// N-1). It is 0 when unknown, at most 2^24.
func samplingRate(interval, space uint64) uint32 {
	if interval == 0 || interval > 1<<24 || space > 1<<24 {
		return 0
	}
	return uint32(min((interval+space)/interval, 1<<24))
}

func uintValue(v any) (uint64, bool) {
	b, ok := v.([]byte)
	if !ok || len(b) == 0 || len(b) > 8 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		u = u<<8 | uint64(c)
	}
	return u, true
}

// ntpTime converts an RFC 7011 dateTimeMicroseconds/Nanoseconds value (NTP
// timestamp: seconds since 1900 and a binary fraction).
func ntpTime(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	sec := int64(binary.BigEndian.Uint32(b)) - 2208988800
	frac := uint64(binary.BigEndian.Uint32(b[4:]))
	return time.Unix(sec, int64(frac*1e9>>32)), true
}

// record maps one data record to a FlowRecord; ok is false when it has no
// IP addresses.
func (d *Decoder) record(vals []gfnetflow.DataField, version uint16, export time.Time, uptime uint32, initTime time.Time, sampling uint32) (rec egress.FlowRecord, ok bool) {
	var (
		src, dst       netip.Addr
		sport, dport   uint16
		startUp, endUp uint32
		hasUp          [2]bool
		start, end     time.Time
		deltaB, deltaP uint64
		totalB, totalP uint64
		hasDelta       [2]bool
	)
	for _, f := range vals {
		if f.PenProvided {
			continue // enterprise-specific (e.g. reverse-direction) elements
		}
		b, _ := f.Value.([]byte)
		switch f.Type {
		case ieSourceIPv4Address, ieDestinationIPv4Address:
			if len(b) == 4 {
				a := netip.AddrFrom4([4]byte(b))
				if f.Type == ieSourceIPv4Address {
					src = a
				} else {
					dst = a
				}
			}
		case ieSourceIPv6Address, ieDestinationIPv6Address:
			if len(b) == 16 {
				a := netip.AddrFrom16([16]byte(b))
				if f.Type == ieSourceIPv6Address {
					src = a
				} else {
					dst = a
				}
			}
		case ieSourceTransportPort:
			if u, ok := uintValue(b); ok {
				sport = uint16(u)
			}
		case ieDestinationTransportPort:
			if u, ok := uintValue(b); ok {
				dport = uint16(u)
			}
		case ieProtocolIdentifier:
			if u, ok := uintValue(b); ok {
				rec.Key.Proto = uint8(u)
			}
		case ieTCPControlBits:
			if u, ok := uintValue(b); ok {
				rec.TCPFlags = uint8(u)
			}
		case ieOctetDeltaCount:
			deltaB, hasDelta[0] = uintValue(b)
		case iePacketDeltaCount:
			deltaP, hasDelta[1] = uintValue(b)
		case ieOctetTotalCount:
			totalB, _ = uintValue(b)
		case iePacketTotalCount:
			totalP, _ = uintValue(b)
		case ieSamplingInterval:
			if u, ok := uintValue(b); ok && u > 0 {
				sampling = uint32(min(u, 1<<24))
			}
		case ieFlowStartSysUpTime, ieFlowEndSysUpTime:
			if u, ok := uintValue(b); ok {
				if f.Type == ieFlowStartSysUpTime {
					startUp, hasUp[0] = uint32(u), true
				} else {
					endUp, hasUp[1] = uint32(u), true
				}
			}
		case ieFlowStartSeconds, ieFlowEndSeconds:
			if u, ok := uintValue(b); ok {
				t := time.Unix(int64(u), 0)
				if f.Type == ieFlowStartSeconds {
					start = t
				} else {
					end = t
				}
			}
		case ieFlowStartMilliseconds, ieFlowEndMilliseconds:
			if u, ok := uintValue(b); ok {
				t := time.UnixMilli(int64(u))
				if f.Type == ieFlowStartMilliseconds {
					start = t
				} else {
					end = t
				}
			}
		case ieFlowStartMicroseconds, ieFlowEndMicroseconds, ieFlowStartNanoseconds, ieFlowEndNanoseconds:
			if t, ok := ntpTime(b); ok {
				if f.Type == ieFlowStartMicroseconds || f.Type == ieFlowStartNanoseconds {
					start = t
				} else {
					end = t
				}
			}
		}
	}
	if !src.IsValid() || !dst.IsValid() {
		return rec, false
	}
	rec.Key.Src = netip.AddrPortFrom(src, sport)
	rec.Key.Dst = netip.AddrPortFrom(dst, dport)
	rec.Bytes, rec.Packets = deltaB, deltaP
	if !hasDelta[0] {
		rec.Bytes = totalB
	}
	if !hasDelta[1] {
		rec.Packets = totalP
	}
	if sampling > 1 && !d.RawCounts {
		rec.Bytes *= uint64(sampling)
		rec.Packets *= uint64(sampling)
	}
	// Sysuptime-relative times: v9 against the header's uptime and unix
	// seconds; IPFIX against the exporter's systemInitTimeMilliseconds.
	up := func(ms uint32) time.Time {
		if version == 9 {
			return export.Add(time.Duration(int32(ms-uptime)) * time.Millisecond)
		}
		if !initTime.IsZero() {
			return initTime.Add(time.Duration(ms) * time.Millisecond)
		}
		return export
	}
	if start.IsZero() && hasUp[0] {
		start = up(startUp)
	}
	if end.IsZero() && hasUp[1] {
		end = up(endUp)
	}
	if start.IsZero() {
		start = export
	}
	if end.IsZero() {
		end = export
	}
	rec.Start, rec.End = start, end
	return rec, true
}

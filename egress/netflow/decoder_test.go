package netflow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress"
)

// Builders for hand-made v9 and IPFIX datagrams.

type field struct {
	typ, length uint16
	pen         uint32 // IPFIX enterprise number (sets the enterprise bit)
}

func be16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// set wraps body in a flowset header, padded to 4 bytes.
func set(id uint16, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	return append(be16(be16(nil, id), uint16(len(body)+4)), body...)
}

func templateBody(id uint16, fs []field) []byte {
	b := be16(be16(nil, id), uint16(len(fs)))
	for _, f := range fs {
		t := f.typ
		if f.pen != 0 {
			t |= 0x8000
		}
		b = be16(be16(b, t), f.length)
		if f.pen != 0 {
			b = be32(b, f.pen)
		}
	}
	return b
}

func v9(uptime, unixSecs, sourceID uint32, sets ...[]byte) []byte {
	b := be16(nil, 9)
	b = be16(b, uint16(len(sets)))
	b = be32(be32(be32(be32(b, uptime), unixSecs), 1), sourceID)
	for _, s := range sets {
		b = append(b, s...)
	}
	return b
}

func ipfix(exportTime, domain uint32, sets ...[]byte) []byte {
	var body []byte
	for _, s := range sets {
		body = append(body, s...)
	}
	b := be16(nil, 10)
	b = be16(b, uint16(16+len(body)))
	b = be32(be32(be32(b, exportTime), 1), domain)
	return append(b, body...)
}

// v4Template is a minimal IPv4 5-tuple template with counters and uptimes.
var v4Template = []field{{8, 4, 0}, {12, 4, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {1, 4, 0}, {2, 4, 0}, {22, 4, 0}, {21, 4, 0}}

func v4Record(src, dst string, sport, dport uint16, proto uint8, bytes, pkts, first, last uint32) []byte {
	b := append([]byte(nil), netip.MustParseAddr(src).AsSlice()...)
	b = append(b, netip.MustParseAddr(dst).AsSlice()...)
	b = be16(be16(b, sport), dport)
	b = append(b, proto)
	return be32(be32(be32(be32(b, bytes), pkts), first), last)
}

var exporter = netip.MustParseAddrPort("192.0.2.1:40000")

func decodeAll(t testing.TB, d *Decoder, dgrams ...[]byte) ([]egress.FlowRecord, error) {
	t.Helper()
	var recs []egress.FlowRecord
	var err error
	for _, dg := range dgrams {
		if e := d.Decode(exporter, dg, func(r egress.FlowRecord) { recs = append(recs, r) }); e != nil {
			err = e
		}
	}
	return recs, err
}

func TestDecodeV9Times(t *testing.T) {
	// Exported at unix 1,700,000,000 with 100 s of uptime: a flow from
	// uptime 40 s to 90 s started 60 s and ended 10 s before the export.
	dg := v9(100000, 1700000000, 7,
		set(0, templateBody(300, v4Template)),
		set(300, v4Record("192.168.50.10", "203.0.113.5", 40000, 8800, 17, 1234, 5, 40000, 90000)))
	var d Decoder
	recs, err := decodeAll(t, &d, dg)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	want := egress.FlowRecord{
		Key:   egress.FlowKey{Proto: 17, Src: netip.MustParseAddrPort("192.168.50.10:40000"), Dst: netip.MustParseAddrPort("203.0.113.5:8800")},
		Start: time.Unix(1700000000-60, 0), End: time.Unix(1700000000-10, 0), Packets: 5, Bytes: 1234,
		Exporter: exporter.Addr(),
	}
	if r.Key != want.Key || !r.Start.Equal(want.Start) || !r.End.Equal(want.End) || r.Packets != want.Packets || r.Bytes != want.Bytes || r.Exporter != want.Exporter {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
}

func TestDecodeIPFIXEnterpriseAndVariableLength(t *testing.T) {
	// A template with an enterprise-specific field (skipped), a
	// variable-length field (skipped, but its length is honoured), IPv6
	// addresses and absolute millisecond times.
	tmpl := []field{{27, 16, 0}, {28, 16, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0},
		{1, 8, 29305}, {82, 0xffff, 0}, {1, 8, 0}, {2, 8, 0}, {152, 8, 0}, {153, 8, 0}}
	rec := append([]byte(nil), netip.MustParseAddr("2001:db8:50::10").AsSlice()...)
	rec = append(rec, netip.MustParseAddr("2001:db8:99::1").AsSlice()...)
	rec = be16(be16(rec, 41000), 9999)
	rec = append(rec, 17)
	rec = binary.BigEndian.AppendUint64(rec, 999999) // reverse octets (PEN 29305): ignored
	rec = append(rec, 5, 'e', 't', 'h', '0', '1')    // interfaceName, variable length 5
	rec = binary.BigEndian.AppendUint64(rec, 4321)
	rec = binary.BigEndian.AppendUint64(rec, 3)
	rec = binary.BigEndian.AppendUint64(rec, 1700000000123)
	rec = binary.BigEndian.AppendUint64(rec, 1700000005456)
	var d Decoder
	recs, err := decodeAll(t, &d, ipfix(1700000010, 1, set(2, templateBody(400, tmpl)), set(400, rec)))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Key.Src.String() != "[2001:db8:50::10]:41000" || r.Key.Dst.String() != "[2001:db8:99::1]:9999" || r.Key.Proto != 17 ||
		r.Bytes != 4321 || r.Packets != 3 || r.Start.UnixMilli() != 1700000000123 || r.End.UnixMilli() != 1700000005456 {
		t.Errorf("got %+v", r)
	}
}

func TestTemplateExpiryAndScope(t *testing.T) {
	now := time.Unix(1700000000, 0)
	d := Decoder{TemplateTimeout: time.Minute, timeNow: func() time.Time { return now }}
	tmpl := v9(1000, 1700000000, 7, set(0, templateBody(300, v4Template)))
	data := v9(1000, 1700000000, 7, set(300, v4Record("10.0.0.1", "10.0.0.2", 1, 2, 6, 100, 1, 900, 950)))
	if recs, err := decodeAll(t, &d, tmpl, data); err != nil || len(recs) != 1 {
		t.Fatalf("fresh template: %d records, %v", len(recs), err)
	}
	// The same exporter from another source port shares its templates;
	// another source id, or another exporter, does not.
	if err := d.Decode(netip.MustParseAddrPort("192.0.2.1:40001"), data, func(egress.FlowRecord) {}); err != nil || d.Stats().Records != 2 {
		t.Errorf("template not found from another source port: %v, %+v", err, d.Stats())
	}
	other := v9(1000, 1700000000, 8, set(300, v4Record("10.0.0.1", "10.0.0.2", 1, 2, 6, 100, 1, 900, 950)))
	if recs, _ := decodeAll(t, &d, other); len(recs) != 0 {
		t.Errorf("template leaked across source ids")
	}
	if err := d.Decode(netip.MustParseAddrPort("192.0.2.99:40000"), data, func(egress.FlowRecord) { t.Error("template leaked across exporters") }); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if recs, _ := decodeAll(t, &d, data); len(recs) != 0 {
		t.Errorf("expired template still used")
	}
	st := d.Stats()
	if st.TemplatesExpired != 1 || st.UnknownTemplates != 3 || st.Exporters != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestIPFIXTemplateWithdrawal(t *testing.T) {
	var d Decoder
	rec := v4Record("10.0.0.1", "10.0.0.2", 1, 2, 6, 100, 1, 0, 0)
	tmpl := ipfix(1700000000, 1, set(2, append(templateBody(300, v4Template), templateBody(301, v4Template)...)))
	data := ipfix(1700000000, 1, set(300, rec), set(301, rec))
	if recs, err := decodeAll(t, &d, tmpl, data); err != nil || len(recs) != 2 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	withdraw := ipfix(1700000000, 1, set(2, be16(be16(nil, 300), 0)))
	if recs, err := decodeAll(t, &d, withdraw, data); err != nil || len(recs) != 1 {
		t.Fatalf("after withdrawing 300: %d records, %v", len(recs), err)
	}
	withdrawAll := ipfix(1700000000, 1, set(2, be16(be16(nil, 2), 0)))
	if recs, err := decodeAll(t, &d, withdrawAll, data); err != nil || len(recs) != 0 {
		t.Fatalf("after withdrawing all: %d records, %v", len(recs), err)
	}
}

func TestDecodeLimits(t *testing.T) {
	t.Run("templates per exporter", func(t *testing.T) {
		d := Decoder{MaxTemplatesPerExporter: 4}
		var sets [][]byte
		for id := uint16(256); id < 262; id++ {
			sets = append(sets, set(0, templateBody(id, v4Template)))
		}
		_, err := decodeAll(t, &d, v9(0, 0, 1, sets...))
		if !errors.Is(err, ErrTooManyTemplates) || d.Stats().TemplateRejects != 1 {
			t.Errorf("err %v, stats %+v", err, d.Stats())
		}
	})
	t.Run("records per datagram", func(t *testing.T) {
		d := Decoder{MaxRecordsPerDatagram: 3}
		var body []byte
		for i := range 5 {
			body = append(body, v4Record("10.0.0.1", "10.0.0.2", uint16(i), 2, 6, 100, 1, 0, 0)...)
		}
		recs, err := decodeAll(t, &d, v9(0, 0, 1, set(0, templateBody(300, v4Template)), set(300, body)))
		if !errors.Is(err, ErrTooManyRecords) || len(recs) != 3 || d.Stats().DroppedRecords != 2 {
			t.Errorf("%d records, err %v, stats %+v", len(recs), err, d.Stats())
		}
	})
	t.Run("exporters", func(t *testing.T) {
		now := time.Unix(0, 0)
		d := Decoder{MaxExporters: 2, timeNow: func() time.Time { now = now.Add(time.Second); return now }}
		dg := v9(0, 0, 1, set(0, templateBody(300, v4Template)))
		for i := range 5 {
			d.Decode(netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 2055), dg, func(egress.FlowRecord) {})
		}
		if n := d.Stats().Exporters; n != 2 {
			t.Errorf("%d exporters kept", n)
		}
	})
}

// decodeCases are malformed or hostile datagrams with the error they give;
// they also seed the fuzz targets.
var decodeCases = []struct {
	name string
	dg   []byte
	want error
}{
	{"empty", nil, ErrTruncated},
	{"short", []byte{0, 9, 0}, ErrTruncated},
	{"version 7", []byte{0, 7, 0, 0, 0, 0}, ErrVersion},
	{"v5 header only", append([]byte{0, 5, 0, 1}, make([]byte, 20)...), ErrTruncated},
	{"v5 count lies", append([]byte{0, 5, 0, 30}, make([]byte, 20+48)...), ErrTruncated},
	{"ipfix length lies", ipfix(0, 0, set(2, templateBody(300, v4Template)))[:20], ErrTruncated},
	// A template whose fields are all zero bytes long would make goflow2's
	// data-set loop spin forever; it is refused.
	{"zero-length template", v9(0, 0, 1, set(0, templateBody(300, []field{{8, 0, 0}, {12, 0, 0}})), set(300, []byte{1, 2, 3, 4})), ErrEmptyTemplate},
	{"zero-length ipfix options template", ipfix(0, 0, set(3, append(be16(be16(be16(nil, 300), 1), 1), be16(be16(nil, 1), 0)...))), ErrEmptyTemplate},
	// Many zero-length fields beside one real one: each 1-byte record would
	// cost goflow2 a DataField per field (gigabytes per datagram); refused.
	{"zero-length fields amplify", v9(0, 0, 1, set(0, templateBody(300, append(make([]field, 1000), field{8, 1, 0}))), set(300, make([]byte, 4000))), ErrEmptyTemplate},
	{"flowset length under header", v9(0, 0, 1, []byte{0, 0, 0, 2}), nil},
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			done := make(chan error, 1)
			go func() { _, err := decodeAll(t, &d, tc.dg); done <- err }()
			select {
			case err := <-done:
				var de *DecodeError
				if err == nil || !errors.As(err, &de) {
					t.Fatalf("err = %v, want a *DecodeError", err)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if !strings.HasPrefix(err.Error(), "netflow: exporter 192.0.2.1:40000: version ") {
					t.Errorf("error %q does not name the exporter", err)
				}
				if d.Stats().DecodeErrors != 1 {
					t.Errorf("stats %+v", d.Stats())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("decode hangs")
			}
		})
	}
}

// fixtures returns the committed datagrams in testdata/dir.
func fixtures(t testing.TB, dir string) [][]byte {
	paths, _ := filepath.Glob(filepath.Join("testdata", dir, "*.bin"))
	if len(paths) == 0 {
		t.Fatalf("no testdata/%s fixtures", dir)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func fuzzDecode(f *testing.F, dir string) {
	fx := fixtures(f, dir)
	for _, dg := range fx {
		f.Add(dg)
	}
	for _, tc := range decodeCases {
		f.Add(tc.dg)
	}
	f.Fuzz(func(t *testing.T, dg []byte) {
		d := Decoder{MaxRecordsPerDatagram: 4096}
		// The fixtures first, so the fuzzed datagram can use their templates.
		for _, x := range fx {
			d.Decode(exporter, x, func(egress.FlowRecord) {})
		}
		n := 0
		d.Decode(exporter, dg, func(r egress.FlowRecord) {
			n++
			if !r.Key.Src.Addr().IsValid() || !r.Key.Dst.Addr().IsValid() {
				t.Fatalf("record without addresses: %+v", r)
			}
		})
		if n > 4096 {
			t.Fatalf("%d records", n)
		}
	})
}

func FuzzDecodeV5(f *testing.F)    { fuzzDecode(f, "softflowd-v5") }
func FuzzDecodeV9(f *testing.F)    { fuzzDecode(f, "softflowd-v9") }
func FuzzDecodeIPFIX(f *testing.F) { fuzzDecode(f, "softflowd-v10") }

func TestV5Sampling(t *testing.T) {
	_, _, _, _, v5 := benchDatagrams()
	v5 = append([]byte(nil), v5...)
	binary.BigEndian.PutUint16(v5[22:], 1<<14|10) // deterministic 1 in 10
	for _, raw := range []bool{false, true} {
		d := Decoder{RawCounts: raw}
		recs, err := decodeAll(t, &d, v5)
		if err != nil || len(recs) != benchRecords {
			t.Fatalf("%d records, %v", len(recs), err)
		}
		want := uint64(1500 * 10)
		if raw {
			want = 1500
		}
		if recs[0].Bytes != want || recs[0].Packets != want/500 {
			t.Errorf("raw=%v: %d bytes %d packets, want %d bytes", raw, recs[0].Bytes, recs[0].Packets, want)
		}
	}
	if got := samplingRate(1, 3); got != 4 {
		t.Errorf("samplingRate(1, 3) = %d", got)
	}
	if got := samplingRate(0, 3); got != 0 {
		t.Errorf("samplingRate(0, 3) = %d", got)
	}
}

// TestDecodeMemoryBound: the worst case within a jumbo datagram (a template
// of 1-byte fields, a data set of many records) allocates in proportion to
// the datagram, well under a few MiB.
func TestDecodeMemoryBound(t *testing.T) {
	fs := make([]field, 100)
	for i := range fs {
		fs[i] = field{typ: uint16(200 + i), length: 1}
	}
	var d Decoder
	if _, err := decodeAll(t, &d, v9(0, 0, 1, set(0, templateBody(300, fs)))); err != nil {
		t.Fatal(err)
	}
	dg := v9(0, 0, 1, set(300, make([]byte, 8900)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	decodeAll(t, &d, dg)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("one %d-byte datagram allocated %d bytes", len(dg), n)
	}
	if st := d.Stats(); st.SkippedRecords != 89 {
		t.Errorf("stats %+v (records without addresses are skipped)", st)
	}
}

func TestSFlow(t *testing.T) {
	fx := fixtures(t, "pmacct-sflow")
	var d Decoder
	var recs []egress.FlowRecord
	for _, dg := range fx {
		if err := d.Decode(exporter, dg, func(r egress.FlowRecord) { recs = append(recs, r) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(recs) == 0 {
		t.Fatal("no records")
	}
	for _, r := range recs {
		if r.Packets != 1 || r.Bytes < 20 || !r.Key.Src.Addr().IsValid() || r.Start.IsZero() {
			t.Errorf("record %+v", r)
		}
	}
	// A sampling rate of 10 (the first flow sample's rate field) scales the
	// counters, unless RawCounts.
	dg := append([]byte(nil), fx[0]...)
	binary.BigEndian.PutUint32(dg[44:], 10)
	for _, raw := range []bool{false, true} {
		d := Decoder{RawCounts: raw}
		var first egress.FlowRecord
		n := 0
		if err := d.Decode(exporter, dg, func(r egress.FlowRecord) {
			if n == 0 {
				first = r
			}
			n++
		}); err != nil {
			t.Fatal(err)
		}
		want := uint64(10)
		if raw {
			want = 1
		}
		if first.Packets != want || first.Bytes != want*recs[0].Bytes || first.Key != recs[0].Key {
			t.Errorf("raw=%v: %+v, want %d packets of %d bytes", raw, first, want, recs[0].Bytes)
		}
	}
}

// sflowExpandedBomb is an sFlow datagram whose expanded flow sample claims
// 2^32-1 records: goflow2 would size a slice from that count.
var sflowExpandedBomb = func() []byte {
	b := be32(be32(nil, 5), 1)
	b = append(b, 127, 0, 0, 1)
	b = be32(be32(be32(be32(b, 0), 1), 0), 1)
	sample := make([]byte, 44)
	binary.BigEndian.PutUint32(sample[40:], 0xffffffff)
	b = be32(be32(b, 3), uint32(len(sample)))
	return append(b, sample...)
}()

func TestSFlowErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		dg   []byte
		want error
	}{
		{"expanded sample count", sflowExpandedBomb, ErrTooManyRecords},
		{"agent address type", []byte{0, 0, 0, 5, 0, 0, 0, 7, 1, 2, 3, 4}, ErrTruncated},
		{"header cut", []byte{0, 0, 0, 5, 0, 0, 0, 1, 127, 0, 0, 1, 0, 0}, ErrTruncated},
	} {
		var d Decoder
		_, err := decodeAll(t, &d, tc.dg)
		var de *DecodeError
		if !errors.As(err, &de) || !de.SFlow || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), ": sFlow v5: ") {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeSFlow is seeded with pmacct's sFlow datagrams.
func FuzzDecodeSFlow(f *testing.F) {
	for _, dg := range fixtures(f, "pmacct-sflow") {
		f.Add(dg)
	}
	f.Add(sflowExpandedBomb)
	f.Fuzz(func(t *testing.T, dg []byte) {
		var d Decoder
		d.Decode(exporter, dg, func(r egress.FlowRecord) {
			if !r.Key.Src.Addr().IsValid() || !r.Key.Dst.Addr().IsValid() || r.Packets == 0 {
				t.Fatalf("record %+v", r)
			}
		})
	})
}

// FuzzParseSampledHeader: the sampled packet header parser on any bytes.
func FuzzParseSampledHeader(f *testing.F) {
	f.Add(uint32(1), bytes.Repeat([]byte{0x81, 0, 0, 1}, 10))
	f.Add(uint32(11), []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 1, 187})
	f.Add(uint32(12), make([]byte, 40))
	f.Fuzz(func(t *testing.T, proto uint32, h []byte) {
		rec, ok := parseSampledHeader(proto, h)
		if ok && (!rec.Key.Src.Addr().IsValid() || !rec.Key.Dst.Addr().IsValid()) {
			t.Fatalf("%+v", rec)
		}
	})
}

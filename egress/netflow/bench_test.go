package netflow

import (
	"bytes"
	"encoding/binary"
	"testing"

	gfnetflow "github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"
	gfsflow "github.com/netsampler/goflow2/v2/decoders/sflow"

	"github.com/cordon-vms/cordon/egress"
)

// benchRecords is the records per data datagram (≈ 1.1 KB for v9/IPFIX,
// 1464 bytes for v5: what exporters send in one MTU).
const benchRecords = 30

func benchDatagrams() (tmpl9, data9, tmpl10, data10, v5 []byte) {
	var body []byte
	for i := range benchRecords {
		body = append(body, v4Record("192.168.50.10", "203.0.113.5", uint16(40000+i), 443, 6, 1500, 3, 1000, 2000)...)
	}
	tmpl9 = v9(5000, 1700000000, 1, set(0, templateBody(300, v4Template)))
	data9 = v9(5000, 1700000000, 1, set(300, body))
	tmpl10 = ipfix(1700000000, 1, set(2, templateBody(300, v4Template)))
	data10 = ipfix(1700000000, 1, set(300, body))
	v5 = be16(be16(nil, 5), benchRecords)
	v5 = be32(be32(be32(be32(v5, 5000), 1700000000), 0), 1)
	v5 = append(v5, 0, 0, 0, 0)
	for i := range benchRecords {
		r := append([]byte(nil), 192, 168, 50, 10, 203, 0, 113, 5, 0, 0, 0, 0)
		r = be16(be16(r, 1), 2)
		r = be32(be32(be32(be32(r, 3), 1500), 1000), 2000)
		r = be16(be16(r, uint16(40000+i)), 443)
		r = append(r, 0, 0x18, 6, 0, 0, 0, 0, 0, 24, 24, 0, 0)
		v5 = append(v5, r...)
	}
	return
}

// BenchmarkDecode measures cordon's decoder (goflow2 decoding, template
// store, mapping to egress.FlowRecord) in records/s; the goflow2 variants
// are the baseline in the same run: goflow2's decoder alone, without the
// mapping. Compare with:
//
//	go test ./egress/netflow -run '^$' -bench Decode -benchmem
func BenchmarkDecode(b *testing.B) {
	tmpl9, data9, tmpl10, data10, v5 := benchDatagrams()
	n := 0
	sink := func(egress.FlowRecord) { n++ }
	for _, bc := range []struct {
		name       string
		tmpl, data []byte
	}{{"v5", nil, v5}, {"v9", tmpl9, data9}, {"ipfix", tmpl10, data10}} {
		b.Run("cordon/"+bc.name, func(b *testing.B) {
			var d Decoder
			if bc.tmpl != nil {
				if err := d.Decode(exporter, bc.tmpl, sink); err != nil {
					b.Fatal(err)
				}
			}
			n = 0
			b.SetBytes(int64(len(bc.data)))
			for b.Loop() {
				if err := d.Decode(exporter, bc.data, sink); err != nil {
					b.Fatal(err)
				}
			}
			if n != b.N*benchRecords {
				b.Fatalf("%d records for %d datagrams", n, b.N)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run("goflow2/"+bc.name, func(b *testing.B) {
			ts := gfnetflow.CreateTemplateSystem()
			if bc.tmpl != nil {
				var p9 gfnetflow.NFv9Packet
				var p10 gfnetflow.IPFIXPacket
				if err := gfnetflow.DecodeMessageVersion(bytes.NewBuffer(bc.tmpl), ts, &p9, &p10); err != nil {
					b.Fatal(err)
				}
			}
			data := append([]byte(nil), bc.data...)
			if binary.BigEndian.Uint16(data) == 9 {
				binary.BigEndian.PutUint16(data[2:], 0xffff) // as cordon does (see decodeV9)
			}
			b.SetBytes(int64(len(data)))
			recs := 0
			for b.Loop() {
				if bc.name == "v5" {
					var p netflowlegacy.PacketNetFlowV5
					if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(data), &p); err != nil {
						b.Fatal(err)
					}
					recs += len(p.Records)
					continue
				}
				var p9 gfnetflow.NFv9Packet
				var p10 gfnetflow.IPFIXPacket
				if err := gfnetflow.DecodeMessageVersion(bytes.NewBuffer(data), ts, &p9, &p10); err != nil {
					b.Fatal(err)
				}
				for _, fs := range append(p9.FlowSets, p10.FlowSets...) {
					if d, ok := fs.(gfnetflow.DataFlowSet); ok {
						recs += len(d.Records)
					}
				}
			}
			if recs != b.N*benchRecords {
				b.Fatalf("%d records for %d datagrams", recs, b.N)
			}
			b.ReportMetric(float64(recs)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkDecodeSFlow: cordon's sFlow path (goflow2's decoder, the sampled
// header parser, the mapping) against goflow2's decoder alone, on pmacct's
// datagrams.
func BenchmarkDecodeSFlow(b *testing.B) {
	dg := fixtures(b, "pmacct-sflow")[0]
	var want int
	var d Decoder
	d.Decode(exporter, dg, func(egress.FlowRecord) { want++ })
	b.Run("cordon", func(b *testing.B) {
		n := 0
		for b.Loop() {
			d.Decode(exporter, dg, func(egress.FlowRecord) { n++ })
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("goflow2", func(b *testing.B) {
		n := 0
		for b.Loop() {
			var p gfsflow.Packet
			if err := gfsflow.DecodeMessageVersion(bytes.NewBuffer(dg), &p); err != nil {
				b.Fatal(err)
			}
			n += len(p.Samples)
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	})
}

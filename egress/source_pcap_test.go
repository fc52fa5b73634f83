package egress

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestPcapReader reads what pcapgo writes, in microseconds and
// nanoseconds: records that fit the read buffer (returned in place) and one
// larger than it (read into a buffer of its own), then the end; and a file
// cut inside a record.
func TestPcapReader(t *testing.T) {
	for _, nanos := range []bool{false, true} {
		var b bytes.Buffer
		w := pcapgo.NewWriter(&b)
		if nanos {
			w = pcapgo.NewWriterNanos(&b)
		}
		if err := w.WriteFileHeader(maxSnaplen, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 1, 5, 8, 0, 0, 123456789, time.UTC)
		sizes := []int{60, 3 << 20, 1500, 0}
		for i, n := range sizes {
			data := bytes.Repeat([]byte{byte(i + 1)}, n)
			ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Second), CaptureLength: n, Length: n + 4}
			if err := w.WritePacket(ci, data); err != nil {
				t.Fatal(err)
			}
		}
		whole := b.Bytes()
		src, err := openStream("x.pcap", io.NopCloser(bytes.NewReader(whole)))
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range sizes {
			data, ci, err := src.ReadPacketData()
			if err != nil {
				t.Fatalf("nanos %v record %d: %v", nanos, i, err)
			}
			want := t0.Add(time.Duration(i) * time.Second)
			if !nanos {
				want = want.Truncate(time.Microsecond)
			}
			if len(data) != n || ci.Length != n+4 || !ci.Timestamp.Equal(want) || n > 0 && (data[0] != byte(i+1) || data[n-1] != byte(i+1)) {
				t.Errorf("nanos %v record %d: %d bytes, %+v", nanos, i, len(data), ci)
			}
		}
		if _, _, err := src.ReadPacketData(); err != io.EOF {
			t.Errorf("after the last record: %v", err)
		}
		if src.LinkType() != layers.LinkTypeEthernet {
			t.Errorf("link type %v", src.LinkType())
		}
		// Cut inside the big record: the error says where.
		cut := 24 + 16 + 60 + 16 + 1000
		src, _ = openStream("cut.pcap", io.NopCloser(bytes.NewReader(whole[:cut])))
		_, _, _ = src.ReadPacketData()
		_, _, err = src.ReadPacketData()
		var te *TruncatedError
		if !errors.As(err, &te) || te.Offset != int64(cut) || te.Packets != 1 {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
}

// FuzzReadCapture: any file is read to its end or an error, without a
// panic; seeded from the committed captures.
func FuzzReadCapture(f *testing.F) {
	for _, p := range []string{"testdata/small.pcap", "testdata/encap.pcapng"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := openStream("fuzz", io.NopCloser(bytes.NewReader(data)))
		if err != nil {
			return
		}
		defer src.Close()
		for range 10000 {
			if _, _, err := src.ReadPacketData(); err != nil {
				return
			}
		}
	})
}

package egress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
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
		// A pcap file is read from memory (a mapped file) the same way.
		var mem *fileSource
		if len(data) >= 4 && isPcapMagic(data[:4]) {
			mem = &fileSource{name: "fuzz", cr: &countingReader{}}
			if mem.readPcap(&memReader{b: data}) != nil {
				t.Fatal("memReader refused a header the stream reader read")
			}
		}
		for i := range 10000 {
			d1, c1, err := src.ReadPacketData()
			if mem != nil {
				d2, c2, err2 := mem.ReadPacketData()
				if !bytes.Equal(d1, d2) || !c1.Timestamp.Equal(c2.Timestamp) || c1.Length != c2.Length || fmt.Sprint(err) != fmt.Sprint(err2) {
					t.Fatalf("record %d: stream %d bytes %v, memory %d bytes %v", i, len(d1), err, len(d2), err2)
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// TestPcapMapped: an uncompressed pcap file is mapped into memory and
// reads the same records, and the same TruncatedError when cut, as the
// stream reader; a file that shrinks while it is read makes Run return an
// error instead of crashing on the fault.
func TestPcapMapped(t *testing.T) {
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(maxSnaplen, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		n := 60 + i*7%1400
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(int64(i), 0), CaptureLength: n, Length: n}
		if err := w.WritePacket(ci, bytes.Repeat([]byte{byte(i)}, n)); err != nil {
			t.Fatal(err)
		}
	}
	whole := b.Bytes()
	for _, cut := range []int{len(whole), len(whole) - 10} {
		path := t.TempDir() + "/x.pcap"
		if err := os.WriteFile(path, whole[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		mapped, err := OpenFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fs, ok := mapped.(*fileSource); !ok || fs.pr == nil {
			t.Fatalf("%T not mapped", mapped)
		}
		stream, _ := openStream(path, io.NopCloser(bytes.NewReader(whole[:cut])))
		for i := 0; ; i++ {
			d1, c1, err1 := mapped.ReadPacketData()
			d2, c2, err2 := stream.ReadPacketData()
			if !bytes.Equal(d1, d2) || !c1.Timestamp.Equal(c2.Timestamp) || c1.Length != c2.Length || fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Fatalf("cut %d record %d: mapped %d bytes %v %v, stream %d bytes %v %v", cut, i, len(d1), c1, err1, len(d2), c2, err2)
			}
			if err1 != nil {
				break
			}
		}
		if err := mapped.Close(); err != nil {
			t.Fatal(err)
		}
	}

	path := t.TempDir() + "/shrinks.pcap"
	if err := os.WriteFile(path, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	e, _ := newTestEngine(t, testPolicy)
	if err := e.Run(context.Background(), src); err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("Run on a file that shrank: %v", err)
	}
}

// TestMemReaderReleases: the bytes read are released chunk by chunk, in
// order, never the record being returned.
func TestMemReaderReleases(t *testing.T) {
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	_ = w.WriteFileHeader(maxSnaplen, layers.LinkTypeEthernet)
	for i := range 1000 {
		n := 100 + i%900
		_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(int64(i), 0), CaptureLength: n, Length: n}, bytes.Repeat([]byte{byte(i)}, n))
	}
	whole := b.Bytes()
	var released int
	m := &memReader{b: whole, chunk: 4096, release: func(c []byte) {
		if &c[0] != &whole[released] || len(c) != 4096 {
			t.Fatalf("released %d bytes at the wrong place (after %d)", len(c), released)
		}
		released += len(c)
	}}
	pr, err := newPcapReader(m)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, _, err := pr.nextMem()
		if err == io.EOF {
			break
		}
		start := len(whole) - len(m.b[m.off-len(data):])
		if err != nil || start < released || data[0] != byte(i) {
			t.Fatalf("record %d at %d (released up to %d): %v", i, start, released, err)
		}
	}
	if released < len(whole)-2*4096 {
		t.Fatalf("released %d of %d bytes", released, len(whole))
	}
}

// TestPcapBigEndian: a big-endian pcap file (as written on a big-endian
// host) reads the same records from memory (nextMem) as from a stream.
func TestPcapBigEndian(t *testing.T) {
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for i := range 50 {
		n := 40 + i*37%1400
		_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(int64(1000+i), int64(i)*1000), CaptureLength: n, Length: n + i}, bytes.Repeat([]byte{byte(i)}, n))
	}
	le := b.Bytes()
	be := slices.Clone(le)
	swap := func(off, words int) {
		for j := range words {
			o := off + 4*j
			binary.BigEndian.PutUint32(be[o:], binary.LittleEndian.Uint32(le[o:]))
		}
	}
	binary.BigEndian.PutUint32(be, 0xa1b2c3d4)
	binary.BigEndian.PutUint16(be[4:], 2)
	binary.BigEndian.PutUint16(be[6:], 4)
	swap(8, 4)
	for off := 24; off < len(le); off += 16 + int(binary.LittleEndian.Uint32(le[off+8:])) {
		swap(off, 4)
	}
	stream, err := openStream("be.pcap", io.NopCloser(bytes.NewReader(be)))
	if err != nil {
		t.Fatal(err)
	}
	mem := &fileSource{name: "be.pcap", cr: &countingReader{}}
	if err := mem.readPcap(&memReader{b: be}); err != nil || mem.pr == nil {
		t.Fatalf("memory reader: %v", err)
	}
	for i := 0; ; i++ {
		d1, c1, err1 := stream.ReadPacketData()
		d2, c2, err2 := mem.ReadPacketData()
		if !bytes.Equal(d1, d2) || !c1.Timestamp.Equal(c2.Timestamp) || c1.Length != c2.Length || err1 != err2 {
			t.Fatalf("record %d: stream %d bytes %v %v, memory %d bytes %v %v", i, len(d1), c1.Timestamp, err1, len(d2), c2.Timestamp, err2)
		}
		if err1 == io.EOF {
			if i != 50 {
				t.Fatalf("%d records, want 50", i)
			}
			return
		}
		if want := time.Unix(int64(1000+i), int64(i)*1000); err1 != nil || !c1.Timestamp.Equal(want) || len(d1) != 40+i*37%1400 {
			t.Fatalf("record %d: %v at %v, %d bytes", i, err1, c1.Timestamp, len(d1))
		}
	}
}

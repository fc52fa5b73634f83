package uimage

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func run(data []byte) (*firmware.Chunk, *firmwaretest.MemSink, error) {
	r := bytes.NewReader(data)
	c, err := Format.Identify(r, 0, int64(len(data)))
	if err != nil {
		return nil, nil, err
	}
	s := &firmwaretest.MemSink{}
	err = Format.Extract(context.Background(), io.NewSectionReader(r, c.Offset, c.Size), c, s)
	return c, s, err
}

func TestFixtures(t *testing.T) {
	tests := []struct {
		file  string
		typ   string
		comp  string
		names []string
	}{
		{"uimage-kernel.img", "kernel", "none", []string{"kernel"}},
		{"uimage-gzip.img", "kernel", "gzip", []string{"kernel.gz"}},
		{"uimage-ramdisk.img", "ramdisk", "none", []string{"ramdisk"}},
		{"uimage-multi.img", "multi", "none", []string{"image-0", "image-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			c, s, err := run(data)
			if err != nil {
				t.Fatal(err)
			}
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || len(c.Warnings) != 0 {
				t.Errorf("chunk size %d conf %s warnings %v; want %d high none", c.Size, c.Confidence, c.Warnings, len(data))
			}
			if c.Meta["type"] != tt.typ || c.Meta["comp"] != tt.comp || c.Meta["arch"] != "arm" || c.Meta["os"] != "linux" {
				t.Errorf("meta %v", c.Meta)
			}
			if len(s.Warnings) != 0 {
				t.Errorf("warnings %v", s.Warnings)
			}
			var got []string
			for _, e := range s.Entries {
				got = append(got, e.Header.Name)
			}
			if len(got) != len(tt.names) {
				t.Fatalf("entries %v, want %v", got, tt.names)
			}
			for i := range got {
				if got[i] != tt.names[i] {
					t.Errorf("entry %d = %q, want %q", i, got[i], tt.names[i])
				}
			}
		})
	}
}

func TestMultiPayloads(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "uimage-multi.img")
	_, s, err := run(data)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := s.File("image-0")
	rd, _ := s.File("image-1")
	if !bytes.HasPrefix(k, []byte("ARM Linux kernel stand-in")) || len(k) != 64*43 {
		t.Errorf("kernel payload: %d bytes %.20q", len(k), k)
	}
	if !bytes.HasPrefix(rd, []byte("070701")) {
		t.Errorf("ramdisk payload does not start with a cpio header: %.8q", rd)
	}
}

func TestCorrupt(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "uimage-kernel.img")
	// A flipped data byte: identified, extracted, with a data CRC warning.
	d := bytes.Clone(data)
	d[100] ^= 0xff
	_, s, err := run(d)
	if err != nil || len(s.Warnings) != 1 {
		t.Errorf("data corruption: err %v warnings %v", err, s.Warnings)
	}
	// A broken header CRC with sane fields: low confidence and a warning.
	d = bytes.Clone(data)
	d[4] ^= 0xff
	c, _, err := run(d)
	if err != nil || c.Confidence != firmware.ConfidenceLow || len(c.Warnings) != 1 {
		t.Errorf("header CRC: %v %+v", err, c)
	}
	// Broken CRC and a nonsense type: not a uImage.
	d[30] = 200
	if _, _, err := run(d); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("garbage header: err %v, want ErrNotFormat", err)
	}
	// Truncated: size clamped, warned.
	c, _, err = run(data[:1000])
	if err != nil || c.Size != 1000 || len(c.Warnings) != 1 {
		t.Errorf("truncated: %v %+v", err, c)
	}
	// Too short for a header.
	if _, _, err := run(data[:40]); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("short: %v", err)
	}
}

func TestMultiTableHostile(t *testing.T) {
	// A multi image whose size table never ends within the limit.
	hdr := make([]byte, HeaderSize)
	copy(hdr, []byte{0x27, 0x05, 0x19, 0x56})
	hdr[28], hdr[29], hdr[30] = 5, 2, TypeMulti
	body := bytes.Repeat([]byte{0, 0, 0, 1}, 200)
	be := func(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }
	be(hdr[12:], uint32(len(body)))
	be(hdr[24:], crc32.ChecksumIEEE(body))
	be(hdr[4:], crc32.ChecksumIEEE(hdr))
	_, _, err := run(append(hdr, body...))
	var fe *firmware.FormatError
	if !errors.As(err, &fe) {
		t.Errorf("endless size table: err %v, want a FormatError", err)
	}
}

func FuzzUImage(f *testing.F) { firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "*.img")...) }

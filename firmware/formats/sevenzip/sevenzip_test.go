package sevenzip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestArchives(t *testing.T) {
	for _, tt := range []struct {
		file  string
		files int
	}{
		{"7z-lzma2.7z", 9},
		{"7z-lzma.7z", 7},
		{"7z-ppmd.7z", 6},
		{"7z-bzip2.7z", 4},
		{"7z-plainheader.7z", 4},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			img := append(append(bytes.Repeat([]byte{0xee}, 99), data...), bytes.Repeat([]byte{0xee}, 99)...)
			res := firmwaretest.MustRun(t, Format, img, 99)
			if res.Chunk.Size != int64(len(data)) || res.Chunk.Confidence != firmware.ConfidenceHigh {
				t.Errorf("chunk %+v, want size %d", res.Chunk, len(data))
			}
			s := res.Sink
			if len(s.Entries) != tt.files || len(s.Warnings) != 0 {
				t.Errorf("entries %v, warnings %v", s.Names(), s.Warnings)
			}
			if b, _ := s.File("etc/passwd"); string(b) != "root:x:0:0:root:/root:/bin/sh\n" {
				t.Errorf("passwd %q", b)
			}
		})
	}
	res, _ := firmwaretest.Run(Format, firmwaretest.ReadFixture(t, "7z-lzma2.7z"), 0)
	if e, _ := res.Sink.Entry("bin/sh"); e.Header.Type != firmware.TypeSymlink || e.Header.Linkname != "busybox" {
		t.Errorf("symlink %+v", e.Header)
	}
	if e, _ := res.Sink.Entry("bin/busybox"); e.Header.Mode != 0o755 {
		t.Errorf("busybox mode %v", e.Header.Mode)
	}
	if e, _ := res.Sink.Entry("etc/init.d/"); e.Header.Type != firmware.TypeDir || e.Header.Mode&fs.ModePerm == 0 {
		t.Errorf("dir %+v", e.Header)
	}
}

func TestEncryptedHeader(t *testing.T) {
	res := firmwaretest.MustRun(t, Format, firmwaretest.ReadFixture(t, "7z-encrypted.7z"), 0)
	if len(res.Sink.Entries) != 0 || len(res.Sink.Warnings) != 1 {
		t.Errorf("entries %v warnings %v", res.Sink.Names(), res.Sink.Warnings)
	}
}

// TestHugeDictionary patches the LZMA2 coder of an archive with an
// uncompressed header to ask for a 4 GiB dictionary: refused, not allocated.
func TestHugeDictionary(t *testing.T) {
	data := bytes.Clone(firmwaretest.ReadFixture(t, "7z-plainheader.7z"))
	i := bytes.Index(data[32:], []byte{0x21, 0x21, 0x01})
	if i < 0 {
		t.Fatal("LZMA2 coder not found in the plain header")
	}
	data[32+i+3] = 40
	le := binary.LittleEndian
	nextOff, nextSize := le.Uint64(data[12:]), le.Uint64(data[20:])
	le.PutUint32(data[28:], crc32.ChecksumIEEE(data[32+nextOff:32+nextOff+nextSize]))
	le.PutUint32(data[8:], crc32.ChecksumIEEE(data[12:32]))
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.Chunk == nil {
		t.Fatal(err, res.IdentifyErr)
	}
	if len(res.Sink.Warnings) == 0 || !strings.Contains(strings.Join(res.Sink.Warnings, " "), "memory") {
		t.Errorf("warnings %v, err %v", res.Sink.Warnings, res.ExtractErr)
	}
}

func TestDamage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "7z-lzma2.7z")
	d := bytes.Clone(data)
	d[10] ^= 1
	if _, err := Format.Identify(bytes.NewReader(d), 0, int64(len(d))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("bad start CRC: %v", err)
	}
	res, err := firmwaretest.Run(Format, data[:len(data)-20], 0)
	if err != nil || res.Chunk == nil || len(res.Chunk.Warnings) != 1 {
		t.Errorf("truncated: %v %+v", err, res.Chunk)
	}
}

func FuzzSevenZip(f *testing.F) { firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "*.7z")...) }

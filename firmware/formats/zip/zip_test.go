package zip

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestFixtures(t *testing.T) {
	for _, name := range []string{"zip-deflate.zip", "zip-bzip2.zip", "zip-zip64.zip"} {
		t.Run(name, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, name)
			// Two archives back to back, after a prefix: each is carved on its own.
			img := append(append(append(bytes.Repeat([]byte{0}, 33), data...), data...), "tail"...)
			for _, off := range []int64{33, 33 + int64(len(data))} {
				res, err := firmwaretest.Run(Format, img, off)
				if err != nil || res.IdentifyErr != nil || res.ExtractErr != nil {
					t.Fatalf("off %d: %v %v %v", off, err, res.IdentifyErr, res.ExtractErr)
				}
				if res.Chunk.Size != int64(len(data)) || res.Chunk.Confidence != firmware.ConfidenceHigh {
					t.Errorf("chunk %+v, want size %d", res.Chunk, len(data))
				}
				s := res.Sink
				if len(s.Warnings) != 0 || len(s.Entries) != 11 {
					t.Errorf("warnings %v, names %v", s.Warnings, s.Names())
				}
				if e, _ := s.Entry("bin/busybox"); e.Header.Mode != 0o755|fs.ModeSetuid || string(e.Data) != "busybox stand-in\n" {
					t.Errorf("busybox: %v %q", e.Header.Mode, e.Data)
				}
				if e, _ := s.Entry("bin/sh"); e.Header.Type != firmware.TypeSymlink || e.Header.Linkname != "busybox" {
					t.Errorf("bin/sh: %+v", e.Header)
				}
				if e, _ := s.Entry("etc/init.d/"); e.Header.Type != firmware.TypeDir {
					t.Errorf("etc/init.d/: %+v", e.Header)
				}
				if b, _ := s.File("etc/passwd"); string(b) != "root:x:0:0:root:/root:/bin/sh\n" {
					t.Errorf("passwd %q", b)
				}
			}
		})
	}
}

func TestTraversalNamesReachTheSink(t *testing.T) {
	res, err := firmwaretest.Run(Format, firmwaretest.ReadFixture(t, "zip-traversal.zip"), 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.IdentifyErr, res.ExtractErr)
	}
	s := res.Sink
	if _, ok := s.File("../../evil.sh"); !ok {
		t.Errorf("../../evil.sh not handed over; %v", s.Names())
	}
	if _, ok := s.File("/etc/cron.d/evil"); !ok {
		t.Errorf("absolute name not handed over; %v", s.Names())
	}
	if e, _ := s.Entry("shadow"); e.Header.Type != firmware.TypeSymlink || e.Header.Linkname != "/etc/shadow" {
		t.Errorf("symlink %+v", e.Header)
	}
}

func TestBrokenEntries(t *testing.T) {
	data := bytes.Clone(firmwaretest.ReadFixture(t, "zip-deflate.zip"))
	// busybox is stored: flip a content byte to break its CRC.
	i := bytes.Index(data, []byte("busybox stand-in"))
	data[i] = 'B'
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	if len(res.Sink.Warnings) != 1 {
		t.Errorf("warnings %v, want one checksum warning", res.Sink.Warnings)
	}
	if _, ok := res.Sink.File("etc/passwd"); !ok {
		t.Errorf("extraction stopped at the broken entry: %v", res.Sink.Names())
	}
}

// TestNoCentralDirectory cuts an archive before its central directory: the
// entries are recovered from the local headers.
func TestNoCentralDirectory(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "zip-deflate.zip")
	cd := bytes.Index(data, []byte("PK\x01\x02"))
	cut := data[:cd+10]
	res := firmwaretest.MustRun(t, Format, cut, 0)
	c := res.Chunk
	if c.Size != int64(cd) || c.Confidence != firmware.ConfidenceLow || len(c.Warnings) != 1 || c.Meta["entries"] != 11 {
		t.Errorf("chunk %+v, want %d bytes", c, cd)
	}
	if b, _ := res.Sink.File("etc/passwd"); string(b) != "root:x:0:0:root:/root:/bin/sh\n" {
		t.Errorf("deflated entry from its local header: %q", b)
	}
	if e, _ := res.Sink.Entry("etc/init.d/"); e.Header.Type != firmware.TypeDir {
		t.Errorf("directory %+v", e.Header)
	}
	// Cut inside the first entry: nothing complete, not a zip.
	if _, err := Format.Identify(bytes.NewReader(data[:33]), 0, 33); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("cut in the first entry: %v", err)
	}
}

// TestStreamed covers an archive written to a pipe (sizes after the data),
// whose end is found by the scan, not the header walk.
func TestStreamed(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "zip-stream.zip")
	img := append(bytes.Clone(data), bytes.Repeat([]byte("PK\x05\x06"), 10)...)
	res := firmwaretest.MustRun(t, Format, img, 0)
	if res.Chunk.Size != int64(len(data)) || res.Chunk.Confidence != firmware.ConfidenceHigh {
		t.Errorf("chunk %+v, want %d bytes", res.Chunk, len(data))
	}
	if b, _ := res.Sink.File("-"); len(b) != 1250 || !bytes.HasPrefix(b, []byte("streamed camera log line")) {
		t.Errorf("streamed entry: %d bytes", len(b))
	}
}

func TestLimit(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "zip-deflate.zip")
	r := bytes.NewReader(data)
	zr, err := Open(r, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	s := &firmwaretest.MemSink{MaxBytes: 20}
	err = ExtractFiles(t.Context(), zr, s, "zip")
	if !errors.Is(err, firmware.ErrLimit) {
		t.Errorf("err %v, want ErrLimit", err)
	}
}

func FuzzZip(f *testing.F) { firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "*.zip")...) }

package tar

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestFormats(t *testing.T) {
	for _, tt := range []struct {
		file, format string
		entries      int
	}{
		{"tar-ustar.tar", "ustar", 17},
		{"tar-gnu.tar", "gnu", 22},
		{"tar-pax.tar", "pax", 22},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			img := append(append(bytes.Repeat([]byte{0xff}, 1000), data...), bytes.Repeat([]byte{0xaa}, 300)...)
			res := firmwaretest.MustRun(t, Format, img, 1000)
			c, s := res.Chunk, res.Sink
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || len(c.Warnings) != 0 {
				t.Errorf("chunk size %d (want %d) %s %v", c.Size, len(data), c.Confidence, c.Warnings)
			}
			if fl := c.Meta["formats"].([]string); len(fl) == 0 || fl[len(fl)-1] != tt.format && fl[0] != tt.format {
				t.Errorf("formats %v, want %s", fl, tt.format)
			}
			if c.Meta["entries"] != tt.entries || len(s.Entries) != tt.entries || len(s.Warnings) != 0 {
				t.Errorf("entries %v/%d, warnings %v: %v", c.Meta["entries"], len(s.Entries), s.Warnings, s.Names())
			}
			check := func(name string, typ firmware.EntryType, mode fs.FileMode, link string, maj, min uint32) {
				t.Helper()
				e, ok := s.Entry(name)
				if !ok {
					t.Errorf("%s missing", name)
					return
				}
				h := e.Header
				if h.Type != typ || h.Mode != mode || h.Linkname != link || h.Devmajor != maj || h.Devminor != min {
					t.Errorf("%s: %+v", name, h)
				}
			}
			check("./bin/busybox", firmware.TypeFile, 0o755|fs.ModeSetuid, "", 0, 0)
			check("./bin/sh", firmware.TypeSymlink, 0o777, "busybox", 0, 0)
			check("./usr/sbin/ipcam-watchdog", firmware.TypeHardlink, 0o755, "./usr/sbin/ipcam", 0, 0)
			check("./dev/console", firmware.TypeCharDevice, 0o644, "", 5, 1)
			check("./dev/mtdblock2", firmware.TypeBlockDevice, 0o644, "", 31, 2)
			check("./dev/initctl", firmware.TypeFIFO, 0o644, "", 0, 0)
			if b, _ := s.File("./etc/passwd"); string(b) != "root:x:0:0:root:/root:/bin/sh\n" {
				t.Errorf("passwd %q", b)
			}
			if tt.format != "ustar" {
				sp, _ := s.File("./var/sparse.img")
				if len(sp) != 65536 || string(sp[:4]) != "head" || string(sp[65532:]) != "tail" {
					t.Errorf("sparse file: %d bytes", len(sp))
				}
				long := "./usr/share/a-rather-long-directory-name-for-a-camera-web-interface/with-nested-folders-that-exceed-one-hundred-bytes/index.html"
				if b, _ := s.File(long); string(b) != "long\n" {
					t.Errorf("long name: %q", b)
				}
			}
		})
	}
}

func TestTraversalNamesReachTheSink(t *testing.T) {
	res, err := firmwaretest.Run(Format, firmwaretest.ReadFixture(t, "tar-traversal.tar"), 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.IdentifyErr, res.ExtractErr)
	}
	s := res.Sink
	if b, ok := s.File("../evil"); !ok || string(b) != "escaped\n" {
		t.Errorf("../evil: %v", s.Names())
	}
	if e, _ := s.Entry("link"); e.Header.Linkname != "/etc/shadow" {
		t.Errorf("link: %+v", e.Header)
	}
	if e, _ := s.Entry("/dev/null"); e.Header.Type != firmware.TypeCharDevice || e.Header.Devmajor != 1 || e.Header.Devminor != 3 {
		t.Errorf("/dev/null: %+v", e.Header)
	}
}

func TestDamage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "tar-ustar.tar")
	// Cut in the middle of the archive: identified up to the cut, with a warning.
	cut := data[:3000]
	res, err := firmwaretest.Run(Format, cut, 0)
	if err != nil || res.Chunk == nil {
		t.Fatal(err, res.IdentifyErr)
	}
	if len(res.Chunk.Warnings) != 1 || res.Chunk.Size != 3000 {
		t.Errorf("truncated chunk %+v", res.Chunk)
	}
	// A broken first header checksum: not a tar.
	d := bytes.Clone(data)
	d[0] ^= 1
	if _, err := Format.Identify(bytes.NewReader(d), 0, int64(len(d))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("bad checksum: %v", err)
	}
}

// TestSparseBomb extracts a 1 TiB sparse file stored in 10 KiB: the Sink's
// byte limit stops it, quickly.
func TestSparseBomb(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "bomb-sparse.tar")
	c, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	s := &firmwaretest.MemSink{MaxBytes: 8 << 20}
	start := time.Now()
	err = Format.Extract(t.Context(), io.NewSectionReader(bytes.NewReader(data), 0, c.Size), c, s)
	if !errors.Is(err, firmware.ErrLimit) {
		t.Errorf("err %v, want ErrLimit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if e, _ := s.Entry("huge.img"); e.Header.Size != 1<<40 {
		t.Errorf("declared size %d", e.Header.Size)
	}
}

func FuzzTar(f *testing.F) { firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 8192, "*.tar")...) }

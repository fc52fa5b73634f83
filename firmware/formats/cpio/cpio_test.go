package cpio

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestVariants(t *testing.T) {
	for _, v := range []string{"newc", "crc", "odc", "bin"} {
		t.Run(v, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, "cpio-"+v+".cpio")
			// Embed the archive in an image to check the carved extent.
			img := append(append(bytes.Repeat([]byte{0xff}, 100), data...), bytes.Repeat([]byte{0xee}, 77)...)
			res := firmwaretest.MustRun(t, Format, img, 100)
			c, s := res.Chunk, res.Sink
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh {
				t.Errorf("chunk %d bytes %s, want %d high; warnings %v", c.Size, c.Confidence, len(data), c.Warnings)
			}
			if len(s.Warnings) != 0 {
				t.Errorf("warnings: %v", s.Warnings)
			}
			check := func(name string, typ firmware.EntryType, mode fs.FileMode, link string, maj, min uint32) {
				t.Helper()
				e, ok := s.Entry(name)
				if !ok {
					t.Errorf("%s missing; have %v", name, s.Names())
					return
				}
				h := e.Header
				if h.Type != typ || h.Mode != mode || h.Linkname != link || h.Devmajor != maj || h.Devminor != min {
					t.Errorf("%s: type %d mode %v link %q dev %d,%d; want %d %v %q %d,%d", name, h.Type, h.Mode, h.Linkname, h.Devmajor, h.Devminor, typ, mode, link, maj, min)
				}
			}
			check("etc", firmware.TypeDir, 0o755, "", 0, 0)
			check("bin/busybox", firmware.TypeFile, 0o755|fs.ModeSetuid, "", 0, 0)
			check("bin/sh", firmware.TypeSymlink, 0o777, "busybox", 0, 0)
			check("dev/console", firmware.TypeCharDevice, 0o644, "", 5, 1)
			check("dev/mtdblock0", firmware.TypeBlockDevice, 0o644, "", 31, 0)
			check("dev/initctl", firmware.TypeFIFO, 0o644, "", 0, 0)
			if b, _ := s.File("etc/passwd"); !bytes.HasPrefix(b, []byte("root:x:0:0:")) {
				t.Errorf("etc/passwd = %q", b)
			}
			// The two names of ipcam: one file with the content, one link to it (or two copies).
			a, _ := s.Entry("usr/sbin/ipcam")
			b, _ := s.Entry("usr/sbin/ipcam-watchdog")
			var content []byte
			switch {
			case a.Header.Type == firmware.TypeFile && b.Header.Type == firmware.TypeHardlink:
				content = a.Data
				if b.Header.Linkname != "usr/sbin/ipcam" {
					t.Errorf("hard link target %q", b.Header.Linkname)
				}
			case b.Header.Type == firmware.TypeFile && a.Header.Type == firmware.TypeHardlink:
				content = b.Data
				if a.Header.Linkname != "usr/sbin/ipcam-watchdog" {
					t.Errorf("hard link target %q", a.Header.Linkname)
				}
			case a.Header.Type == firmware.TypeFile && b.Header.Type == firmware.TypeFile:
				content = a.Data
				if !bytes.Equal(a.Data, b.Data) {
					t.Errorf("hard link copies differ")
				}
			default:
				t.Fatalf("hard links: %+v %+v", a.Header, b.Header)
			}
			if string(content) != "ipcam daemon stand-in\n" {
				t.Errorf("ipcam content %q", content)
			}
			if c.Meta["entries"] != 16 {
				t.Errorf("entries %v", c.Meta["entries"])
			}
		})
	}
}

func TestTraversalNamesReachTheSink(t *testing.T) {
	res, err := firmwaretest.Run(Format, firmwaretest.ReadFixture(t, "cpio-traversal.cpio"), 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	s := res.Sink
	if b, ok := s.File("../evil"); !ok || string(b) != "escaped\n" {
		t.Errorf("../evil not handed over verbatim; names %v", s.Names())
	}
	if e, ok := s.Entry("link"); !ok || e.Header.Linkname != "/etc/shadow" {
		t.Errorf("escaping symlink: %+v", e.Header)
	}
	abs := 0
	for _, n := range s.Names() {
		if filepath.IsAbs(n) {
			abs++
		}
	}
	if abs != 1 {
		t.Errorf("absolute names: %d in %v", abs, s.Names())
	}
}

func TestCRCMismatch(t *testing.T) {
	data := bytes.Clone(firmwaretest.ReadFixture(t, "cpio-crc.cpio"))
	i := bytes.Index(data, []byte("root:x:0:0"))
	data[i] = 'R'
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	if len(res.Sink.Warnings) != 1 {
		t.Errorf("warnings %v, want one checksum warning", res.Sink.Warnings)
	}
}

func TestTruncatedAndGarbage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "cpio-newc.cpio")
	i := bytes.Index(data, []byte("root:x:0:0"))
	res, err := firmwaretest.Run(Format, data[:i+5], 0)
	if err != nil || res.Chunk == nil {
		t.Fatalf("truncated: %v %v", err, res.IdentifyErr)
	}
	if len(res.Chunk.Warnings) == 0 || res.Chunk.Confidence == firmware.ConfidenceHigh {
		t.Errorf("truncated chunk: %+v", res.Chunk)
	}
	if b, ok := res.Sink.File("etc/passwd"); !ok || string(b) != "root:" {
		t.Errorf("partial file %q %v", b, ok)
	}
	for _, g := range [][]byte{[]byte("070701zzzz"), {0xc7, 0x71, 0, 0}, []byte("07070")} {
		_, err := Format.Identify(bytes.NewReader(g), 0, int64(len(g)))
		if !errors.Is(err, firmware.ErrNotFormat) {
			t.Errorf("%q: %v", g, err)
		}
	}
}

func FuzzCPIO(f *testing.F) { firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "*.cpio")...) }

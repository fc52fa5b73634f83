package romfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

// headers lists the fixture's entries with their header offsets.
func headers(t *testing.T, img []byte) map[string]*header {
	t.Helper()
	rd := &reader{r: bytes.NewReader(img), size: int64(len(img)), warn: func(s string) { t.Fatal(s) }, seen: map[int64]bool{}}
	var es []entry
	if err := rd.list(context.Background(), "", 0x20, 0, &es); err != nil {
		t.Fatal(err)
	}
	m := map[string]*header{}
	for _, e := range es {
		m[e.path] = e.h
	}
	return m
}

func TestFixture(t *testing.T) {
	img := firmwaretest.ReadFixture(t, "romfs.img")
	dump := slices.Concat(bytes.Repeat([]byte{0xFF}, 1000), img, []byte("trailing"))
	res := firmwaretest.MustRun(t, Format, dump, 1000)
	c := res.Chunk
	if c.Size != 48720 || c.Confidence != firmware.ConfidenceHigh || c.Desc != `romfs filesystem, 48720 bytes, volume "camroot"` {
		t.Errorf("chunk = %+v", c)
	}
	if len(res.Sink.Warnings) > 0 {
		t.Errorf("warnings %q", res.Sink.Warnings)
	}
	for name, want := range map[string]string{
		"etc/passwd":    "type=3 mode=-rw-r--r-- uid=0 gid=0 -> etc/passwd-",
		"bin/sh":        "type=2 mode=-rwxrwxrwx uid=0 gid=0 -> busybox",
		"dev/console":   "type=4 mode=-rw------- uid=0 gid=0 dev=5,1",
		"usr/bin/ipcam": "type=0 mode=-rwxr-xr-x uid=0 gid=0 size=9000 sha256=bc65060cad2d2c87d58228dbd13daa32e2fad31f5b19415f389ff65bff78a9e0",
		"var/run/ctl":   "type=6 mode=-rw-r--r-- uid=0 gid=0",
	} {
		if !slices.Contains(res.Sink.Listing(), name+" "+want) {
			t.Errorf("%s: want %q in\n%s", name, want, strings.Join(res.Sink.Listing(), "\n"))
		}
	}
}

func TestRejects(t *testing.T) {
	img := firmwaretest.ReadFixture(t, "romfs.img")
	mut := func(fn func(b []byte)) []byte {
		b := slices.Clone(img)
		fn(b)
		return b
	}
	for name, data := range map[string][]byte{
		"magic only":   []byte(magic),
		"checksum":     mut(func(b []byte) { b[20] ^= 1 }),
		"size":         mut(func(b []byte) { binary.BigEndian.PutUint32(b[8:], 17) }),
		"short":        img[:300],
		"root not dir": mut(func(b []byte) { b[0x23] = b[0x23]&^7 | 2; fixSum(b) }),
		"random":       bytes.Repeat([]byte("-rom1fs-\x00\x00\x10\x00"), 100),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data)))
			if !errors.Is(err, firmware.ErrNotFormat) && !errors.Is(err, firmware.ErrTruncated) {
				t.Fatalf("Identify = %v", err)
			}
		})
	}
}

// fixSum makes the superblock checksum hold again after an edit.
func fixSum(b []byte) {
	binary.BigEndian.PutUint32(b[12:], 0)
	binary.BigEndian.PutUint32(b[12:], -sum32(b[:512]))
}

func TestHostile(t *testing.T) {
	img := firmwaretest.ReadFixture(t, "romfs.img")
	hs := headers(t, img)
	setNext := func(b []byte, h *header, next int64) {
		v := binary.BigEndian.Uint32(b[h.off:])
		binary.BigEndian.PutUint32(b[h.off:], uint32(next)|v&15)
	}
	for _, tc := range []struct {
		name, warn, keep string
		edit             func(b []byte)
	}{
		{"next loop to itself", "pointer loop", "etc/passwd-", func(b []byte) { setNext(b, hs["bin/busybox"], hs["bin/busybox"].off) }},
		{"next loop backwards", "pointer loop", "bin/busybox", func(b []byte) { setNext(b, hs["etc/passwd-"], hs["etc/group"].off) }},
		{"dir to ancestor", "pointer loop", "bin/busybox", func(b []byte) {
			binary.BigEndian.PutUint32(b[hs["usr/share"].off+4:], hs["usr"].spec)
		}},
		{"next outside", "header outside", "etc/passwd-", func(b []byte) { setNext(b, hs["usr/bin/ipcam"], 0x7ffffff0) }},
		{"data past end", "run past", "etc/passwd-", func(b []byte) { binary.BigEndian.PutUint32(b[hs["bin/busybox"].off+8:], 1<<30) }},
		{"hard link to dir", "not a listed file", "etc/passwd-", func(b []byte) { binary.BigEndian.PutUint32(b[hs["etc/passwd"].off+4:], uint32(hs["usr"].off)) }},
		{"header checksum", "fail their checksum", "etc/passwd-", func(b []byte) { b[hs["etc/group"].off+16] = 'G' }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := slices.Clone(img)
			tc.edit(b)
			fixSum(b)
			res, err := firmwaretest.Run(Format, b, 0)
			if err != nil || res.Chunk == nil || res.ExtractErr != nil {
				t.Fatalf("run: %v; identify %v; extract %v", err, res.IdentifyErr, res.ExtractErr)
			}
			if !slices.ContainsFunc(res.Sink.Warnings, func(s string) bool { return strings.Contains(s, tc.warn) }) {
				t.Errorf("warnings %q lack %q", res.Sink.Warnings, tc.warn)
			}
			if _, ok := res.Sink.File(tc.keep); !ok {
				t.Errorf("%s not extracted: %q", tc.keep, res.Sink.Names())
			}
		})
	}
}

func FuzzRomfs(f *testing.F) {
	firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "romfs.img")...)
}

package flash

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		file string
		f    *firmware.Format
		desc string
		meta map[string]any
	}{
		{"jffs2-le.img", JFFS2, "JFFS2 filesystem, little-endian", map[string]any{"endian": "little-endian", "inode_nodes": 42}},
		{"jffs2-be.img", JFFS2, "JFFS2 filesystem, big-endian", map[string]any{"endian": "big-endian", "dirent_nodes": 32}},
		{"cramfs.img", Cramfs, "cramfs filesystem, little-endian", map[string]any{"name": "camroot", "files": uint32(32)}},
		{"ubi.img", UBI, "UBI image, 16 erase blocks of 16384 bytes, volumes rootfs", map[string]any{"peb_size": int64(16384), "image_seq": uint32(12345)}},
		{"ubifs.img", UBIFS, "UBIFS image, format 4, 14 LEBs of 16256 bytes, min I/O 8, lzo compression", map[string]any{"leb_count": uint32(14)}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tc.file)
			// Embed the image between junk and erased flash, as in a dump.
			dump := slices.Concat(bytes.Repeat([]byte{0xA5}, 4096), data, bytes.Repeat([]byte{0xFF}, 8192))
			res, err := firmwaretest.Run(tc.f, dump, 4096)
			if err != nil {
				t.Fatal(err)
			}
			c := res.Chunk
			if c == nil {
				t.Fatalf("not identified: %v", res.IdentifyErr)
			}
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || len(c.Warnings) > 0 ||
				len(c.Desc) < len(tc.desc) || c.Desc[:len(tc.desc)] != tc.desc {
				t.Errorf("chunk = %+v, want size %d and %q", c, len(data), tc.desc)
			}
			for k, v := range tc.meta {
				if c.Meta[k] != v {
					t.Errorf("meta %s = %#v, want %#v", k, c.Meta[k], v)
				}
			}
		})
	}
}

// TestJFFS2ErasedGaps: mkfs.jffs2 output followed by erased space and more
// nodes (a later erase block) is one chunk; a truncated last node ends it.
func TestJFFS2ErasedGaps(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "jffs2-le.img")
	img := slices.Concat(data, bytes.Repeat([]byte{0xFF}, 0x10000-len(data)), data, bytes.Repeat([]byte{0xFF}, 100))
	c, err := JFFS2.Identify(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 0x10000+int64(len(data)) || c.Meta["nodes"] != 150 {
		t.Fatalf("chunk = %+v", c)
	}
	cut := img[:0x10000+len(data)-10]
	c, err = JFFS2.Identify(bytes.NewReader(cut), 0, int64(len(cut)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size >= int64(len(cut)) || c.Size <= 0x10000 || len(c.Warnings) != 1 {
		t.Fatalf("truncated: chunk = %+v", c)
	}
}

func TestCramfsBadCRC(t *testing.T) {
	data := slices.Clone(firmwaretest.ReadFixture(t, "cramfs.img"))
	data[len(data)-100] ^= 1
	c, err := Cramfs.Identify(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Confidence != firmware.ConfidenceMedium || len(c.Warnings) != 1 {
		t.Fatalf("chunk = %+v", c)
	}
}

func TestRejects(t *testing.T) {
	mut := func(name string, fn func(b []byte)) []byte {
		b := slices.Clone(firmwaretest.ReadFixture(t, name))
		fn(b)
		return b
	}
	for _, tc := range []struct {
		name string
		f    *firmware.Format
		data []byte
	}{
		{"jffs2 empty", JFFS2, nil},
		{"jffs2 magic only", JFFS2, []byte{0x85, 0x19, 0x01, 0xe0}},
		{"jffs2 header crc", JFFS2, mut("jffs2-le.img", func(b []byte) { b[8] ^= 1 })},
		{"jffs2 node type", JFFS2, mut("jffs2-le.img", func(b []byte) { b[2] = 0x77 })},
		{"jffs2 wrong endian", JFFS2, mut("jffs2-le.img", func(b []byte) { b[0], b[1] = 0x19, 0x85 })},
		{"jffs2 truncated first", JFFS2, firmwaretest.ReadFixture(t, "jffs2-le.img")[:11]},
		{"cramfs signature", Cramfs, mut("cramfs.img", func(b []byte) { b[20] = 'x' })},
		{"cramfs size", Cramfs, mut("cramfs.img", func(b []byte) { binary.LittleEndian.PutUint32(b[4:], 1<<30) })},
		{"cramfs truncated", Cramfs, firmwaretest.ReadFixture(t, "cramfs.img")[:8000]},
		{"ubi crc", UBI, mut("ubi.img", func(b []byte) { b[9] ^= 1 })},
		{"ubi version", UBI, mut("ubi.img", func(b []byte) { b[4] = 2 })},
		{"ubi single block", UBI, firmwaretest.ReadFixture(t, "ubi.img")[:16384]},
		{"random", UBI, bytes.Repeat([]byte("UBI#\x01"), 1000)},
		{"ubifs crc", UBIFS, mut("ubifs.img", func(b []byte) { b[40] ^= 1 })},
		{"ubifs node type", UBIFS, mut("ubifs.img", func(b []byte) { b[20] = 1 })},
		{"ubifs geometry", UBIFS, mut("ubifs.img", func(b []byte) { binary.LittleEndian.PutUint32(b[24+16:], 0) })},
		{"ubifs short", UBIFS, firmwaretest.ReadFixture(t, "ubifs.img")[:4000]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.f.Identify(bytes.NewReader(tc.data), 0, int64(len(tc.data)))
			if !errors.Is(err, firmware.ErrNotFormat) && !errors.Is(err, firmware.ErrTruncated) {
				t.Fatalf("Identify = %v", err)
			}
		})
	}
}

// TestUBITruncated: a UBI image cut mid-way keeps the whole erase blocks.
func TestUBITruncated(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "ubi.img")[:5*16384+100]
	c, err := UBI.Identify(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 5*16384 {
		t.Fatalf("size %d", c.Size)
	}
}

func fuzzFormat(f *testing.F, format *firmware.Format, seeds ...string) {
	firmwaretest.Fuzz(f, format, firmwaretest.Fixtures(f, 0, seeds...)...)
}

func FuzzJFFS2(f *testing.F)  { addJFFS2Seeds(f); fuzzFormat(f, JFFS2, "jffs2-le.img", "jffs2-be.img") }
func FuzzCramfs(f *testing.F) { fuzzFormat(f, Cramfs, "cramfs.img") }
func FuzzUBI(f *testing.F)    { fuzzFormat(f, UBI, "ubi.img") }
func FuzzUBIFS(f *testing.F)  { fuzzFormat(f, UBIFS, "ubifs.img") }

// TestUBIFSTruncated: a cut image keeps what is there, with a warning.
func TestUBIFSTruncated(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "ubifs.img")[:50000]
	c, err := UBIFS.Identify(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 50000 || len(c.Warnings) != 1 || c.Confidence != firmware.ConfidenceMedium {
		t.Fatalf("chunk = %+v", c)
	}
}

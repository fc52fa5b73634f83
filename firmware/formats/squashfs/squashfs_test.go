package squashfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

var fixtures = []struct {
	file, comp string
	block      uint32
}{
	{"squashfs-gzip.img", "gzip", 131072},
	{"squashfs-xz.img", "xz", 131072},
	{"squashfs-lzma.img", "lzma", 131072},
	{"squashfs-lzo.img", "lzo", 131072},
	{"squashfs-lz4.img", "lz4", 131072},
	{"squashfs-zstd.img", "zstd", 131072},
	{"squashfs-frag4k.img", "gzip", 4096},
	{"squashfs-uncompressed.img", "gzip", 131072},
}

func TestFixtures(t *testing.T) {
	var want []string
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, fx.file)
			res, err := firmwaretest.Run(Format, data, 0)
			if err != nil {
				t.Fatal(err)
			}
			c := res.Chunk
			if c == nil {
				t.Fatalf("not identified: %v", res.IdentifyErr)
			}
			if c.Confidence != firmware.ConfidenceHigh || c.Meta["compression"] != fx.comp || c.Meta["block_size"] != fx.block {
				t.Errorf("chunk = %+v", c)
			}
			if c.Size > int64(len(data)) || c.Size < int64(len(data))-4096 {
				t.Errorf("size %d for a %d-byte padded image", c.Size, len(data))
			}
			if res.ExtractErr != nil || len(res.Sink.Warnings) > 0 {
				t.Fatalf("extract: %v, warnings %q", res.ExtractErr, res.Sink.Warnings)
			}
			s := res.Sink
			firmwaretest.CheckSharedTree(t, s)
			if e := s.CheckEntry(t, "etc/passwd-", firmware.TypeHardlink, 0o644); e.Header.Linkname != "etc/passwd" {
				t.Errorf("hard link to %q", e.Header.Linkname)
			}
			if e := s.CheckEntry(t, "var/run/.keep", firmware.TypeFile, 0o644); len(e.Data) != 0 {
				t.Errorf(".keep has %d bytes", len(e.Data))
			}
			if e, _ := s.Entry("etc/passwd"); !e.Header.ModTime.Equal(time.Unix(1700000000, 0)) || e.Header.UID != 0 {
				t.Errorf("etc/passwd mtime %v uid %d", e.Header.ModTime, e.Header.UID)
			}
			got := s.Listing()
			if want == nil {
				want = got
			} else if !slices.Equal(got, want) {
				t.Errorf("listing differs from %s:\n%s\nwant\n%s", fixtures[0].file, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// mutate returns a copy of the gzip fixture changed by fn.
func mutate(t testing.TB, fn func(b []byte) []byte) []byte {
	b := firmwaretest.ReadFixture(t, "squashfs-gzip.img")
	return fn(slices.Clone(b))
}

func TestIdentifyRejects(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":      nil,
		"short":      []byte("hsqs\x00\x00"),
		"random":     bytes.Repeat([]byte{0x5a, 0xa5, 0x13}, 100),
		"bad block":  mutate(t, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 3000); return b }),
		"block log":  mutate(t, func(b []byte) []byte { binary.LittleEndian.PutUint16(b[22:], 12); return b }),
		"compressor": mutate(t, func(b []byte) []byte { binary.LittleEndian.PutUint16(b[20:], 9); return b }),
		"bytes used": mutate(t, func(b []byte) []byte { binary.LittleEndian.PutUint64(b[40:], 1<<40); return b }),
		"tables":     mutate(t, func(b []byte) []byte { binary.LittleEndian.PutUint64(b[72:], 8); return b }),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data)))
			if !errors.Is(err, firmware.ErrNotFormat) {
				t.Fatalf("Identify = %v, want ErrNotFormat", err)
			}
		})
	}
}

// TestIdentifyCutShort: a valid superblock whose image is cut short is
// reported as truncated, not as "not squashfs", so the engine lists it.
func TestIdentifyCutShort(t *testing.T) {
	data := mutate(t, func(b []byte) []byte { return b[:2000] })
	_, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data)))
	if !errors.Is(err, firmware.ErrTruncated) || errors.Is(err, firmware.ErrNotFormat) {
		t.Fatalf("Identify = %v, want ErrTruncated", err)
	}
}

// TestOldVersions checks that v1 images whose superblock does not check out
// (here: no block size, no tables) are identified with their size and the
// reason, and refused by Extract with a clear error.
func TestOldVersions(t *testing.T) {
	v1be := make([]byte, 8192)
	copy(v1be, "sqsh")
	binary.BigEndian.PutUint16(v1be[28:], 1)
	binary.BigEndian.PutUint16(v1be[30:], 0)
	binary.BigEndian.PutUint32(v1be[8:], 5000)
	v1le := make([]byte, 8192)
	copy(v1le, "hsqs")
	binary.LittleEndian.PutUint16(v1le[28:], 1)
	binary.LittleEndian.PutUint32(v1le[8:], 4000)
	for _, tc := range []struct {
		name string
		data []byte
		size int64
		desc string
	}{
		{"v1 big-endian", v1be, 5000, "squashfs 1.0 filesystem, big-endian"},
		{"v1 little-endian", v1le, 4000, "squashfs 1.0 filesystem, little-endian"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Format.Identify(bytes.NewReader(tc.data), 0, int64(len(tc.data)))
			if err != nil {
				t.Fatal(err)
			}
			if c.Size != tc.size || !strings.HasPrefix(c.Desc, tc.desc) || len(c.Warnings) == 0 || !strings.Contains(c.Warnings[0], "block size 0 out of range") {
				t.Fatalf("chunk = %+v", c)
			}
			err = Format.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(tc.data), 0, c.Size), c, &firmwaretest.MemSink{})
			if err == nil || !strings.Contains(err.Error(), "not extractable") {
				t.Fatalf("Extract = %v", err)
			}
		})
	}
}

// TestTruncated cuts every fixture at many points. Cut short, Identify must
// reject it (bytes_used no longer fits); with the tail zeroed instead (a
// partition overwritten by the next one), Extract must end quickly with an
// error or warnings, never a panic.
func TestTruncated(t *testing.T) {
	for _, fx := range fixtures {
		data := firmwaretest.ReadFixture(t, fx.file)
		c, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		cuts, reported := 0, 0
		for cut := int64(superSize); cut < c.Size; cut += 97 {
			res, err := firmwaretest.Run(Format, data[:cut], 0)
			if err != nil {
				t.Fatalf("%s cut at %d: %v", fx.file, cut, err)
			}
			if res.Chunk != nil {
				t.Fatalf("%s cut at %d identified as %+v", fx.file, cut, res.Chunk)
			}
			zeroed := slices.Clone(data)
			clear(zeroed[cut:])
			sink := &firmwaretest.MemSink{}
			start := time.Now()
			err = Format.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(zeroed), 0, c.Size), nil, sink)
			if d := time.Since(start); d > time.Second {
				t.Fatalf("%s zeroed from %d took %v", fx.file, cut, d)
			}
			cuts++
			if err != nil || len(sink.Warnings) > 0 {
				reported++
			}
		}
		// A cut inside the last table's unused high bytes can go unnoticed;
		// nearly every other cut damages something that must be reported.
		if reported < cuts*9/10 {
			t.Errorf("%s: only %d of %d zeroed tails reported", fx.file, reported, cuts)
		}
	}
}

// TestCorruptBlocks overwrites data and metadata bytes: extraction must
// report damage as warnings or errors and keep going where it can.
func TestCorruptBlocks(t *testing.T) {
	for _, fx := range fixtures {
		data := firmwaretest.ReadFixture(t, fx.file)
		// About 40 places per image: every table and some data blocks.
		for off := 96; off < len(data); off += max(211, len(data)/40) {
			b := slices.Clone(data)
			for i := off; i < min(off+16, len(b)); i++ {
				b[i] ^= 0xa5
			}
			if _, err := firmwaretest.Run(Format, b, 0); err != nil {
				t.Fatalf("%s corrupted at %d: %v", fx.file, off, err)
			}
		}
	}
}

func TestContextCancel(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "squashfs-xz.img")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Format.Extract(ctx, io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))), nil, &firmwaretest.MemSink{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract = %v, want context.Canceled", err)
	}
}

// TestSinkLimit checks that the Sink's refusal stops the extraction.
func TestSinkLimit(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "squashfs-zstd.img")
	sink := &firmwaretest.MemSink{MaxFiles: 5}
	err := Format.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data))), nil, sink)
	if !errors.Is(err, firmware.ErrLimit) || len(sink.Entries) != 5 {
		t.Fatalf("Extract = %v with %d entries", err, len(sink.Entries))
	}
}

func FuzzSquashfs(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(firmwaretest.ReadFixture(f, fx.file))
	}
	f.Add(firmwaretest.ReadFixture(f, mixedFixture))
	for _, l := range layouts {
		f.Add(layoutImage(f, l.name, 4096))
	}
	f.Add([]byte("hsqs"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

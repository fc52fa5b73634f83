package sparse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

func TestFill(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "android-sparse-fill.simg")
	want := firmwaretest.ReadFixture(t, "fill.raw")
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunk == nil || res.Chunk.Size != int64(len(data)) || res.Chunk.Meta["expanded_size"] != int64(len(want)) {
		t.Fatalf("chunk = %+v (%v)", res.Chunk, res.IdentifyErr)
	}
	if res.ExtractErr != nil || len(res.Sink.Warnings) > 0 {
		t.Fatal(res.ExtractErr, res.Sink.Warnings)
	}
	got, ok := res.Sink.File(RawName)
	if !ok || !bytes.Equal(got, want) {
		t.Fatalf("expanded image differs (%d bytes, want %d)", len(got), len(want))
	}
}

// TestSplit expands a simg2simg split part (don't-care chunks around the
// data): the covered blocks equal the original, the rest reads as zeros.
func TestSplit(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "android-sparse-split.simg")
	orig := firmwaretest.ReadFixture(t, "fill.raw")
	h, err := readHeader(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[uint16]int{}
	want := make([]byte, len(orig))
	pos := int64(0)
	walk(bytes.NewReader(data), 0, int64(len(data)), h, func(c chunk) error {
		kinds[c.typ]++
		n := int64(c.blocks) * int64(h.blockSize)
		if c.typ != chunkDontCare {
			copy(want[pos:pos+n], orig[pos:pos+n])
		}
		pos += n
		return nil
	})
	if kinds[chunkDontCare] == 0 || kinds[chunkRaw] == 0 || kinds[chunkFill] == 0 {
		t.Fatalf("chunk kinds %v: the fixture must hold raw, fill and don't-care chunks", kinds)
	}
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	got, _ := res.Sink.File(RawName)
	if !bytes.Equal(got, want) {
		t.Fatalf("expansion differs (%d bytes)", len(got))
	}
	testutil.NeedTool(t, "simg2img")
	raw := filepath.Join(t.TempDir(), "raw.img")
	if out, err := exec.Command("simg2img", filepath.Join("testdata", "android-sparse-split.simg"), raw).CombinedOutput(); err != nil {
		t.Fatalf("simg2img: %v\n%s", err, out)
	}
	if ref, _ := os.ReadFile(raw); !bytes.Equal(got, ref) {
		t.Fatal("expansion differs from simg2img")
	}
}

// TestExt4 expands the ext4 fixture and compares with simg2img, when
// installed, or checks for the ext4 superblock.
func TestExt4(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "android-sparse.simg")
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	got, _ := res.Sink.File(RawName)
	if len(got) != 1<<20 || binary.LittleEndian.Uint16(got[0x438:]) != 0xEF53 || string(got[0x478:0x47e]) != "system" {
		t.Fatalf("expanded image is not the 1 MiB ext4 image (%d bytes)", len(got))
	}
	testutil.NeedTool(t, "simg2img")
	raw := filepath.Join(t.TempDir(), "raw.img")
	if out, err := exec.Command("simg2img", filepath.Join("testdata", "android-sparse.simg"), raw).CombinedOutput(); err != nil {
		t.Fatalf("simg2img: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(raw)
	if !bytes.Equal(got, want) {
		t.Fatal("expansion differs from simg2img")
	}
}

func TestCRC(t *testing.T) {
	// Build a sparse image by hand: one raw block, one CRC chunk.
	block := bytes.Repeat([]byte("abcd"), 1024)
	img := func(crc uint32) []byte {
		var b bytes.Buffer
		le := binary.LittleEndian
		hdr := make([]byte, 28)
		le.PutUint32(hdr[0:], magic)
		le.PutUint16(hdr[4:], 1)
		le.PutUint16(hdr[8:], 28)
		le.PutUint16(hdr[10:], 12)
		le.PutUint32(hdr[12:], 4096)
		le.PutUint32(hdr[16:], 1)
		le.PutUint32(hdr[20:], 2)
		b.Write(hdr)
		ch := make([]byte, 12)
		le.PutUint16(ch[0:], chunkRaw)
		le.PutUint32(ch[4:], 1)
		le.PutUint32(ch[8:], 12+4096)
		b.Write(ch)
		b.Write(block)
		le.PutUint16(ch[0:], chunkCRC)
		le.PutUint32(ch[4:], 0)
		le.PutUint32(ch[8:], 16)
		b.Write(ch)
		binary.Write(&b, le, crc)
		return b.Bytes()
	}
	good := img(crc32.ChecksumIEEE(block))
	res, err := firmwaretest.Run(Format, good, 0)
	if err != nil || res.ExtractErr != nil || len(res.Sink.Warnings) != 0 {
		t.Fatalf("good CRC: %v %v %q", err, res.ExtractErr, res.Sink.Warnings)
	}
	res, err = firmwaretest.Run(Format, img(1), 0)
	if err != nil || len(res.Sink.Warnings) != 1 {
		t.Fatalf("bad CRC: %v %q", err, res.Sink.Warnings)
	}
}

func TestIdentifyRejects(t *testing.T) {
	base := firmwaretest.ReadFixture(t, "android-sparse-fill.simg")
	mut := func(fn func(b []byte)) []byte { b := slices.Clone(base); fn(b); return b }
	le := binary.LittleEndian
	for name, data := range map[string][]byte{
		"empty":       nil,
		"magic only":  []byte{0x3A, 0xFF, 0x26, 0xED},
		"major":       mut(func(b []byte) { le.PutUint16(b[4:], 2) }),
		"block size":  mut(func(b []byte) { le.PutUint32(b[12:], 3) }),
		"blocks":      mut(func(b []byte) { le.PutUint32(b[16:], 99) }),
		"chunks":      mut(func(b []byte) { le.PutUint32(b[20:], 1<<30) }),
		"chunk type":  mut(func(b []byte) { le.PutUint16(b[28:], 0xCAFE) }),
		"chunk total": mut(func(b []byte) { le.PutUint32(b[36:], 7) }),
		"truncated":   base[:len(base)-100],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Format.Identify(bytes.NewReader(data), 0, int64(len(data)))
			if !errors.Is(err, firmware.ErrNotFormat) && !errors.Is(err, firmware.ErrTruncated) {
				t.Fatalf("Identify = %v", err)
			}
		})
	}
}

// TestBomb: a tiny image declaring a huge fill expands only as far as the
// Sink allows.
func TestBomb(t *testing.T) {
	le := binary.LittleEndian
	b := make([]byte, 28+16)
	le.PutUint32(b[0:], magic)
	le.PutUint16(b[4:], 1)
	le.PutUint16(b[8:], 28)
	le.PutUint16(b[10:], 12)
	le.PutUint32(b[12:], 4096)
	le.PutUint32(b[16:], 1<<30) // 4 TiB
	le.PutUint32(b[20:], 1)
	le.PutUint16(b[28:], chunkFill)
	le.PutUint32(b[32:], 1<<30)
	le.PutUint32(b[36:], 16)
	sink := &firmwaretest.MemSink{MaxBytes: 1 << 20}
	err := Format.Extract(context.Background(), io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))), nil, sink)
	if !errors.Is(err, firmware.ErrLimit) {
		t.Fatalf("Extract = %v, want ErrLimit", err)
	}
}

func FuzzSparse(f *testing.F) {
	f.Add(firmwaretest.ReadFixture(f, "android-sparse-fill.simg"))
	f.Add(firmwaretest.ReadFixture(f, "android-sparse-split.simg"))
	f.Add(firmwaretest.ReadFixture(f, "android-sparse.simg")[:4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// TestManyChunks: 200,000 one-block don't-care chunks are walked through the
// read window quickly and expand to zeros without a slice of them all.
func TestManyChunks(t *testing.T) {
	const n = 200000
	le := binary.LittleEndian
	b := make([]byte, 28+12*n)
	le.PutUint32(b[0:], magic)
	le.PutUint16(b[4:], 1)
	le.PutUint16(b[8:], 28)
	le.PutUint16(b[10:], 12)
	le.PutUint32(b[12:], 4)
	le.PutUint32(b[16:], n)
	le.PutUint32(b[20:], n)
	for i := range n {
		c := b[28+12*i:]
		le.PutUint16(c[0:], chunkDontCare)
		le.PutUint32(c[4:], 1)
		le.PutUint32(c[8:], 12)
	}
	start := time.Now()
	res := firmwaretest.MustRun(t, Format, b, 0)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	got, _ := res.Sink.File(RawName)
	if len(got) != 4*n || bytes.Count(got, []byte{0}) != 4*n {
		t.Errorf("expanded to %d bytes", len(got))
	}
}

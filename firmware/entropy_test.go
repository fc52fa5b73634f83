package firmware_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
)

// entropyImage is 4 KiB of random data, 4 KiB of text, 4 KiB of 0xff and
// 4 KiB of a byte ramp (data), in 1 KiB blocks.
func entropyImage() []byte {
	text := []byte(strings.Repeat("telnetd -p 23 -l /bin/sh\nrtsp.port=554\n", 200))[:4096]
	ramp := make([]byte, 4096)
	for i := range ramp {
		ramp[i] = byte(i % 64)
	}
	return slices.Concat(randomBytes(4096, 7), text, bytes.Repeat([]byte{0xff}, 4096), ramp)
}

func TestEntropyProfile(t *testing.T) {
	img := entropyImage()
	blocks, err := firmware.EntropyProfile(context.Background(), bytes.NewReader(img), int64(len(img)), 1024)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 16 {
		t.Fatalf("%d blocks, want 16", len(blocks))
	}
	want := []firmware.BlockClass{firmware.ClassCompressed, firmware.ClassText, firmware.ClassPadding, firmware.ClassData}
	for i, b := range blocks {
		if b.Class != want[i/4] || b.Offset != int64(i)*1024 || b.Size != 1024 {
			t.Errorf("block %d: %+v, want class %s", i, b, want[i/4])
		}
	}
	if e := blocks[0].Entropy; e < 7.7 || e > 8 {
		t.Errorf("random block entropy %.3f", e)
	}
	if e := blocks[12].Entropy; e != 6 {
		t.Errorf("ramp of 64 values: entropy %.3f, want 6", e)
	}

	// The last block may be short; bad block sizes are refused.
	blocks, err = firmware.EntropyProfile(context.Background(), bytes.NewReader(img[:1500]), 1500, 1024)
	if err != nil || len(blocks) != 2 || blocks[1].Size != 476 {
		t.Errorf("short tail: %+v, %v", blocks, err)
	}
	if _, err := firmware.EntropyProfile(context.Background(), bytes.NewReader(img), int64(len(img)), 10); err == nil {
		t.Error("a block of 10 bytes was accepted")
	}
}

func TestDefaultEntropyBlock(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{
		{0, 1024}, {100 << 10, 1024}, {16 << 20, 32 << 10}, {16<<20 + 512<<10, 64 << 10}, {1 << 40, firmware.MaxEntropyBlock},
	} {
		if got := firmware.DefaultEntropyBlock(c.size); got != c.want {
			t.Errorf("DefaultEntropyBlock(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

// TestEntropyRegions: runs of one class within one chunk, embedded chunks
// counting as their own.
func TestEntropyRegions(t *testing.T) {
	img := entropyImage()
	blocks, err := firmware.EntropyProfile(context.Background(), bytes.NewReader(img), int64(len(img)), 1024)
	if err != nil {
		t.Fatal(err)
	}
	outer := &firmware.ChunkReport{Chunk: firmware.Chunk{Offset: 0, Size: 8192, Format: "elf"}}
	outer.Children = []*firmware.ChunkReport{
		{Chunk: firmware.Chunk{Offset: 2048, Size: 1024, Format: "gzip"}},
		{Chunk: firmware.Chunk{Offset: 0, Size: 10, Format: "inner"}, File: "x.extract/data"}, // another file: ignored
	}
	regs := firmware.EntropyRegions(blocks, []*firmware.ChunkReport{outer})
	type r struct {
		off    int64
		class  firmware.BlockClass
		blocks int
		chunk  string
	}
	var got []r
	for _, g := range regs {
		got = append(got, r{g.Offset, g.Class, g.Blocks, g.Chunk})
	}
	want := []r{
		{0, firmware.ClassCompressed, 2, "elf@0x0"},
		{2048, firmware.ClassCompressed, 1, "gzip@0x800"},
		{3072, firmware.ClassCompressed, 1, "elf@0x0"},
		{4096, firmware.ClassText, 4, "elf@0x0"},
		{8192, firmware.ClassPadding, 4, ""},
		{12288, firmware.ClassData, 4, ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("regions\n got %+v\nwant %+v", got, want)
	}
	if regs[3].Mean <= 0 || regs[3].Max < regs[3].Mean {
		t.Errorf("text region stats %+v", regs[3])
	}
}

// FuzzEntropyProfile: blocks tile the data, entropies lie in [0, 8], and the
// regions tile it too.
func FuzzEntropyProfile(f *testing.F) {
	f.Add(entropyImage(), uint16(1024))
	f.Add([]byte("short"), uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, bs uint16) {
		block := int64(max(bs, firmware.MinEntropyBlock))
		blocks, err := firmware.EntropyProfile(context.Background(), bytes.NewReader(data), int64(len(data)), block)
		if err != nil {
			t.Fatal(err)
		}
		pos := int64(0)
		for _, b := range blocks {
			if b.Offset != pos || b.Size <= 0 || b.Size > block || b.Entropy < 0 || b.Entropy > 8 || b.Class == "" {
				t.Fatalf("block %+v at %d", b, pos)
			}
			pos += b.Size
		}
		if pos != int64(len(data)) {
			t.Fatalf("blocks end at %d, data at %d", pos, len(data))
		}
		pos = 0
		for _, r := range firmware.EntropyRegions(blocks, nil) {
			if r.Offset != pos || r.Blocks <= 0 || r.Max < r.Mean-1e-9 {
				t.Fatalf("region %+v at %d", r, pos)
			}
			pos += r.Size
		}
		if pos != int64(len(data)) {
			t.Fatalf("regions end at %d", pos)
		}
	})
}

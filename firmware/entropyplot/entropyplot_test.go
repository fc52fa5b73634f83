package entropyplot

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
)

// plotOf profiles img (1 KiB blocks) with one chunk over [4096, 8192) and
// padding after it.
func plotOf(t *testing.T, img []byte, padding []firmware.Region, linear bool) *Plot {
	t.Helper()
	blocks, err := firmware.EntropyProfile(context.Background(), bytes.NewReader(img), int64(len(img)), 1024)
	if err != nil {
		t.Fatal(err)
	}
	return &Plot{
		Title: "test.bin", Size: int64(len(img)), Block: 1024, Blocks: blocks,
		Chunks:  []*firmware.ChunkReport{{Chunk: firmware.Chunk{Offset: 4096, Size: 4096, Format: "squashfs"}}},
		Padding: padding, Linear: linear, Width: 700, Height: 320,
	}
}

func testImage() ([]byte, []firmware.Region) {
	rnd := make([]byte, 8192)
	rand.NewChaCha8([32]byte{9}).Read(rnd)
	img := slices.Concat(rnd, bytes.Repeat([]byte{0xff}, 120<<10))
	return img, []firmware.Region{{Offset: 8192, Size: 120 << 10, Padding: "0xff"}}
}

func decode(t *testing.T, p *Plot) image.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := Draw(&buf, p); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func count(img image.Image, c color.RGBA) int {
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Bounds(), img, img.Bounds().Min, draw.Src)
	n := 0
	for i := 0; i+3 < len(rgba.Pix); i += 4 {
		if rgba.Pix[i] == c.R && rgba.Pix[i+1] == c.G && rgba.Pix[i+2] == c.B && rgba.Pix[i+3] == c.A {
			n++
		}
	}
	return n
}

// TestDraw: the picture has its size, the chunk's band, the curve and the
// class strip; folding the padding widens the chunk.
func TestDraw(t *testing.T) {
	data, pad := testImage()
	folded := decode(t, plotOf(t, data, pad, false))
	if b := folded.Bounds(); b.Dx() != 700 || b.Dy() != 320 {
		t.Fatalf("picture %v, want 700x320", b)
	}
	for name, c := range map[string]color.RGBA{"curve": curve, "compressed strip": classInk[firmware.ClassCompressed], "padding strip": classInk[firmware.ClassPadding]} {
		if count(folded, c) == 0 {
			t.Errorf("no %s pixels", name)
		}
	}
	linear := decode(t, plotOf(t, data, pad, true))
	// The chunk is 1/32 of the image: a few pixels wide on a linear axis,
	// most of the plot once 120 KiB of 0xff are folded.
	band := classInk[firmware.ClassCompressed]
	if f, l := count(folded, band), count(linear, band); f < 10*l {
		t.Errorf("compressed strip: %d pixels folded, %d linear; folding should widen it", f, l)
	}
	if got := len(Folds(int64(len(data)), pad, false)); got != 1 {
		t.Errorf("%d folds, want 1", got)
	}
	if VisibleBytes(int64(len(data)), pad, false) != 8192 || VisibleBytes(int64(len(data)), pad, true) != int64(len(data)) {
		t.Error("VisibleBytes")
	}
}

func TestDrawRejects(t *testing.T) {
	data, pad := testImage()
	p := plotOf(t, data, pad, false)
	p.Width = 50
	if err := Draw(&bytes.Buffer{}, p); err == nil {
		t.Error("a 50-pixel-wide picture was drawn")
	}
	if err := Draw(&bytes.Buffer{}, &Plot{}); err == nil {
		t.Error("an empty image was drawn")
	}
}

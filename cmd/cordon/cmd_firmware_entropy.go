package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/entropyplot"
	"github.com/cordon-vms/cordon/internal/humanize"
)

const entropyUsage = `usage: cordon firmware entropy IMAGE [--block SIZE] [--png FILE] [--json]

Prints the Shannon entropy (bits per byte, 0 to 8) of every block of IMAGE,
grouped into regions: runs of blocks of one class inside one chunk that
cordon identified. Classes:

  compressed/encrypted  entropy near 8 (7.5 and more for 4 KiB blocks):
                        a compressed stream, or encrypted data when no
                        chunk explains it
  text                  95% or more printable ASCII (scripts, config, HTML)
  padding               one byte value only (0x00 or 0xff filler)
  data                  anything else (code, tables, filesystem metadata)

Runs of padding are shown as one line. --png draws the curve, the picture
binwalk -E makes, with the chunks shaded and labelled by format and a strip
that colours every block by class. Nothing else is written.

Examples:
  cordon firmware entropy flash.bin
  cordon firmware entropy flash.bin --png flash-entropy.png --block 16KiB
  cordon firmware entropy digicap.dav --json | jq '.regions[] | select(.class == "compressed/encrypted" and .chunk == "")'`

func runFirmwareEntropy(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "firmware entropy", entropyUsage)
	var block byteSize
	fs.Var(&block, "block", "block size (e.g. 4KiB; default: the power of two that cuts what is not padding into about 512 blocks, at least 1 KiB)")
	pngOut := fs.String("png", "", "also draw the entropy curve with the chunks into this PNG `FILE`")
	asJSON := fs.Bool("json", false, "print the blocks, regions and chunks as JSON")
	width := fs.Int("width", 1400, "width of the PNG in pixels")
	linear := fs.Bool("linear", false, "keep the PNG's offset axis linear (by default, runs of padding longer than 1/20 of the image are folded to a narrow hatched band)")
	lf := addLimitFlags(fs, false)
	image, err := parseImageArgs(e, fs, args, "entropy")
	if err != nil {
		return err
	}
	o, err := lf.options(e)
	if err != nil {
		return err
	}
	rep, err := firmware.Scan(ctx, image, o)
	if err != nil {
		return err
	}
	size := rep.Image.Size
	bs := entropyBlockSize(int64(block), rep)
	if bs < firmware.MinEntropyBlock || bs > firmware.MaxEntropyBlock {
		return usagef("--block %s: want %d bytes to %s", humanize.Bytes(bs), firmware.MinEntropyBlock, humanize.Bytes(firmware.MaxEntropyBlock))
	}
	f, err := os.Open(image)
	if err != nil {
		return err
	}
	defer f.Close()
	blocks, err := firmware.EntropyProfile(ctx, f, size, bs)
	if err != nil {
		return err
	}
	regions := firmware.EntropyRegions(blocks, rep.Chunks)
	if *pngOut != "" {
		pic := entropyPicture{path: *pngOut, width: *width, linear: *linear, fixedBlock: block != 0}
		if err := pic.draw(ctx, f, image, rep, bs, blocks); err != nil {
			return err
		}
	}
	if *asJSON {
		return printJSON(e.Stdout, struct {
			Image   firmware.ImageInfo       `json:"image"`
			Block   int64                    `json:"block"`
			Blocks  []firmware.EntropyBlock  `json:"blocks"`
			Regions []firmware.EntropyRegion `json:"regions"`
			Chunks  []*firmware.ChunkReport  `json:"chunks"`
		}{rep.Image, bs, blocks, regions, rep.Chunks})
	}
	fmt.Fprintf(e.Stdout, "%s: %s, entropy per %s block (%d blocks)\n\n", image, humanize.Bytes(size), humanize.Bytes(bs), len(blocks))
	printEntropy(e.Stdout, blocks, regions)
	if *pngOut != "" {
		fmt.Fprintf(e.Stdout, "\npicture: %s\n", *pngOut)
	}
	return nil
}

// entropyBlockSize is the --block size, or by default about
// DefaultEntropyBlocks blocks over what is not padding (padding runs print
// as one line each).
func entropyBlockSize(block int64, rep *firmware.ScanReport) int64 {
	if block != 0 {
		return block
	}
	data := rep.Image.Size
	for _, u := range rep.Unknown {
		if u.Padding != "" {
			data -= u.Size
		}
	}
	return firmware.DefaultEntropyBlock(data)
}

// entropyPicture is what --png and its flags ask for.
type entropyPicture struct {
	path       string
	width      int
	linear     bool
	fixedBlock bool // --block was given
}

// draw writes the PNG of the image's entropy (blocks of bs bytes) with the
// chunks of rep.
func (pic entropyPicture) draw(ctx context.Context, f io.ReaderAt, image string, rep *firmware.ScanReport, bs int64, blocks []firmware.EntropyBlock) error {
	size := rep.Image.Size
	if size == 0 {
		return fmt.Errorf("%s is empty: nothing to draw", image)
	}
	// The picture has its own, finer blocks (about two per pixel
	// column of what is not folded) unless --block says otherwise.
	pbs, pblocks := bs, blocks
	if !pic.fixedBlock {
		pbs = firmware.DefaultEntropyBlockFor(entropyplot.VisibleBytes(size, rep.Unknown, pic.linear), 2*int64(pic.width))
		var err error
		if pblocks, err = firmware.EntropyProfile(ctx, f, size, pbs); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if err := entropyplot.Draw(&buf, &entropyplot.Plot{Title: entropyplot.TitleOf(image), Size: size, Block: pbs, Blocks: pblocks, Chunks: rep.Chunks, Padding: rep.Unknown, Linear: pic.linear, Width: pic.width}); err != nil {
		return usagef("%v", err)
	}
	return os.WriteFile(pic.path, buf.Bytes(), 0o644)
}

// printEntropy prints each region as a header line, then its blocks with a
// bar (padding runs as their header only).
func printEntropy(w io.Writer, blocks []firmware.EntropyBlock, regions []firmware.EntropyRegion) {
	i := 0
	for _, r := range regions {
		where := r.Chunk
		if where == "" {
			where = "no chunk"
		}
		fmt.Fprintf(w, "0x%08x-0x%08x  %-20s  mean %.3f  max %.3f  %s, %s\n", r.Offset, r.Offset+r.Size, r.Class, r.Mean, r.Max, where, humanize.Bytes(r.Size))
		for range r.Blocks {
			b := blocks[i]
			i++
			if r.Class == firmware.ClassPadding {
				continue
			}
			n := int(b.Entropy/8*40 + 0.5)
			fmt.Fprintf(w, "  0x%08x  %.3f  |%s%s|\n", b.Offset, b.Entropy, strings.Repeat("#", n), strings.Repeat(" ", 40-n))
		}
	}
}

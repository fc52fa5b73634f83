package firmware

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
)

// BlockClass is what a block's bytes look like.
type BlockClass string

// Block classes, as binwalk -E users read an entropy curve.
const (
	// ClassPadding: one byte value only (0x00, 0xff or another filler).
	ClassPadding BlockClass = "padding"
	// ClassText: printable ASCII (scripts, configuration, HTML) for at least
	// 95% of the bytes.
	ClassText BlockClass = "text"
	// ClassCompressed: entropy close to 8 bits per byte, compressed or
	// encrypted (the curve cannot tell them apart; a chunk label can).
	ClassCompressed BlockClass = "compressed/encrypted"
	// ClassData: anything else (code, tables, filesystem metadata).
	ClassData BlockClass = "data"
)

// EntropyBlock is the Shannon entropy of one block of an image.
type EntropyBlock struct {
	Offset  int64      `json:"offset"`
	Size    int64      `json:"size"`
	Entropy float64    `json:"entropy"` // bits per byte, 0 to 8
	Class   BlockClass `json:"class"`
}

// Entropy profile limits.
const (
	MinEntropyBlock = 64      // smallest block size
	MaxEntropyBlock = 1 << 24 // largest block size
	// DefaultEntropyBlocks is how many blocks DefaultEntropyBlock aims at.
	DefaultEntropyBlocks = 512
)

// DefaultEntropyBlock is the block size that cuts size bytes into about
// DefaultEntropyBlocks blocks: a power of two, at least 1 KiB (entropy over
// fewer bytes cannot get near 8) and at most MaxEntropyBlock.
func DefaultEntropyBlock(size int64) int64 { return DefaultEntropyBlockFor(size, DefaultEntropyBlocks) }

// DefaultEntropyBlockFor is DefaultEntropyBlock aiming at n blocks.
func DefaultEntropyBlockFor(size, n int64) int64 {
	b := size / max(n, 1)
	if b <= 1024 {
		return 1024
	}
	return min(int64(1)<<bits.Len64(uint64(b-1)), MaxEntropyBlock)
}

// compressedFloor is the entropy above which a block counts as compressed or
// encrypted, for a block of n bytes: 7.5 bits per byte for 4 KiB and more,
// lower for small blocks, whose entropy cannot reach 8 (random bytes give
// about log2(n) - 0.5 below 256 bytes of distinct values).
func compressedFloor(n int64) float64 {
	return min(7.5, math.Log2(float64(n))-1.0)
}

// EntropyProfile computes the entropy of every block of size block (the last
// one may be shorter) of the size bytes of r, reading it once through a
// bounded buffer.
func EntropyProfile(ctx context.Context, r io.ReaderAt, size, block int64) ([]EntropyBlock, error) {
	if block < MinEntropyBlock || block > MaxEntropyBlock {
		return nil, fmt.Errorf("firmware: entropy block size %d outside %d..%d", block, MinEntropyBlock, MaxEntropyBlock)
	}
	if size < 0 {
		return nil, fmt.Errorf("firmware: negative size %d", size)
	}
	out := make([]EntropyBlock, 0, (size+block-1)/block)
	buf := make([]byte, min(block, max(size, 1)))
	for off := int64(0); off < size; off += block {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(block, size-off)
		b := buf[:n]
		if _, err := r.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("firmware: entropy: read at %#x: %w", off, err)
		}
		var hist [256]int64
		printable := int64(0)
		for _, c := range b {
			hist[c]++
		}
		for c := 0x20; c < 0x7f; c++ {
			printable += hist[c]
		}
		printable += hist['\t'] + hist['\n'] + hist['\r']
		e := entropyOf(&hist, n)
		cls := ClassData
		switch {
		case e == 0:
			cls = ClassPadding
		case printable*100 >= n*95:
			cls = ClassText
		case e >= compressedFloor(n):
			cls = ClassCompressed
		}
		out = append(out, EntropyBlock{Offset: off, Size: n, Entropy: e, Class: cls})
	}
	return out, nil
}

// EntropyRegion is a run of blocks of one class inside one chunk (or
// outside every chunk).
type EntropyRegion struct {
	Offset int64      `json:"offset"`
	Size   int64      `json:"size"`
	Class  BlockClass `json:"class"`
	Blocks int        `json:"blocks"`
	Mean   float64    `json:"mean"`
	Max    float64    `json:"max"`
	// Chunk names the innermost chunk of the image the run starts in
	// ("squashfs@0x200000"), or is empty outside every chunk.
	Chunk string `json:"chunk,omitempty"`
}

// EntropyRegions groups blocks into runs of one class within one chunk of
// chunks (a ScanReport's; embedded chunks count as their own).
func EntropyRegions(blocks []EntropyBlock, chunks []*ChunkReport) []EntropyRegion {
	type span struct {
		off, end int64
		name     string
	}
	var spans []span // innermost last among those that overlap
	var walk func(cs []*ChunkReport, file string)
	walk = func(cs []*ChunkReport, file string) {
		for _, c := range cs {
			if c.File != file {
				continue
			}
			spans = append(spans, span{c.Offset, c.End(), fmt.Sprintf("%s@%#x", c.Format, c.Offset)})
			walk(c.Children, file)
		}
	}
	walk(chunks, "")
	chunkAt := func(off int64) string {
		name := ""
		for _, s := range spans {
			if s.off <= off && off < s.end {
				name = s.name // later spans are nested deeper
			}
		}
		return name
	}
	var out []EntropyRegion
	var sum float64
	for _, b := range blocks {
		ch := chunkAt(b.Offset)
		if n := len(out); n > 0 && out[n-1].Class == b.Class && out[n-1].Chunk == ch {
			r := &out[n-1]
			r.Size += b.Size
			r.Blocks++
			r.Max = max(r.Max, b.Entropy)
			sum += b.Entropy
			r.Mean = math.Round(sum/float64(r.Blocks)*1000) / 1000
			continue
		}
		sum = b.Entropy
		out = append(out, EntropyRegion{Offset: b.Offset, Size: b.Size, Class: b.Class, Blocks: 1, Mean: b.Entropy, Max: b.Entropy, Chunk: ch})
	}
	return out
}

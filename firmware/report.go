package firmware

import (
	"math"

	"github.com/cordon-vms/cordon/internal/unpackreport"
)

// ImageInfo identifies the scanned image.
type ImageInfo struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ChunkReport is an identified chunk with what the engine learned about it.
// The embedded Chunk's fields appear at the top level in JSON.
type ChunkReport struct {
	Chunk
	// File is the extracted file (relative to the output folder) this chunk
	// was found in; empty for chunks of the image itself. Offset is relative
	// to that file.
	File string `json:"file,omitempty"`
	// Kind is the format's kind.
	Kind Kind `json:"kind"`
	// Errors that stopped or spoiled the extraction.
	Errors  []string `json:"errors,omitempty"`
	SHA256  string   `json:"sha256"`
	Entropy float64  `json:"entropy"`
	// ExtractDir is where the chunk was extracted, relative to the output
	// folder; empty when nothing was extracted.
	ExtractDir string `json:"extract_dir,omitempty"`
	// Outcome is what Unpack did with the chunk: extracted, carved or
	// identified (not opened). Empty in a scan, which opens nothing.
	Outcome Outcome `json:"outcome,omitempty"`
	// Children are the chunks embedded in this one (when its format has no
	// Extract: a gzip inside an ELF; same File, offsets in that file) and
	// then the chunks found in the files extracted from it.
	Children []*ChunkReport `json:"children,omitempty"`
}

// Outcome is what Unpack did with a chunk.
type Outcome string

// Outcomes.
const (
	// OutcomeExtracted: Extract wrote at least one entry (it may have failed
	// afterwards; the failure is then a Gap).
	OutcomeExtracted Outcome = "extracted"
	// OutcomeCarved: a carve-only chunk whose bytes were written to their own
	// file (or that is the whole file already).
	OutcomeCarved Outcome = "carved"
	// OutcomeIdentified: identified and mapped, its content not opened (no
	// extractor, encrypted, depth limit, or extraction failed before writing
	// anything). Always a Gap.
	OutcomeIdentified Outcome = "identified"
)

// The report.json schema shared with inspect (package unpackreport).
type (
	// ManifestEntry records one entry handed to a Sink: what the image said
	// and what was written.
	ManifestEntry = unpackreport.ManifestEntry
	// Gap is content the engine found but did not (fully) open.
	Gap = unpackreport.Gap
	// GapStatus says why a Gap was not looked into.
	GapStatus = unpackreport.GapStatus
	// Coverage accounts for every byte of the image, by what happened to it.
	Coverage = unpackreport.Coverage
)

// Gap statuses.
const (
	GapIdentified = unpackreport.GapIdentified
	GapFailed     = unpackreport.GapFailed
)

// coverage accounts for the bytes of an image of size bytes.
func coverage(size int64, chunks []*ChunkReport, unknown []Region) Coverage {
	cv := Coverage{Size: size}
	var add func(c *ChunkReport)
	add = func(c *ChunkReport) {
		own := c.Size
		for _, k := range c.Children {
			if k.File == c.File {
				own -= k.Size
				add(k)
			}
		}
		switch c.Outcome {
		case OutcomeExtracted:
			cv.Extracted += own
		case OutcomeCarved:
			cv.Carved += own
		default:
			cv.Identified += own
		}
	}
	for _, c := range chunks {
		if c.File == "" {
			add(c)
		}
	}
	for _, u := range unknown {
		if u.Padding != "" {
			cv.Padding += u.Size
		}
	}
	// Whatever is left is unknown: the regions, or all of the rest when an
	// interrupted run did not describe them.
	cv.Unknown = max(0, size-cv.Extracted-cv.Carved-cv.Identified-cv.Padding)
	if size > 0 {
		cv.Examined = math.Round(float64(cv.Extracted+cv.Carved+cv.Padding)/float64(size)*1e4) / 1e4
	}
	return cv
}

// End is the offset just past the chunk.
func (c *ChunkReport) End() int64 { return c.Offset + c.Size }

// Region is a stretch of the image no format claimed.
type Region struct {
	Offset  int64   `json:"offset"`
	Size    int64   `json:"size"`
	Entropy float64 `json:"entropy"`
	// Padding is "0x00" or "0xff" when the region is nothing but that byte.
	Padding string `json:"padding,omitempty"`
}

// Stats summarise a run.
type Stats struct {
	Chunks       int     `json:"chunks"`
	Files        int     `json:"files"`
	BytesWritten int64   `json:"bytes_written"`
	MaxDepth     int     `json:"max_depth"`
	Seconds      float64 `json:"seconds"`
}

// ScanReport is the chunk map of an image (cordon firmware scan).
type ScanReport struct {
	Image   ImageInfo      `json:"image"`
	Chunks  []*ChunkReport `json:"chunks"`
	Unknown []Region       `json:"unknown"`
	// Gaps are the chunks a scan identifies that unpack would not open (no
	// extractor, encrypted) and the candidates whose header was found but
	// whose content does not decode. Each is also a warning.
	Gaps     []Gap    `json:"gaps"`
	Warnings []string `json:"warnings"`
	Limits   Limits   `json:"limits"`
	Stats    Stats    `json:"stats"`
}

// Report is the result of Unpack, written as report.json in the output folder.
type Report struct {
	Image    ImageInfo      `json:"image"`
	Chunks   []*ChunkReport `json:"chunks"`
	Unknown  []Region       `json:"unknown"`
	Coverage Coverage       `json:"coverage"`
	// Gaps are the chunks identified but not extracted and the ones whose
	// content failed to decode or extract, at every depth. Each is also a
	// warning.
	Gaps     []Gap           `json:"gaps"`
	Manifest []ManifestEntry `json:"manifest"`
	Warnings []string        `json:"warnings"`
	Limits   Limits          `json:"limits"`
	Stats    Stats           `json:"stats"`
}

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeHardlink:
		return "hardlink"
	case TypeCharDevice:
		return "chardev"
	case TypeBlockDevice:
		return "blockdev"
	case TypeFIFO:
		return "fifo"
	case TypeSocket:
		return "socket"
	}
	return "unknown"
}

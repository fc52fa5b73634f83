// Package unpackreport is the schema of report.json, the file the firmware
// unpacker writes at the root of its output folder and inspect reads: the
// manifest of extracted entries with their original metadata, the gaps (what
// was found but not opened) and the image's coverage. Both sides use these
// types, so the file's shape is declared once; inspect still never imports
// firmware.
package unpackreport

import "fmt"

// FileName is report.json's name at the root of an unpack folder.
const FileName = "report.json"

// ManifestEntry records one entry handed to a Sink: what the image said and
// what was written.
type ManifestEntry struct {
	// Path is where the entry was written, relative to the output folder, or
	// empty when it was not created.
	Path string `json:"path"`
	// OrigName is the entry's name in the image.
	OrigName string `json:"orig_name"`
	// Type is file, dir, symlink, hardlink, chardev, blockdev, fifo or socket.
	Type string `json:"type"`
	// Mode is the octal permission in the image, with setuid (4000), setgid
	// (2000) and sticky (1000) bits, e.g. "4755".
	Mode       string `json:"mode"`
	UID        int    `json:"uid"`
	GID        int    `json:"gid"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256,omitempty"`
	LinkTarget string `json:"link_target,omitempty"`
	DevMajor   uint32 `json:"dev_major,omitempty"`
	DevMinor   uint32 `json:"dev_minor,omitempty"`
	// Note says what the Sink changed: setuid dropped, symlink escaped, name
	// neutralised, truncated by a limit, ...
	Note string `json:"note,omitempty"`
}

// GapStatus says why a Gap was not looked into.
type GapStatus string

// Gap statuses.
const (
	// GapIdentified: the chunk was identified, but not extracted (no
	// extractor, encrypted, depth limit, or no entries).
	GapIdentified GapStatus = "identified"
	// GapFailed: the header was found but the content did not decode or the
	// extraction was stopped (a stream cut short, a corrupt filesystem, a
	// limit).
	GapFailed GapStatus = "failed"
)

// Gap is content the engine found but did not (fully) open: a lab must
// never mistake it for clean. Every gap is also a warning.
type Gap struct {
	// File is the extracted file the gap is in, as ChunkReport.File; empty
	// for the image.
	File   string `json:"file,omitempty"`
	Offset int64  `json:"offset"`
	// Size is the extent when the chunk was identified; 0 when only its
	// header was found.
	Size   int64     `json:"size"`
	Format string    `json:"format"`
	Status GapStatus `json:"status"`
	Reason string    `json:"reason"`
}

// String is the gap as a warning line.
func (g Gap) String() string {
	what := "identified, not extracted"
	if g.Status == GapFailed {
		what = "failed"
	}
	size := ""
	if g.Size > 0 {
		size = fmt.Sprintf(" (%d bytes)", g.Size)
	}
	return fmt.Sprintf("%s@%#x: %s%s %s: %s", where(g.File), g.Offset, g.Format, size, what, g.Reason)
}

func where(file string) string {
	if file == "" {
		return "image"
	}
	return file
}

// Coverage accounts for every byte of the image, by what happened to it.
// Each byte counts once, for the innermost chunk of the image itself that
// holds it: an embedded chunk (a gzip inside a carved ELF) takes its bytes
// from its parent. Chunks found in extracted files do not count (their bytes
// are not the image's); their gaps are in Report.Gaps. Extracted + Carved +
// Identified + Padding + Unknown = Size.
type Coverage struct {
	Size int64 `json:"size"`
	// Extracted bytes are in chunks whose Extract wrote entries.
	Extracted int64 `json:"extracted"`
	// Carved bytes are in carve-only chunks (ELF, keys, certificates) cut
	// out to their own file.
	Carved int64 `json:"carved"`
	// Identified bytes are in chunks that were identified but not opened.
	Identified int64 `json:"identified"`
	// Padding bytes are runs of 0x00 or 0xff no format claimed.
	Padding int64 `json:"padding"`
	// Unknown bytes are in no chunk and not padding (Report.Unknown has
	// each region with its entropy).
	Unknown int64 `json:"unknown"`
	// Examined is the share of the image extracted, carved or padding, from
	// 0 to 1.
	Examined float64 `json:"examined"`
}

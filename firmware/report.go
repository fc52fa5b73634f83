package firmware

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
	// Children are the chunks found in the files extracted from this chunk.
	Children []*ChunkReport `json:"children,omitempty"`
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
	Image    ImageInfo      `json:"image"`
	Chunks   []*ChunkReport `json:"chunks"`
	Unknown  []Region       `json:"unknown"`
	Warnings []string       `json:"warnings"`
	Limits   Limits         `json:"limits"`
	Stats    Stats          `json:"stats"`
}

// Report is the result of Unpack, written as report.json in the output folder.
type Report struct {
	Image    ImageInfo       `json:"image"`
	Chunks   []*ChunkReport  `json:"chunks"`
	Unknown  []Region        `json:"unknown"`
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

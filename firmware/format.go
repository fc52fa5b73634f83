// Package firmware carves and unpacks firmware images: vendor packages, flash
// dumps, archives, compressed streams and filesystems, natively and within hard
// limits. Formats are declared as Format values in one ordered list (package
// firmware/formats); the engine scans an image for their magics, identifies
// chunks, extracts them through a Sink that keeps every write inside the output
// folder, and recurses into what it extracted.
package firmware

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// Kind groups formats for reports and docs.
type Kind string

// Format kinds.
const (
	KindCompression Kind = "compression" // one stream in, one stream out (gzip, xz, ...)
	KindArchive     Kind = "archive"     // many files (zip, tar, cpio, 7z, ar)
	KindFilesystem  Kind = "filesystem"  // a filesystem image (squashfs, ext4, ...)
	KindContainer   Kind = "container"   // boot/partition wrappers (uImage, FIT, TRX, sparse, ...)
	KindVendor      Kind = "vendor"      // camera vendor packages (Hikvision, Dahua, XiongMai)
	KindCarve       Kind = "carve"       // identified and cut out, not extracted (ELF, keys, certificates)
)

// Confidence says how sure an identification is.
type Confidence string

// Confidence levels.
const (
	ConfidenceLow    Confidence = "low"    // magic matched, little else checked
	ConfidenceMedium Confidence = "medium" // header fields are consistent
	ConfidenceHigh   Confidence = "high"   // header checksum or structure fully verified
)

// Magic is a byte pattern that marks a candidate chunk.
type Magic struct {
	// Offset is where Bytes sit relative to the chunk start (0 for most formats;
	// 0x438 for the ext2/3/4 superblock magic, for example).
	Offset int64
	Bytes  []byte
}

// Format declares one file format. Declarations live in one ordered slice
// (firmware/formats.All); there is no init() registration.
type Format struct {
	// Name is the stable identifier used in report.json, --help and docs
	// (lower case, e.g. "squashfs", "uimage", "hikvision-dav").
	Name string
	Kind Kind
	// Doc is a short paragraph for docs/formats.md: what it is, where it is found,
	// what is extracted.
	Doc string
	// Magics mark candidate chunk starts. A format with no magics is only tried
	// on whole files (offset 0) when the engine recurses.
	Magics []Magic
	// Identify checks the candidate chunk that starts at off in r (whose total
	// size is size) and returns its extent and description. It must bounds-check
	// everything it reads, never read past size, and return an error wrapping
	// ErrNotFormat when the bytes are not this format after all. Any other
	// error says the header is this format's but the chunk cannot be used (cut
	// short, corrupt): the engine reports the candidate as a failed Gap, with
	// the error as its reason, instead of dropping it silently.
	Identify func(r io.ReaderAt, off, size int64) (*Chunk, error)
	// Opaque marks carve-only formats whose bytes hold nothing else to find
	// (keys, certificates: a certificate's public key is not a second
	// chunk). The engine looks for chunks embedded in the other carve-only
	// formats (an ELF may carry a gzip'd initramfs).
	Opaque bool
	// Extract unpacks the chunk's content into out. src covers exactly the chunk
	// (src.Size() == c.Size). Nil for carve-only formats. It returns early with
	// ctx.Err() when ctx is done, and with the Sink's error (such as ErrLimit)
	// when a write is refused.
	Extract func(ctx context.Context, src *io.SectionReader, c *Chunk, out Sink) error
}

// Action is what the engine does with a format's chunks, derived from its
// declaration (Format.Action).
type Action string

// Actions.
const (
	ActionExtract  Action = "extracts"   // Extract is set: the content is unpacked
	ActionCarve    Action = "carves"     // KindCarve without Extract: the bytes are cut out to a file
	ActionIdentify Action = "identifies" // neither: the chunk is mapped, its content is not opened
)

// Action says whether the format's chunks are extracted, carved or only
// identified.
func (f *Format) Action() Action {
	switch {
	case f.Extract != nil:
		return ActionExtract
	case f.Kind == KindCarve:
		return ActionCarve
	}
	return ActionIdentify
}

// Chunk is an identified region of an image.
type Chunk struct {
	Offset     int64      `json:"offset"`
	Size       int64      `json:"size"`
	Format     string     `json:"format"`
	Desc       string     `json:"description"`
	Confidence Confidence `json:"confidence"`
	// Encrypted is true for chunks whose content cannot be read without a key
	// (Hikvision 03KH/HKSU, signed-and-encrypted vendor images). Their readable
	// header fields go in Meta.
	Encrypted bool `json:"encrypted,omitempty"`
	// Meta holds format-specific readable fields (header fields, a flash map,
	// version strings). Values must marshal to JSON.
	Meta map[string]any `json:"meta,omitempty"`
	// Warnings about the chunk itself (truncated, bad checksum, ...).
	Warnings []string `json:"warnings,omitempty"`
}

// EntryType is the type of an extracted entry.
type EntryType uint8

// Entry types, as in archive/tar.
const (
	TypeFile EntryType = iota
	TypeDir
	TypeSymlink
	TypeHardlink
	TypeCharDevice
	TypeBlockDevice
	TypeFIFO
	TypeSocket
)

// Header describes one entry an extractor hands to a Sink, as it was in the
// image. The Sink decides what is safe to create; the original values go to the
// manifest in report.json.
type Header struct {
	// Name is the entry's path inside the chunk, slash-separated, as found in
	// the image (it may be absolute, contain "..", or be otherwise hostile: the
	// Sink neutralises and reports it).
	Name     string
	Type     EntryType
	Mode     fs.FileMode // permission bits plus fs.ModeSetuid/ModeSetgid/ModeSticky as in the image
	UID, GID int
	ModTime  time.Time
	// Linkname is the target of a symlink or hard link, as in the image.
	Linkname string
	// Devmajor and Devminor are set for device nodes.
	Devmajor, Devminor uint32
	// Size is the content size when known in advance, or -1.
	Size int64
}

// Sink receives the entries of an extraction. The engine's implementation
// writes through an os.Root below the output folder, enforces the Limits and
// records every entry in the manifest.
type Sink interface {
	// Add creates one entry. For TypeFile, the content is read from r (which
	// may be nil for an empty file); r is ignored for other types.
	Add(h *Header, r io.Reader) error
	// Warn records a problem with the chunk's content that did not stop the
	// extraction (a bad CRC, a truncated entry, ...).
	Warn(msg string)
}

// Errors shared by formats and the engine.
var (
	// ErrNotFormat is returned (wrapped) by Identify when the bytes are not the format.
	ErrNotFormat = errors.New("firmware: not this format")
	// ErrLimit is returned (wrapped) by a Sink when a limit (bytes, files,
	// expansion ratio, depth, time) is reached.
	ErrLimit = errors.New("firmware: limit reached")
	// ErrTruncated is returned (wrapped) when a chunk ends before its structure says it should.
	ErrTruncated = errors.New("firmware: truncated")
)

// FormatError is a parse error at a byte offset, like debug/elf.FormatError.
type FormatError struct {
	Format string // format name
	Off    int64  // offset of the offending data, relative to the chunk start
	Msg    string
	Err    error // optional underlying error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("%s: %s at offset %#x", e.Format, e.Msg, e.Off)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

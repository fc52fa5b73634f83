// Package nfcapd reads the flow files nfdump's nfcapd (and nfpcapd, sfcapd,
// nfdump -w) write, file layout 2 with V3 records (nfdump 1.7), and hands
// each flow to the egress engine as an egress.FlowRecord, the same way the
// NetFlow collector does.
//
// A file is untrusted input: every block is bounded (MaxBlockSize, before and
// after decompression), every record and element length is checked against
// what is left of its block, and whatever is not a flow is counted with its
// reason (Stats): exporter and statistics records read as metadata, records
// skipped as not decoded. Errors name the file and the byte offset.
//
// Compressed blocks: LZO (nfcapd -z), bzip2 (-j), LZ4 (-y) and zstd (nfdump
// 1.7.2 and later).
package nfcapd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cordon-vms/cordon/egress"
)

// File layout 2 header and block constants (nfdump's nffileV2.h).
const (
	magic           = 0xA50C
	layoutVersion1  = 1
	layoutVersion2  = 2
	fileHeaderSize  = 40
	blockHeaderSize = 12

	compNone = 0
	compLZO  = 1
	compBZ2  = 2
	compLZ4  = 3
	compZSTD = 4

	blockType2 = 2 // layout 1 blocks
	blockType3 = 3 // records, each with its own header
	blockType4 = 4 // an array of one record type

	flagBlockUncompressed = 0x1
)

// DefaultMaxBlockSize bounds a data block, compressed or not: nfdump's own
// buffer is 5 MiB (BUFFSIZE), so its blocks never exceed it.
const DefaultMaxBlockSize = 5 << 20

// FormatError is a file that is not a readable nfcapd file at Offset.
type FormatError struct {
	File   string
	Offset int64 // byte offset in the file
	Msg    string
	Err    error // ErrTruncated for a file that ends inside a block, else nil
}

func (e *FormatError) Unwrap() error { return e.Err }

func (e *FormatError) Error() string {
	return fmt.Sprintf("nfcapd: %s: byte %d: %s", e.File, e.Offset, e.Msg)
}

// ErrTruncated is wrapped by the FormatError of a file that ends inside a
// block (a file still being written, or cut short); the records before the
// cut were handed on.
var ErrTruncated = errors.New("file truncated")

// Stats counts what was read. The maps are keyed by reason.
type Stats struct {
	Files   int    // files read
	Blocks  uint64 // data blocks read
	Records uint64 // records of every type
	Flows   uint64 // flow records handed on
	// Metadata counts records that carry no flow and were read as such:
	// exporter-info, exporter-stat, sampler, ident, stat, nbar, ifname,
	// vrfname.
	Metadata map[string]uint64
	// NotDecoded counts records that were not turned into flows, by reason:
	// block-type (an array block), legacy-record (layout 1 common record),
	// unknown-type, no-address (a V3 record without IPv4/IPv6 element),
	// no-flow (without the generic flow element), bad-element (an
	// element whose length does not fit its type or its record).
	NotDecoded map[string]uint64
	// SkippedFiles counts files of a directory that were not read, by
	// reason (being-written: nfcapd.current.*, not-nfcapd: other names).
	SkippedFiles map[string]uint64
}

func (s *Stats) add(m *map[string]uint64, reason string, n uint64) {
	if *m == nil {
		*m = map[string]uint64{}
	}
	(*m)[reason] += n
}

// String is a one-line summary for --stats.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nfcapd: %d files, %d blocks, %d records, %d flows", s.Files, s.Blocks, s.Records, s.Flows)
	for _, part := range []struct {
		name string
		m    map[string]uint64
	}{{"metadata", s.Metadata}, {"not decoded", s.NotDecoded}, {"files skipped", s.SkippedFiles}} {
		if len(part.m) == 0 {
			continue
		}
		fmt.Fprintf(&b, "; %s:", part.name)
		for i, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range part.m {
				if !yield(k) {
					return
				}
			}
		}) {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %d %s", part.m[k], k)
		}
	}
	return b.String()
}

// Reader reads nfcapd files. The zero value is ready to use.
//
//	r := &nfcapd.Reader{Logger: l}
//	err := r.Read(ctx, "/var/cache/nfdump", engine.HandleFlow)
type Reader struct {
	// MaxBlockSize bounds a data block before and after decompression. It
	// defaults to DefaultMaxBlockSize (5 MiB).
	MaxBlockSize int
	// Logger receives one line per skipped file of a directory. It defaults
	// to a logger that discards.
	Logger *slog.Logger

	stats Stats
	buf   []byte // decompressed block
	raw   []byte // block as read
}

// Stats returns what was read so far.
func (r *Reader) Stats() Stats { return r.stats }

func (r *Reader) maxBlock() int {
	if r.MaxBlockSize > 0 {
		return r.MaxBlockSize
	}
	return DefaultMaxBlockSize
}

func (r *Reader) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Read reads path, an nfcapd file or a directory of them, and calls handle
// for each flow. A directory's files named nfcapd.* are read in name order
// (nfcapd names them by time), recursively (nfcapd -S subdirectories); the
// file nfcapd is still writing (nfcapd.current.*) is skipped and counted.
// A file of a directory that cannot be read to its end (cut short,
// corrupt) is logged and the next one read: the error, at the end, names
// every such file. A single file stops at its first error, after handing
// on the flows before it.
func (r *Reader) Read(ctx context.Context, path string, handle func(context.Context, egress.FlowRecord)) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("nfcapd: %w", err)
	}
	if !st.IsDir() {
		return r.ReadFile(ctx, path, handle)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		switch {
		case strings.HasPrefix(name, "nfcapd.current."):
			r.stats.add(&r.stats.SkippedFiles, "being-written", 1)
			r.logger().Info("nfcapd: skipping the file nfcapd is writing", "file", p)
		case strings.HasPrefix(name, "nfcapd."):
			files = append(files, p)
		default:
			r.stats.add(&r.stats.SkippedFiles, "not-nfcapd", 1)
			r.logger().Debug("nfcapd: skipping a file not named nfcapd.*", "file", p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nfcapd: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("nfcapd: %s: no nfcapd.* files in the directory", path)
	}
	slices.SortFunc(files, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
	var errs []error
	for _, f := range files {
		err := r.ReadFile(ctx, f, handle)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return errors.Join(append(errs, err)...)
		}
		r.logger().Warn("nfcapd: a file could not be read to its end; reading the next one", "error", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ReadFile reads one nfcapd file.
func (r *Reader) ReadFile(ctx context.Context, path string, handle func(context.Context, egress.FlowRecord)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("nfcapd: %w", err)
	}
	defer f.Close()
	return r.ReadFrom(ctx, path, f, handle)
}

// ReadFrom reads one nfcapd file from rd; name is used in errors.
func (r *Reader) ReadFrom(ctx context.Context, name string, rd io.Reader, handle func(context.Context, egress.FlowRecord)) error {
	br := bufio.NewReaderSize(rd, 1<<16)
	var hdr [fileHeaderSize]byte
	if n, err := io.ReadFull(br, hdr[:]); err != nil {
		return &FormatError{File: name, Offset: int64(n), Msg: fmt.Sprintf("too short for an nfcapd file header (%d of %d bytes)", n, fileHeaderSize)}
	}
	le := binary.LittleEndian
	switch m := le.Uint16(hdr[0:]); m {
	case magic:
	case 0x0CA5:
		return &FormatError{File: name, Msg: "a big-endian nfcapd file (written on another architecture): not supported"}
	default:
		return &FormatError{File: name, Msg: fmt.Sprintf("not an nfcapd file (magic %#04x, want %#04x)", m, magic)}
	}
	switch v := le.Uint16(hdr[2:]); v {
	case layoutVersion2:
	case layoutVersion1:
		return &FormatError{File: name, Offset: 2, Msg: "file layout 1 (nfdump 1.6): convert it with nfdump 1.7: nfdump -r FILE -w NEWFILE"}
	default:
		return &FormatError{File: name, Offset: 2, Msg: fmt.Sprintf("file layout %d is not supported (layout 2, nfdump 1.7, is)", v)}
	}
	comp := hdr[16]
	if comp > compZSTD {
		return &FormatError{File: name, Offset: 16, Msg: fmt.Sprintf("unknown compression %d", comp)}
	}
	if enc := hdr[17]; enc != 0 {
		return &FormatError{File: name, Offset: 17, Msg: fmt.Sprintf("encrypted file (encryption %d): not supported", enc)}
	}
	r.stats.Files++
	off := int64(fileHeaderSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var bh [blockHeaderSize]byte
		n, err := io.ReadFull(br, bh[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &FormatError{File: name, Offset: off + int64(n), Msg: fmt.Sprintf("%v: the file ends inside a block header (the flows before it were read)", ErrTruncated), Err: ErrTruncated}
		}
		numRecords := le.Uint32(bh[0:])
		size := le.Uint32(bh[4:])
		btype := le.Uint16(bh[8:])
		flags := le.Uint16(bh[10:])
		if uint64(size) > uint64(r.maxBlock()) {
			return &FormatError{File: name, Offset: off + 4, Msg: fmt.Sprintf("block of %d bytes is over the %d-byte limit", size, r.maxBlock())}
		}
		if cap(r.raw) < int(size) {
			r.raw = make([]byte, size)
		}
		raw := r.raw[:size]
		if n, err := io.ReadFull(br, raw); err != nil {
			return &FormatError{File: name, Offset: off + blockHeaderSize + int64(n), Msg: fmt.Sprintf("%v: the file ends inside a block of %d bytes (the flows before it were read)", ErrTruncated, size), Err: ErrTruncated}
		}
		dataOff := off + blockHeaderSize
		off = dataOff + int64(size)
		r.stats.Blocks++
		data := raw
		if comp != compNone && flags&flagBlockUncompressed == 0 {
			data, err = r.decompress(comp, raw)
			if err != nil {
				return &FormatError{File: name, Offset: dataOff, Msg: err.Error()}
			}
		}
		if btype != blockType3 {
			r.stats.Records += uint64(numRecords)
			r.stats.add(&r.stats.NotDecoded, "block-type", uint64(numRecords))
			continue
		}
		if err := r.records(ctx, name, dataOff, comp != compNone && flags&flagBlockUncompressed == 0, data, numRecords, handle); err != nil {
			return err
		}
	}
}

// records walks the records of a type 3 block. at is the block data's file
// offset, for errors (offsets inside a compressed block are given as the
// block's and the offset in the decompressed data).
func (r *Reader) records(ctx context.Context, name string, at int64, compressed bool, data []byte, num uint32, handle func(context.Context, egress.FlowRecord)) error {
	le := binary.LittleEndian
	where := func(o int) int64 { return at + int64(o) }
	msg := func(o int, s string) error {
		if compressed {
			return &FormatError{File: name, Offset: at, Msg: fmt.Sprintf("in the compressed block, at byte %d of its %d decompressed bytes: %s", o, len(data), s)}
		}
		return &FormatError{File: name, Offset: where(o), Msg: s}
	}
	o := 0
	for i := uint32(0); i < num; i++ {
		if len(data)-o < 4 {
			return msg(o, fmt.Sprintf("record %d of %d: the block ends (%d bytes left)", i+1, num, len(data)-o))
		}
		typ := le.Uint16(data[o:])
		size := int(le.Uint16(data[o+2:]))
		if size < 4 || size > len(data)-o {
			return msg(o, fmt.Sprintf("record %d of %d (type %d): size %d does not fit the %d bytes left in the block", i+1, num, typ, size, len(data)-o))
		}
		rec := data[o : o+size]
		o += size
		r.stats.Records++
		switch typ {
		case typeV3:
			fr, rev, reason := decodeV3(rec)
			if reason != "" {
				r.stats.add(&r.stats.NotDecoded, reason, 1)
				continue
			}
			r.stats.Flows++
			handle(ctx, fr)
			if rev.Packets > 0 || rev.Bytes > 0 {
				handle(ctx, rev)
			}
		case typeCommonV2, 1, 5, 6: // layout 1 and 1.6 common records
			r.stats.add(&r.stats.NotDecoded, "legacy-record", 1)
		default:
			if n, ok := metadataTypes[typ]; ok {
				r.stats.add(&r.stats.Metadata, n, 1)
			} else {
				r.stats.add(&r.stats.NotDecoded, "unknown-type", 1)
			}
		}
	}
	return nil
}

// Package ar reads Unix ar archives ("!<arch>\n"): Debian packages, static
// libraries and the occasional firmware bundle. GNU long names ("//" table,
// "/N" references) and BSD long names ("#1/N") are resolved; symbol tables
// are skipped.
package ar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/firmware"
)

const (
	formatName = "ar"
	magic      = "!<arch>\n"
	hdrSize    = 60
	// maxLongNames bounds the GNU long-name table read into memory.
	maxLongNames = 1 << 20
	// maxEntries bounds the header walk.
	maxEntries = 1 << 20
)

// Format declares the ar archive.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindArchive,
	Doc: "Unix ar archive (!<arch>): Debian packages, static libraries. Members are extracted with their " +
		"mode, owner and time; GNU and BSD long names are resolved, symbol tables skipped.",
	Magics:   []firmware.Magic{{Bytes: []byte(magic)}},
	Identify: identify,
	Extract:  extract,
}

// member is one archive member.
type member struct {
	name     string
	mode     fs.FileMode
	uid, gid int
	mtime    time.Time
	dataOff  int64 // content start, relative to the archive
	size     int64 // content size (after a BSD long name)
	next     int64 // next header, relative to the archive
	skip     bool  // symbol table or long-name table
}

func num(b []byte, base int) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, base, 64)
}

// walk calls fn for each member of the archive in r (size bytes) and returns
// the archive's end.
func walk(r io.ReaderAt, size int64, fn func(m *member) error) (end int64, count int, warn string, err error) {
	pos := int64(len(magic))
	var longNames []byte
	var h [hdrSize]byte
	for count < maxEntries {
		if pos+hdrSize > size {
			return pos, count, warn, nil // whatever follows is not a member
		}
		if _, err := r.ReadAt(h[:], pos); err != nil {
			return pos, count, "", err
		}
		m, bad := parseHeader(&h, pos)
		if bad != "" {
			if count == 0 {
				return 0, 0, "", &firmware.FormatError{Format: formatName, Off: pos, Msg: bad, Err: firmware.ErrNotFormat}
			}
			return pos, count, "", nil // the archive ended; something else follows
		}
		if m.dataOff+m.size > size {
			warn = fmt.Sprintf("member at %#x: %d bytes, %d present", pos, m.size, size-m.dataOff)
			m.size = size - m.dataOff
			m.next = size
		}
		note, stop, err := m.resolveName(r, strings.TrimRight(string(h[:16]), " "), pos, &longNames)
		switch {
		case err != nil:
			return pos, count, "", err
		case stop:
			return pos, count, note, nil
		case note != "":
			warn = note
		}
		if !m.skip {
			count++
		}
		if err := fn(m); err != nil {
			return pos, count, warn, err
		}
		pos = m.next
	}
	return pos, count, fmt.Sprintf("stopped after %d members", maxEntries), nil
}

// parseHeader decodes the member header h at pos; bad says why it is not
// one.
func parseHeader(h *[hdrSize]byte, pos int64) (m *member, bad string) {
	if string(h[58:60]) != "`\n" {
		return nil, "bad member header"
	}
	sz, err1 := num(h[48:58], 10)
	mt, err2 := num(h[16:28], 10)
	uid, err3 := num(h[28:34], 10)
	gid, err4 := num(h[34:40], 10)
	mode, err5 := num(h[40:48], 8)
	if err := firstErr(err1, err2, err3, err4, err5); err != nil || sz < 0 {
		return nil, "bad member header fields"
	}
	m = &member{
		mode: fs.FileMode(mode & 0o777), uid: int(uid), gid: int(gid),
		mtime:   time.Unix(mt, 0).UTC(),
		dataOff: pos + hdrSize, size: sz,
	}
	if mode&0o4000 != 0 {
		m.mode |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m.mode |= fs.ModeSetgid
	}
	m.next = m.dataOff + sz + sz%2
	return m, ""
}

// resolveName sets the member's name from the header's name field: symbol
// tables are skipped, the GNU long-name table is read into longNames, GNU
// (/N) and BSD (#1/N) long names resolved. note is a warning; with stop,
// the walk ends there.
func (m *member) resolveName(r io.ReaderAt, name string, pos int64, longNames *[]byte) (note string, stop bool, err error) {
	switch {
	case name == "/" || name == "/SYM64/" || name == "__.SYMDEF" || name == "__.SYMDEF SORTED":
		m.skip = true
	case name == "//":
		m.skip = true
		if m.size <= maxLongNames {
			*longNames = make([]byte, m.size)
			if _, err := r.ReadAt(*longNames, m.dataOff); err != nil {
				return "", false, err
			}
		}
	case strings.HasPrefix(name, "#1/"):
		n, err := strconv.Atoi(name[3:])
		if err != nil || n < 0 || int64(n) > m.size || n > 4096 {
			return fmt.Sprintf("bad BSD long name at %#x", pos), true, nil
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, m.dataOff); err != nil {
			return "", false, err
		}
		m.name = string(bytes.TrimRight(b, "\x00"))
		m.dataOff += int64(n)
		m.size -= int64(n)
	case strings.HasPrefix(name, "/") && len(name) > 1:
		i, err := strconv.Atoi(name[1:])
		if err != nil || i < 0 || i >= len(*longNames) {
			m.name = name
			return fmt.Sprintf("long name %s not in the table", name), false, nil
		}
		s := (*longNames)[i:]
		if j := bytes.IndexByte(s, '\n'); j >= 0 {
			s = s[:j]
		}
		m.name = strings.TrimSuffix(string(s), "/")
	default:
		m.name = strings.TrimSuffix(name, "/") // GNU terminates short names with '/'
	}
	return "", false, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if size-off < int64(len(magic)) {
		return nil, fmt.Errorf("ar: %w", firmware.ErrNotFormat)
	}
	var m [8]byte
	if _, err := r.ReadAt(m[:], off); err != nil {
		return nil, fmt.Errorf("ar: %w", err)
	}
	if string(m[:]) != magic {
		return nil, fmt.Errorf("ar: magic: %w", firmware.ErrNotFormat)
	}
	sr := io.NewSectionReader(r, off, size-off)
	var names []string
	end, count, warn, err := walk(sr, sr.Size(), func(m *member) error {
		if !m.skip && len(names) < 16 {
			names = append(names, m.name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ar: %w", err)
	}
	if count == 0 && end == 0 {
		return nil, fmt.Errorf("ar: no members: %w", firmware.ErrNotFormat)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       max(end, int64(len(magic))),
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Meta:       map[string]any{"members": count},
	}
	if warn != "" {
		c.Warnings = append(c.Warnings, warn)
		c.Confidence = firmware.ConfidenceMedium
	}
	if len(names) >= 1 && names[0] == "debian-binary" {
		c.Meta["debian_package"] = true
	}
	c.Desc = fmt.Sprintf("ar archive, %d members", count)
	return c, nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	_, _, warn, err := walk(src, src.Size(), func(m *member) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if m.skip {
			return nil
		}
		h := &firmware.Header{Name: m.name, Type: firmware.TypeFile, Mode: m.mode, UID: m.uid, GID: m.gid, ModTime: m.mtime, Size: m.size}
		if err := out.Add(h, io.NewSectionReader(src, m.dataOff, m.size)); err != nil {
			return fmt.Errorf("ar: %s: %w", m.name, err)
		}
		return nil
	})
	if warn != "" {
		out.Warn("ar: " + warn)
	}
	return err
}

// Package tar reads tar archives (ustar, GNU and pax, including GNU sparse
// files) with archive/tar. The extent is found by walking the headers (file
// data is skipped by seeking, never read) up to the end-of-archive blocks;
// entries reach the Sink with their original names, modes, owners, link
// targets and device numbers.
package tar

import (
	stdtar "archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/internal/fmtutil"
)

const (
	formatName = "tar"
	block      = 512
	// maxEntries bounds the header walk in Identify.
	maxEntries = 1 << 20
)

// Format declares the tar archive.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindArchive,
	Doc: "tar archive in ustar, GNU or pax form (magic \"ustar\" at offset 257, header checksum verified). " +
		"Files, directories, symlinks, hard links, device nodes and fifos are extracted with their original " +
		"mode, owner, link target and device numbers recorded in the manifest; GNU sparse files are expanded.",
	Magics: []firmware.Magic{
		{Offset: 257, Bytes: []byte("ustar\x0000")},
		{Offset: 257, Bytes: []byte("ustar  \x00")},
	},
	Identify: identify,
	Extract:  extract,
}

// checksumOK verifies a header block's checksum (unsigned, or signed as some
// old tars wrote it).
func checksumOK(b []byte) bool {
	field := bytes.TrimRight(bytes.TrimLeft(b[148:156], " \x00"), " \x00")
	want, err := strconv.ParseUint(string(field), 8, 32)
	if err != nil {
		return false
	}
	var u, s int64
	for i, c := range b[:block] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	return int64(want) == u || int64(want) == s
}

// tracker is an io.ReadSeeker over the archive that remembers the furthest
// position reached, so the walk can tell where the archive ended.
type tracker struct {
	r   *io.SectionReader
	pos int64
}

func (t *tracker) Read(p []byte) (int, error) {
	n, err := t.r.ReadAt(p, t.pos)
	t.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (t *tracker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += t.pos
	case io.SeekEnd:
		off += t.r.Size()
	}
	if off < 0 {
		return 0, errors.New("tar: negative seek")
	}
	t.pos = off
	return off, nil
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	if size-off < block {
		return nil, fmt.Errorf("tar: %d bytes left: %w", size-off, firmware.ErrNotFormat)
	}
	var h [block]byte
	if _, err := r.ReadAt(h[:], off); err != nil {
		return nil, fmt.Errorf("tar: read header: %w", err)
	}
	if !checksumOK(h[:]) {
		return nil, fmt.Errorf("tar: header checksum: %w", firmware.ErrNotFormat)
	}
	t := &tracker{r: io.NewSectionReader(r, off, size-off)}
	tr := stdtar.NewReader(t)
	c := &firmware.Chunk{Offset: off, Format: formatName, Confidence: firmware.ConfidenceHigh}
	var count int
	var end int64
	formats := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			end = t.pos
			break
		}
		if err != nil && !errors.Is(err, stdtar.ErrInsecurePath) {
			if count == 0 {
				return nil, fmt.Errorf("tar: %w: %w", err, firmware.ErrNotFormat)
			}
			c.Warnings = append(c.Warnings, fmt.Sprintf("truncated or corrupt after %d entries: %v", count, err))
			c.Confidence = firmware.ConfidenceMedium
			end = min(t.pos, t.r.Size())
			break
		}
		count++
		formats[formatString(hdr.Format)] = true
		if count >= maxEntries {
			end = t.pos
			c.Warnings = append(c.Warnings, fmt.Sprintf("stopped after %d entries", count))
			break
		}
	}
	end = min(end, t.r.Size())
	// tar pads the archive to a record (10240 bytes by default) with zeros.
	end = fmtutil.ZeroPadEnd(t.r, end, 20*block)
	c.Size = end
	var fl []string
	for _, f := range []string{"ustar", "gnu", "pax", "v7"} {
		if formats[f] {
			fl = append(fl, f)
		}
	}
	c.Meta = map[string]any{"entries": count, "formats": fl}
	c.Desc = fmt.Sprintf("tar archive %v, %d entries", fl, count)
	return c, nil
}

func formatString(f stdtar.Format) string {
	switch {
	case f&stdtar.FormatPAX != 0:
		return "pax"
	case f&stdtar.FormatGNU != 0:
		return "gnu"
	case f&stdtar.FormatUSTAR != 0:
		return "ustar"
	}
	return "v7"
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	tr := stdtar.NewReader(&tracker{r: src})
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, stdtar.ErrInsecurePath) {
			out.Warn(fmt.Sprintf("tar: %v", err))
			return nil
		}
		h := &firmware.Header{
			Name:     hdr.Name,
			UID:      hdr.Uid,
			GID:      hdr.Gid,
			ModTime:  hdr.ModTime,
			Linkname: hdr.Linkname,
			Size:     -1,
		}
		mode := hdr.FileInfo().Mode()
		h.Mode = mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		var r io.Reader
		switch hdr.Typeflag {
		case stdtar.TypeReg, stdtar.TypeGNUSparse, stdtar.TypeCont:
			h.Type, h.Size, r = firmware.TypeFile, hdr.Size, tr
		case stdtar.TypeDir:
			h.Type = firmware.TypeDir
		case stdtar.TypeSymlink:
			h.Type = firmware.TypeSymlink
		case stdtar.TypeLink:
			h.Type = firmware.TypeHardlink
		case stdtar.TypeChar:
			h.Type, h.Devmajor, h.Devminor = firmware.TypeCharDevice, uint32(hdr.Devmajor), uint32(hdr.Devminor)
		case stdtar.TypeBlock:
			h.Type, h.Devmajor, h.Devminor = firmware.TypeBlockDevice, uint32(hdr.Devmajor), uint32(hdr.Devminor)
		case stdtar.TypeFifo:
			h.Type = firmware.TypeFIFO
		default:
			out.Warn(fmt.Sprintf("tar: %s: entry type %q skipped", hdr.Name, hdr.Typeflag))
			continue
		}
		var re *fmtutil.ReadErr
		if r != nil {
			re = &fmtutil.ReadErr{R: r}
			r = re
		}
		if err := out.Add(h, r); err != nil {
			if re != nil && re.Err != nil && !errors.Is(err, firmware.ErrLimit) {
				out.Warn(fmt.Sprintf("tar: %s: %v", hdr.Name, re.Err))
				return nil
			}
			return fmt.Errorf("tar: %s: %w", hdr.Name, err)
		}
	}
}

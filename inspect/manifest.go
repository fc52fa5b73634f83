package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"

	"github.com/cordon-vms/cordon/internal/unixmode"
	"github.com/cordon-vms/cordon/internal/unpackreport"
)

const (
	manifestName     = unpackreport.FileName // written by the firmware unpacker at the tree's root
	maxManifestBytes = 256 << 20
)

// The report.json schema, shared with the firmware unpacker.
type (
	// ManifestEntry is one entry of the unpack manifest: the original
	// metadata of what the unpacker extracted (the files on disk never carry
	// setuid bits or device nodes).
	ManifestEntry = unpackreport.ManifestEntry
	// Gap is content the unpacker found but did not open (identified but
	// not extracted, or whose data failed to decode).
	Gap = unpackreport.Gap
	// Coverage is the unpacker's account of the image's bytes.
	Coverage = unpackreport.Coverage
)

// unpackReport is what inspect reads of the unpacker's report.json.
type unpackReport struct {
	Manifest []ManifestEntry `json:"manifest"`
	Gaps     []Gap           `json:"gaps"`
	Coverage *Coverage       `json:"coverage"`
	Chunks   []*chunkInfo    `json:"chunks"`
}

// readManifest returns report.json at the root of fsys, or nil when there
// is none.
func readManifest(fsys fs.FS) (*unpackReport, error) {
	f, err := fsys.Open(manifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("inspect: %s is larger than %d bytes", manifestName, maxManifestBytes)
	}
	var doc unpackReport
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("inspect: %s: %w", manifestName, err)
	}
	if doc.Manifest == nil {
		return nil, nil
	}
	return &doc, nil
}

// gapFinding reports content the unpacker never looked into: a lab must
// not read its absence of findings as clean.
func (c *collector) gapFinding(g Gap) {
	where := "image"
	if g.File != "" {
		where = g.File
	}
	what := "identified but not extracted"
	if g.Status == unpackreport.GapFailed {
		what = "found but failed to decode or extract"
	}
	ev := fmt.Sprintf("%s at %s offset %#x", g.Format, where, g.Offset)
	if g.Size > 0 {
		ev += fmt.Sprintf(" (%d bytes)", g.Size)
	}
	c.add(Finding{Rule: RuleUnexamined, Severity: SeverityMedium, Path: g.File,
		Evidence: ev + ": " + what + ": " + g.Reason,
		Detail:   "its content was not inspected and may hold anything"})
}

// manifestFindings reports setuid/setgid and world-writable entries of the
// unpack manifest.
func (c *collector) manifestFindings(e ManifestEntry) {
	m, err := strconv.ParseUint(e.Mode, 8, 32)
	if err != nil {
		return
	}
	p := e.Path
	if p == "" {
		p = e.OrigName
	}
	c.modeBits(p, e.Type, uint32(m), e.OrigName)
}

// modeFindings is manifestFindings for trees without a manifest: it uses the
// modes on disk.
func (c *collector) modeFindings(p string, m fs.FileMode, orig string) {
	typ := "file"
	switch {
	case m.IsDir():
		typ = "dir"
	case m&fs.ModeSymlink != 0:
		typ = "symlink"
	case !m.IsRegular():
		return
	}
	c.modeBits(p, typ, unixmode.ToUnix(m), orig)
}

func (c *collector) modeBits(p, typ string, m uint32, orig string) {
	detail := ""
	if orig != "" && orig != p {
		detail = "named " + orig + " in the image"
	}
	if typ == "file" && m&0o6000 != 0 {
		what := "setuid"
		if m&0o4000 == 0 {
			what = "setgid"
		} else if m&0o2000 != 0 {
			what = "setuid+setgid"
		}
		c.add(Finding{Rule: RuleSetuid, Severity: SeverityMedium, Path: p,
			Evidence: fmt.Sprintf("%s, mode %04o", what, m), Detail: detail})
	}
	if m&0o002 != 0 && (typ == "file" || typ == "dir" && m&0o1000 == 0) {
		c.add(Finding{Rule: RuleWorldWritable, Severity: SeverityMedium, Path: p,
			Evidence: fmt.Sprintf("world-writable %s, mode %04o", typ, m), Detail: detail})
	}
}

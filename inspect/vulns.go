package inspect

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// Vuln is a known vulnerability attached to a component from an OSV feed.
type Vuln struct {
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	Severity string   `json:"severity,omitempty"` // from database_specific.severity when given
	Fixed    string   `json:"fixed,omitempty"`    // the first fixed version, when the range names one
}

func (v Vuln) severity() Severity {
	switch strings.ToLower(v.Severity) {
	case "critical":
		return SeverityCritical
	case "moderate", "medium":
		return SeverityMedium
	case "low":
		return SeverityLow
	}
	return SeverityHigh
}

// VulnDB is an offline OSV feed, indexed by lower-case package name.
type VulnDB struct {
	byName map[string][]osvEntry
	byPURL map[string][]osvEntry // by package URL without version
	count  int
}

// Len returns the number of vulnerabilities loaded.
func (db *VulnDB) Len() int { return db.count }

type osvEntry struct {
	ID               string   `json:"id"`
	Aliases          []string `json:"aliases"`
	Summary          string   `json:"summary"`
	Details          string   `json:"details"`
	DatabaseSpecific struct {
		Severity string `json:"severity"`
	} `json:"database_specific"`
	Affected []osvAffected `json:"affected"`
}

// osvAffected is one affected package of an OSV entry.
type osvAffected struct {
	Package struct {
		Name      string `json:"name"`
		Ecosystem string `json:"ecosystem"`
		PURL      string `json:"purl"`
	} `json:"package"`
	Versions []string   `json:"versions"`
	Ranges   []osvRange `json:"ranges"`
}

// osvRange is one affected range of an OSV entry: events in version order.
type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced   string `json:"introduced"`
		Fixed        string `json:"fixed"`
		LastAffected string `json:"last_affected"`
	} `json:"events"`
}

// maxVulnFeedBytes bounds the feed size ParseVulnDB accepts.
const maxVulnFeedBytes = 256 << 20

// componentAliases maps OSV package names to inspect's component names.
var componentAliases = map[string]string{
	"linux_kernel": "linux", "kernel": "linux", "linux-kernel": "linux",
	"dropbear_ssh": "dropbear", "dropbear-ssh": "dropbear", "uclibc-ng": "uclibc", "libcurl": "curl",
	"das_u-boot": "u-boot", "uboot": "u-boot",
}

// componentName returns inspect's component name for an OSV package name.
func componentName(pkg string) string {
	n := strings.ToLower(pkg)
	if alias, ok := componentAliases[n]; ok {
		return alias
	}
	return n
}

// ParseVulnDB reads an offline OSV feed: a JSON array of OSV entries, one
// entry, an object {"vulns": [...]}, or JSON lines of entries.
func ParseVulnDB(data []byte) (*VulnDB, error) {
	entries, err := parseOSV(data)
	if err != nil {
		return nil, err
	}
	return newVulnDB(entries)
}

// Limits of the OSV archives and folders (ParseVulnZip, ParseVulnDir).
const (
	maxOSVEntryBytes = 16 << 20 // one JSON file
	maxOSVFiles      = 2_000_000
	maxOSVTotalBytes = 8 << 30 // all JSON read
)

// ParseVulnZip reads OSV data as published per ecosystem: a zip of OSV JSON
// files (https://osv-vulnerabilities.storage.googleapis.com/<ECOSYSTEM>/all.zip).
// Entries that are not .json are skipped; a JSON file that does not parse
// is an error naming it.
func ParseVulnZip(r io.ReaderAt, size int64) (*VulnDB, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("inspect: OSV zip: %w", err)
	}
	var entries []osvEntry
	var total int64
	files := 0
	for _, f := range zr.File {
		if !strings.HasSuffix(strings.ToLower(f.Name), ".json") || f.FileInfo().IsDir() {
			continue
		}
		if files++; files > maxOSVFiles {
			return nil, fmt.Errorf("inspect: OSV zip: more than %d JSON files", maxOSVFiles)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("inspect: OSV zip: %s: %w", f.Name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxOSVEntryBytes+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("inspect: OSV zip: %s: %w", f.Name, err)
		}
		if err := addOSV(&entries, &total, f.Name, data); err != nil {
			return nil, err
		}
	}
	return newVulnDB(entries)
}

// ParseVulnDir reads every .json file under the root of fsys (a folder of
// OSV JSON, such as an unpacked all.zip or a git checkout of an advisory
// database).
func ParseVulnDir(fsys fs.FS) (*VulnDB, error) {
	var entries []osvEntry
	var total int64
	files := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(strings.ToLower(p), ".json") {
			return nil
		}
		if files++; files > maxOSVFiles {
			return fmt.Errorf("inspect: OSV folder: more than %d JSON files", maxOSVFiles)
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(f, maxOSVEntryBytes+1))
		f.Close()
		if err != nil {
			return fmt.Errorf("inspect: OSV folder: %s: %w", p, err)
		}
		return addOSV(&entries, &total, p, data)
	})
	if err != nil {
		return nil, err
	}
	return newVulnDB(entries)
}

// addOSV parses one JSON file of an archive or folder into entries.
func addOSV(entries *[]osvEntry, total *int64, name string, data []byte) error {
	if len(data) > maxOSVEntryBytes {
		return fmt.Errorf("inspect: OSV %s: larger than %d bytes", name, maxOSVEntryBytes)
	}
	if *total += int64(len(data)); *total > maxOSVTotalBytes {
		return fmt.Errorf("inspect: OSV data larger than %d bytes in all", int64(maxOSVTotalBytes))
	}
	es, err := parseOSV(data)
	if err != nil {
		return fmt.Errorf("inspect: OSV %s: %w", name, err)
	}
	*entries = append(*entries, es...)
	return nil
}

// parseOSV reads the entries of one OSV JSON document.
func parseOSV(data []byte) ([]osvEntry, error) {
	if len(data) > maxVulnFeedBytes {
		return nil, fmt.Errorf("inspect: OSV feed larger than %d bytes", maxVulnFeedBytes)
	}
	var entries []osvEntry
	t := bytes.TrimSpace(data)
	switch {
	case len(t) == 0:
		return nil, fmt.Errorf("inspect: OSV feed is empty")
	case t[0] == '[':
		if err := json.Unmarshal(t, &entries); err != nil {
			return nil, fmt.Errorf("inspect: OSV feed: %w", err)
		}
	default:
		dec := json.NewDecoder(bytes.NewReader(t))
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("inspect: OSV feed at byte %d: %w", dec.InputOffset(), err)
			}
			var wrap struct {
				Vulns []osvEntry `json:"vulns"`
			}
			if err := json.Unmarshal(raw, &wrap); err == nil && wrap.Vulns != nil {
				entries = append(entries, wrap.Vulns...)
				continue
			}
			var e osvEntry
			if err := json.Unmarshal(raw, &e); err != nil {
				return nil, fmt.Errorf("inspect: OSV feed at byte %d: %w", dec.InputOffset(), err)
			}
			entries = append(entries, e)
		}
	}
	return entries, nil
}

// purlBase is a package URL without version, qualifiers and subpath:
// pkg:deb/debian/openssl.
func purlBase(purl string) string {
	purl = strings.ToLower(purl)
	if i := strings.IndexAny(purl, "@?#"); i >= 0 {
		purl = purl[:i]
	}
	return purl
}

func newVulnDB(entries []osvEntry) (*VulnDB, error) {
	db := &VulnDB{byName: map[string][]osvEntry{}, byPURL: map[string][]osvEntry{}}
	for _, e := range entries {
		if e.ID == "" {
			return nil, fmt.Errorf("inspect: OSV feed: an entry has no id")
		}
		names, purls := map[string]bool{}, map[string]bool{}
		for _, a := range e.Affected {
			if n := componentName(a.Package.Name); n != "" {
				names[n] = true
			}
			if a.Package.PURL != "" {
				purls[purlBase(a.Package.PURL)] = true
			}
		}
		for n := range names {
			db.byName[n] = append(db.byName[n], e)
		}
		for p := range purls {
			db.byPURL[p] = append(db.byPURL[p], e)
		}
		db.count++
	}
	return db, nil
}

// MatchComponent returns the vulnerabilities affecting c, and a note when c
// could not be matched or nothing affects it. Components typed by their
// package URL (pkg:deb/...) match the OSV entries of that package URL;
// generic ones match by name. ABI versions (SONAME, DT_NEEDED) and
// components without version are not matched.
func (db *VulnDB) MatchComponent(c *Component) ([]Vuln, string) {
	switch {
	case c.Version == "":
		return nil, "not matched: no version"
	case c.FoundBy == FoundSONAME || c.FoundBy == FoundNeeded:
		return nil, "not matched: an ABI version (" + c.FoundBy + "), not a release"
	}
	if !strings.HasPrefix(c.PURL, "pkg:generic/") {
		es := db.byPURL[purlBase(c.PURL)]
		if len(es) == 0 {
			return nil, "not matched: no OSV entry for " + purlBase(c.PURL)
		}
		out := db.match(es, func(a osvAffected) bool { return purlBase(a.Package.PURL) == purlBase(c.PURL) }, c.Version)
		if len(out) == 0 {
			return nil, fmt.Sprintf("%d OSV entries checked, none affects this version", len(es))
		}
		return out, ""
	}
	name := strings.ToLower(c.Name)
	es := db.byName[name]
	if len(es) == 0 {
		return nil, "not matched: no OSV entry names " + name
	}
	out := db.Match(c.Name, c.Version)
	if len(out) == 0 {
		return nil, fmt.Sprintf("%d OSV entries checked, none affects this version", len(es))
	}
	return out, ""
}

// Match returns the vulnerabilities affecting name at version.
func (db *VulnDB) Match(name, version string) []Vuln {
	name = strings.ToLower(name)
	return db.match(db.byName[name], func(a osvAffected) bool { return componentName(a.Package.Name) == name }, version)
}

// match returns the entries of es with an affected package that pick
// selects and whose ranges hold version.
func (db *VulnDB) match(es []osvEntry, pick func(osvAffected) bool, version string) []Vuln {
	var out []Vuln
	for _, e := range es {
		for _, a := range e.Affected {
			if !pick(a) {
				continue
			}
			hit, fixed := affects(version, a.Versions, a.Ranges)
			if !hit {
				continue
			}
			s := e.Summary
			if s == "" {
				s = truncate(strings.TrimSpace(e.Details), 200)
			}
			out = append(out, Vuln{ID: e.ID, Aliases: e.Aliases, Summary: s, Severity: e.DatabaseSpecific.Severity, Fixed: fixed})
			break
		}
	}
	return out
}

func affects(version string, versions []string, ranges []osvRange) (bool, string) {
	for _, v := range versions {
		if v == version {
			return true, ""
		}
	}
	for _, r := range ranges {
		if r.Type == "GIT" {
			continue
		}
		in := false
		for _, ev := range r.Events {
			switch {
			case ev.Introduced != "":
				if ev.Introduced == "0" || compareVersions(version, ev.Introduced) >= 0 {
					in = true
				}
			case ev.Fixed != "":
				if in && compareVersions(version, ev.Fixed) < 0 {
					return true, ev.Fixed
				}
				in = false
			case ev.LastAffected != "":
				if in && compareVersions(version, ev.LastAffected) <= 0 {
					return true, ""
				}
				in = false
			}
		}
		if in {
			return true, ""
		}
	}
	return false, ""
}

// compareVersions orders dotted versions with letter suffixes the way
// OpenSSL, BusyBox and the kernel number them: numbers compare numerically,
// letters lexically, and a release sorts after its pre-releases' letters
// (1.0.2 < 1.0.2a < 1.0.2k < 1.0.10).
func compareVersions(a, b string) int {
	pa, pb := versionParts(a), versionParts(b)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x == y {
			continue
		}
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			if xn < yn {
				return -1
			}
			return 1
		case x == "":
			return -1
		case y == "":
			return 1
		case xerr == nil: // numbers after letters
			return 1
		case yerr == nil:
			return -1
		case x < y:
			return -1
		default:
			return 1
		}
	}
	return 0
}

// versionParts splits "1.0.2k-fips" into 1 0 2 k fips.
func versionParts(v string) []string {
	var parts []string
	cur := []byte{}
	digit := false
	flush := func() {
		if len(cur) > 0 {
			parts = append(parts, string(cur))
			cur = cur[:0]
		}
	}
	for i := 0; i < len(v) && len(parts) < 32; i++ {
		ch := v[i]
		isD := ch >= '0' && ch <= '9'
		isL := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z'
		if !isD && !isL {
			flush()
			continue
		}
		if len(cur) > 0 && isD != digit {
			flush()
		}
		digit = isD
		cur = append(cur, ch)
	}
	flush()
	return parts
}

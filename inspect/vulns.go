package inspect

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	Affected []struct {
		Package struct {
			Name      string `json:"name"`
			Ecosystem string `json:"ecosystem"`
			PURL      string `json:"purl"`
		} `json:"package"`
		Versions []string   `json:"versions"`
		Ranges   []osvRange `json:"ranges"`
	} `json:"affected"`
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
	db := &VulnDB{byName: map[string][]osvEntry{}}
	for _, e := range entries {
		if e.ID == "" {
			return nil, fmt.Errorf("inspect: OSV feed: an entry has no id")
		}
		names := map[string]bool{}
		for _, a := range e.Affected {
			if n := componentName(a.Package.Name); n != "" {
				names[n] = true
			}
		}
		for n := range names {
			db.byName[n] = append(db.byName[n], e)
		}
		db.count++
	}
	return db, nil
}

// Match returns the vulnerabilities affecting name at version.
func (db *VulnDB) Match(name, version string) []Vuln {
	var out []Vuln
	name = strings.ToLower(name)
	for _, e := range db.byName[name] {
		for _, a := range e.Affected {
			if componentName(a.Package.Name) != name {
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

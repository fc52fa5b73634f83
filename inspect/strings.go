package inspect

import (
	"errors"
	"io"
)

// maxStringLen splits longer printable runs: URLs and version strings are
// shorter, and it bounds the work per string.
const maxStringLen = 4096

// extractStrings streams r and calls fn with every run of at least minLen
// printable ASCII bytes (space to tilde, and tab), like strings(1). Runs
// longer than 4096 bytes are passed on in pieces. The slice passed to fn is
// only valid during the call.
func extractStrings(r io.Reader, minLen int, fn func(s []byte)) error {
	buf := make([]byte, 64<<10)
	cur := make([]byte, 0, maxStringLen)
	for {
		n, err := r.Read(buf)
		start := -1 // start in buf of the printable run being read, or -1
		for i, b := range buf[:n] {
			if b >= 0x20 && b < 0x7f || b == '\t' {
				if start < 0 {
					start = i
				}
				if len(cur)+i-start+1 == maxStringLen {
					cur = append(cur, buf[start:i+1]...)
					fn(cur)
					cur, start = cur[:0], -1
				}
				continue
			}
			if start >= 0 {
				cur = append(cur, buf[start:i]...)
				start = -1
			}
			if len(cur) >= minLen {
				fn(cur)
			}
			cur = cur[:0]
		}
		if start >= 0 {
			cur = append(cur, buf[start:n]...)
		}
		if err != nil {
			if len(cur) >= minLen {
				fn(cur)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// stringChecks runs the checks over the strings of one file and batches the
// results, so the collector's lock is taken once per file.
type stringChecks struct {
	c             *collector
	path          string
	skipEndpoints bool // certificate stores: CA URLs are not phone-home endpoints
	endpoints     map[string]Endpoint
	components    map[string]Component
	findings      []Finding
	seen          map[string]bool
	index         int         // strings checked so far
	awsIDs        []awsSecret // AWS access key IDs, paired at flush
	awsSecrets    []awsSecret // secret access key candidates
}

func newStringChecks(c *collector, p string) *stringChecks {
	return &stringChecks{c: c, path: p}
}

func (sc *stringChecks) check(s []byte) {
	if !sc.skipEndpoints {
		sc.checkEndpoints(s)
	}
	sc.checkComponents(s)
	sc.checkCredentials(s)
}

func (sc *stringChecks) addFinding(f Finding) {
	key := f.Rule + "\x00" + f.Evidence
	if sc.seen == nil {
		sc.seen = map[string]bool{}
	}
	if sc.seen[key] || len(sc.findings) >= maxFindingsPerFile {
		return
	}
	sc.seen[key] = true
	sc.findings = append(sc.findings, f)
}

// maxFindingsPerFile bounds what one file can add from its strings.
const maxFindingsPerFile = 100

func (sc *stringChecks) flush() {
	sc.awsPairs()
	c := sc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.findings = append(c.findings, sc.findings...)
	for v, e := range sc.endpoints {
		have := c.endpoints[v]
		if have == nil {
			e.Paths = []string{sc.path}
			c.endpoints[v] = &e
			continue
		}
		if len(have.Paths) < 4*maxEndpointPaths {
			have.Paths = append(have.Paths, sc.path)
		}
	}
	for k, comp := range sc.components {
		comp.Path = sc.path
		if have, ok := c.components[k]; !ok || better(&comp, have) {
			c.components[k] = &comp // the most confident, then the smallest path: stable reports
		}
	}
}

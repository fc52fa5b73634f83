package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// DiffReport is what changed between two firmware trees.
type DiffReport struct {
	Old        string            `json:"old"`
	New        string            `json:"new"`
	Files      FileChanges       `json:"files"`
	Components []ComponentChange `json:"components"`
	Endpoints  struct {
		Gained []Endpoint `json:"gained"`
		Lost   []Endpoint `json:"lost"`
	} `json:"endpoints"`
	Services struct {
		Gained []Service `json:"gained"`
		Lost   []Service `json:"lost"`
	} `json:"services"`
	Hardening   []HardeningChange `json:"hardening"`
	Credentials []AccountChange   `json:"credentials"`
	Findings    struct {
		Gained []Finding `json:"gained"`
		Lost   []Finding `json:"lost"`
	} `json:"findings"`
	// RegressionCount is what Regressions returns.
	RegressionCount int `json:"regressions"`
}

// FileChanges lists paths added, removed and changed (content or mode).
type FileChanges struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed []string `json:"changed"`
}

// ComponentChange is a component added (Old empty), removed (New empty) or
// changed version.
type ComponentChange struct {
	Name string `json:"name"`
	Old  string `json:"old"`
	New  string `json:"new"`
}

// HardeningChange is one protection of one binary that changed; Regression
// is true when the new binary is weaker.
type HardeningChange struct {
	Path       string `json:"path"`
	Property   string `json:"property"`
	Old        string `json:"old"`
	New        string `json:"new"`
	Regression bool   `json:"regression"`
}

// AccountChange is an account added, removed, or whose password changed.
type AccountChange struct {
	Path   string `json:"path"`
	User   string `json:"user"`
	Change string `json:"change"` // added, removed, password-changed, hash-scheme-changed
	Old    string `json:"old,omitempty"`
	New    string `json:"new,omitempty"`
}

// Diff compares two reports (made by Run, which keeps file hashes).
func Diff(old, new *Report) *DiffReport {
	d := &DiffReport{Old: old.Target, New: new.Target}
	d.Files = diffFiles(old.Files, new.Files)
	d.Components = diffComponents(old.Components, new.Components)
	d.Endpoints.Gained, d.Endpoints.Lost = gainedLost(old.Endpoints, new.Endpoints, func(e Endpoint) string { return e.Value })
	svcKey := func(s Service) string { return fmt.Sprintf("%s|%d|%s|%s|%t", s.Name, s.Port, s.Via, s.Path, s.Boot) }
	d.Services.Gained, d.Services.Lost = gainedLost(old.Services, new.Services, svcKey)
	fKey := func(f Finding) string { return f.Rule + "|" + f.Path + "|" + f.Evidence }
	d.Findings.Gained, d.Findings.Lost = gainedLost(old.Findings, new.Findings, fKey)
	d.RegressionCount = findingRegressions(old.Findings, d.Findings.Gained)
	d.Hardening = diffHardening(old.Binaries, new.Binaries)
	d.Credentials = diffCredentials(old.Accounts, new.Accounts)
	for _, h := range d.Hardening {
		if h.Regression {
			d.RegressionCount++
		}
	}
	return d
}

// diffFiles lists the paths added, removed and changed (content or mode),
// each sorted.
func diffFiles(old, new map[string]FileSum) FileChanges {
	fc := FileChanges{Added: []string{}, Removed: []string{}, Changed: []string{}}
	for p, n := range new {
		o, ok := old[p]
		switch {
		case !ok:
			fc.Added = append(fc.Added, p)
		case o.SHA256 != n.SHA256 || o.Mode != n.Mode:
			fc.Changed = append(fc.Changed, p)
		}
	}
	for p := range old {
		if _, ok := new[p]; !ok {
			fc.Removed = append(fc.Removed, p)
		}
	}
	sort.Strings(fc.Added)
	sort.Strings(fc.Removed)
	sort.Strings(fc.Changed)
	return fc
}

// diffComponents lists the components added, removed or whose versions
// changed, sorted by name.
func diffComponents(old, new []Component) []ComponentChange {
	versions := func(cs []Component) map[string][]string {
		m := map[string][]string{}
		for _, c := range cs {
			m[c.Name] = append(m[c.Name], c.Version)
		}
		return m
	}
	ov, nv := versions(old), versions(new)
	changes := []ComponentChange{}
	for name, vs := range nv {
		if o := strings.Join(ov[name], ", "); o != strings.Join(vs, ", ") {
			changes = append(changes, ComponentChange{Name: name, Old: o, New: strings.Join(vs, ", ")})
		}
	}
	for name, vs := range ov {
		if _, ok := nv[name]; !ok {
			changes = append(changes, ComponentChange{Name: name, Old: strings.Join(vs, ", ")})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	return changes
}

// findingRegressions counts the gained findings of high severity or worse
// that are not the same problem the old tree had, with other evidence.
func findingRegressions(old, gained []Finding) int {
	n := 0
	had := map[string]Severity{} // rule|path -> highest severity in old
	for _, f := range old {
		k := f.Rule + "|" + f.Path
		had[k] = max(had[k], f.Severity)
	}
	for _, f := range gained {
		if f.Severity >= SeverityHigh && had[f.Rule+"|"+f.Path] < f.Severity {
			n++ // new, not the same problem with other evidence (a changed password)
		}
	}
	return n
}

// diffHardening lists the protections that changed in binaries present in
// both trees, in the new tree's order.
func diffHardening(old, new []Binary) []HardeningChange {
	changes := []HardeningChange{}
	ob := map[string]Binary{}
	for _, b := range old {
		ob[b.Path] = b
	}
	relroRank := map[string]int{"none": 0, "partial": 1, "full": 2}
	for _, n := range new {
		o, ok := ob[n.Path]
		if !ok {
			continue
		}
		for _, p := range []struct {
			name   string
			o, n   bool
			better bool // true means "true is better"
		}{{"nx", o.NX, n.NX, true}, {"pie", o.PIE, n.PIE, true}, {"canary", o.Canary, n.Canary, true},
			{"fortify", o.Fortify, n.Fortify, true}, {"stripped", o.Stripped, n.Stripped, true}} {
			if p.o != p.n {
				changes = append(changes, HardeningChange{Path: n.Path, Property: p.name,
					Old: yn(p.o), New: yn(p.n), Regression: p.o && !p.n})
			}
		}
		if o.RELRO != n.RELRO {
			changes = append(changes, HardeningChange{Path: n.Path, Property: "relro", Old: o.RELRO, New: n.RELRO,
				Regression: relroRank[n.RELRO] < relroRank[o.RELRO]})
		}
		if o.RPath+o.RunPath != n.RPath+n.RunPath {
			changes = append(changes, HardeningChange{Path: n.Path, Property: "rpath", Old: o.RPath + o.RunPath,
				New: n.RPath + n.RunPath, Regression: n.RPath+n.RunPath != ""})
		}
	}
	return changes
}

// diffCredentials lists the accounts added, removed, or whose password or
// hash scheme changed, sorted by path then user.
func diffCredentials(old, new []Account) []AccountChange {
	changes := []AccountChange{}
	type ak struct{ path, user string }
	oa := map[ak]Account{}
	for _, a := range old {
		oa[ak{a.Path, a.User}] = a
	}
	na := map[ak]bool{}
	for _, n := range new {
		k := ak{n.Path, n.User}
		na[k] = true
		o, ok := oa[k]
		switch {
		case !ok:
			changes = append(changes, AccountChange{Path: n.Path, User: n.User, Change: "added", New: accountState(n)})
		case o.Hash != n.Hash:
			changes = append(changes, AccountChange{Path: n.Path, User: n.User, Change: "hash-scheme-changed",
				Old: accountState(o), New: accountState(n)})
		case o.hash != n.hash || o.Found != n.Found:
			changes = append(changes, AccountChange{Path: n.Path, User: n.User, Change: "password-changed",
				Old: accountState(o), New: accountState(n)})
		}
	}
	for _, o := range old {
		if !na[ak{o.Path, o.User}] {
			changes = append(changes, AccountChange{Path: o.Path, User: o.User, Change: "removed", Old: accountState(o)})
		}
	}
	sort.Slice(changes, func(i, j int) bool {
		a, b := changes[i], changes[j]
		return a.Path < b.Path || a.Path == b.Path && a.User < b.User
	})
	return changes
}

func accountState(a Account) string {
	s := a.Hash
	if a.Found != "" || a.Hash == string(HashNone) {
		s += fmt.Sprintf(", password %q", a.Found)
	}
	return s
}

func gainedLost[T any](old, new []T, key func(T) string) (gained, lost []T) {
	om, nm := map[string]bool{}, map[string]bool{}
	for _, v := range old {
		om[key(v)] = true
	}
	for _, v := range new {
		nm[key(v)] = true
	}
	gained, lost = []T{}, []T{}
	for _, v := range new {
		if !om[key(v)] {
			gained = append(gained, v)
		}
	}
	for _, v := range old {
		if !nm[key(v)] {
			lost = append(lost, v)
		}
	}
	return gained, lost
}

// Regressions counts what got worse: hardening regressions, and high or
// critical findings whose rule and path the old version did not have at that
// severity.
func (d *DiffReport) Regressions() int { return d.RegressionCount }

// WriteJSON writes the diff as JSON.
func (d *DiffReport) WriteJSON(w io.Writer) error { return writeJSON(w, d) }

// WriteText writes the diff for people.
func (d *DiffReport) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("cordon inspect diff %s %s\n", d.Old, d.New)
	ew.printf("files: %d added, %d removed, %d changed\n", len(d.Files.Added), len(d.Files.Removed), len(d.Files.Changed))
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		ew.printf("\n%s\n", title)
		for _, it := range items {
			ew.printf("  %s\n", it)
		}
	}
	list("FILES ADDED", prefixAll("+ ", d.Files.Added))
	list("FILES REMOVED", prefixAll("- ", d.Files.Removed))
	list("FILES CHANGED", prefixAll("~ ", d.Files.Changed))
	var comps []string
	for _, c := range d.Components {
		switch {
		case c.Old == "":
			comps = append(comps, fmt.Sprintf("+ %s %s", c.Name, c.New))
		case c.New == "":
			comps = append(comps, fmt.Sprintf("- %s %s", c.Name, c.Old))
		default:
			comps = append(comps, fmt.Sprintf("~ %s %s -> %s", c.Name, c.Old, c.New))
		}
	}
	list("COMPONENTS", comps)
	var eps []string
	for _, e := range d.Endpoints.Gained {
		eps = append(eps, fmt.Sprintf("+ %s %s %s", e.Scope, e.Value, e.Vendor))
	}
	for _, e := range d.Endpoints.Lost {
		eps = append(eps, fmt.Sprintf("- %s %s %s", e.Scope, e.Value, e.Vendor))
	}
	list("ENDPOINTS", eps)
	var svcs []string
	svc := func(mark string, s Service) string {
		port := ""
		if s.Port > 0 {
			port = fmt.Sprintf(" port %d", s.Port)
		}
		return fmt.Sprintf("%s %s%s (%s %s:%d)", mark, s.Name, port, s.Via, s.Path, s.Line)
	}
	for _, s := range d.Services.Gained {
		svcs = append(svcs, svc("+", s))
	}
	for _, s := range d.Services.Lost {
		svcs = append(svcs, svc("-", s))
	}
	list("SERVICES", svcs)
	var hs []string
	for _, h := range d.Hardening {
		mark := "  "
		if h.Regression {
			mark = "! "
		}
		hs = append(hs, fmt.Sprintf("%s%s %s: %s -> %s", mark, h.Path, h.Property, h.Old, h.New))
	}
	list("HARDENING (! = regression)", hs)
	var cs []string
	for _, c := range d.Credentials {
		cs = append(cs, fmt.Sprintf("%s %s user %s: %s -> %s", c.Change, c.Path, c.User, orDash(c.Old), orDash(c.New)))
	}
	list("CREDENTIALS", cs)
	var fs []string
	for _, f := range d.Findings.Gained {
		fs = append(fs, fmt.Sprintf("+ %s %s %s %s", strings.ToUpper(f.Severity.String()), f.Rule, f.Path, f.Evidence))
	}
	for _, f := range d.Findings.Lost {
		fs = append(fs, fmt.Sprintf("- %s %s %s %s", strings.ToUpper(f.Severity.String()), f.Rule, f.Path, f.Evidence))
	}
	list("FINDINGS", fs)
	return ew.err
}

func prefixAll(p string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = p + x
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

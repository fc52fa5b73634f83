package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/cordon-vms/cordon/internal/humanize"
)

// WriteJSON writes the report in the JSON contract of docs/inspect.md.
func (r *Report) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// writeJSON writes v as indented JSON, with <, > and & left as they are.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteText writes a human summary: counts, then findings by severity, then
// endpoints, services, components and the hardening table.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	counts := map[Severity]int{}
	for _, f := range r.Findings {
		counts[f.Severity]++
	}
	ew.printf("cordon inspect %s\n", r.Target)
	ew.printf("%d files (%s), %d ELF, %.1fs", r.Stats.Files, humanize.Bytes(r.Stats.Bytes), r.Stats.ELF, r.Stats.Seconds)
	if r.Stats.Manifest {
		ew.printf(", modes from report.json")
	}
	ew.printf("\nfindings: %d critical, %d high, %d medium, %d low, %d info\n",
		counts[SeverityCritical], counts[SeverityHigh], counts[SeverityMedium], counts[SeverityLow], counts[SeverityInfo])
	r.writeExamined(ew)
	r.writeCoverage(ew)
	// table starts a section: its title, then tab-separated rows.
	table := func(title string) *tabwriter.Writer {
		ew.printf("\n%s\n", title)
		return tabwriter.NewWriter(ew, 0, 8, 2, ' ', 0)
	}
	if len(r.Findings) > 0 {
		tw := table("FINDINGS")
		for _, f := range r.Findings {
			line := fmt.Sprintf("  %s\t%s\t%s\t%s", strings.ToUpper(f.Severity.String()), f.Rule, f.Path, f.Evidence)
			if f.Detail != "" {
				line += " — " + f.Detail
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}
	if len(r.Endpoints) > 0 {
		tw := table("ENDPOINTS")
		for _, e := range r.Endpoints {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Scope, orDash(e.Vendor), e.Kind, e.Value, strings.Join(e.Paths, ", "))
		}
		tw.Flush()
	}
	if len(r.Services) > 0 {
		tw := table("SERVICES")
		for _, s := range r.Services {
			port := "-"
			if s.Port > 0 {
				port = fmt.Sprint(s.Port)
			}
			boot := "boot"
			if !s.Boot {
				boot = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s:%d\t%s\n", s.Name, port, boot, s.Path, s.Line, truncate(s.Command, 80))
		}
		tw.Flush()
	}
	if len(r.Components) > 0 {
		tw := table("COMPONENTS")
		for _, c := range r.Components {
			vs := ""
			for _, v := range c.Vulns {
				vs += " " + v.ID
			}
			if c.VulnNote != "" {
				vs += " (" + c.VulnNote + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s, %s\t%s\t%s\n", c.Name, orDash(c.Version), c.FoundBy, c.Confidence, orDash(c.Path), strings.TrimSpace(vs))
		}
		tw.Flush()
	}
	if len(r.Binaries) > 0 {
		tw := table("BINARIES (NX PIE RELRO canary fortify stripped)")
		for _, b := range r.Binaries {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Path, b.Arch, yn(b.NX), yn(b.PIE || b.Type == "lib"),
				b.RELRO, yn(b.Canary), yn(b.Fortify), yn(b.Stripped), b.Type)
		}
		tw.Flush()
	}
	return ew.err
}

// writeCoverage says plainly how much of an unpacked image was looked into
// and what was not (the coverage.unexamined findings).
func (r *Report) writeCoverage(ew *errWriter) {
	if cv := r.Coverage; cv != nil && cv.Size > 0 {
		pct := func(n int64) string {
			p := float64(n) * 100 / float64(cv.Size)
			if n > 0 && p < 0.05 {
				return "<0.1%" // a few bytes not opened must not read as none
			}
			return fmt.Sprintf("%.1f%%", p)
		}
		ew.printf("image coverage: %.1f%% examined (%s extracted, %s carved, %s padding); %s identified but not opened, %s unknown\n",
			cv.Examined*100, pct(cv.Extracted), pct(cv.Carved), pct(cv.Padding), pct(cv.Identified), pct(cv.Unknown))
	}
	if len(r.Unexamined) == 0 {
		return
	}
	failed := 0
	for _, g := range r.Unexamined {
		if g.Status == "failed" {
			failed++
		}
	}
	ew.printf("NOT EXAMINED: %d part(s) of the image were found but never looked into (%d identified only, %d failed to decode or extract): no findings there does not mean clean; see %s\n",
		len(r.Unexamined), len(r.Unexamined)-failed, failed, RuleUnexamined)
}

func yn(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

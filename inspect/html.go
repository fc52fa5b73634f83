package inspect

import (
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/internal/humanize"
)

//go:embed html.tmpl
var htmlTemplate string

// HTMLOptions adds what the report itself does not hold.
type HTMLOptions struct {
	// ToolVersion is printed in the footer.
	ToolVersion string
	// Generated is the report's time. It defaults to time.Now().
	Generated time.Time
	// EntropyPNG, when set, is the image's entropy picture (cordon
	// firmware entropy --png), embedded as a data URI. inspect never reads
	// images itself: the caller draws it.
	EntropyPNG []byte
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"bytes": humanize.Bytes,
	"hex":   func(n int64) string { return fmt.Sprintf("%#x", n) },
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"share": func(n, of int64) string {
		if of <= 0 {
			return "0%"
		}
		return fmt.Sprintf("%.1f%%", float64(n)*100/float64(of))
	},
	"yn": yn,
	// path lets the browser break a path after its slashes only.
	"path": func(p string) template.HTML {
		parts := strings.Split(p, "/")
		for i := range parts {
			parts[i] = template.HTMLEscapeString(parts[i])
		}
		return template.HTML(strings.Join(parts, "/<wbr>"))
	},
	"sevclass": func(s Severity) string { return "sev-" + s.String() },
	"dash":     orDash,
}).Parse(htmlTemplate))

// htmlSeverity is one severity's findings.
type htmlSeverity struct {
	Severity Severity
	Findings []Finding
}

// htmlChunk is one row of the chunk map.
type htmlChunk struct {
	Depth                       int
	Where, Format, Kind, Status string
	Offset, Size                int64
}

type htmlData struct {
	Title      string
	R          *Report
	D          *DiffReport
	Counts     []htmlSeverity
	Total      int
	Chunks     []htmlChunk
	ChunksLeft int
	PNG        template.URL
	Opts       HTMLOptions
}

// maxHTMLChunks bounds the chunk map's rows.
const maxHTMLChunks = 500

// WriteHTML writes the report as one self-contained HTML page (no external
// assets): summary and coverage, findings by severity with their evidence,
// endpoints, accounts, services, components, hardening, and for an image
// its entropy picture and chunk map.
func (r *Report) WriteHTML(w io.Writer, o HTMLOptions) error {
	d := htmlData{Title: "cordon inspect " + r.Target, R: r, Opts: o, Total: len(r.Findings)}
	if d.Opts.Generated.IsZero() {
		d.Opts.Generated = time.Now()
	}
	for s := SeverityCritical; s >= SeverityInfo; s-- {
		hs := htmlSeverity{Severity: s}
		for _, f := range r.Findings {
			if f.Severity == s {
				hs.Findings = append(hs.Findings, f)
			}
		}
		d.Counts = append(d.Counts, hs)
	}
	n := 0
	var walk func([]*chunkInfo, int)
	walk = func(cs []*chunkInfo, depth int) {
		for _, c := range cs {
			if c == nil {
				continue
			}
			if n++; n > maxHTMLChunks {
				d.ChunksLeft++
				continue
			}
			where := "image"
			if c.File != "" {
				where = c.File
			}
			d.Chunks = append(d.Chunks, htmlChunk{Depth: depth, Where: where, Format: c.Format, Kind: c.Kind,
				Status: orDash(c.Outcome), Offset: c.Offset, Size: c.Size})
			if depth < 16 {
				walk(c.Children, depth+1)
			}
		}
	}
	walk(r.chunks, 0)
	if len(o.EntropyPNG) > 0 {
		d.PNG = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(o.EntropyPNG))
	}
	return htmlTmpl.ExecuteTemplate(w, "report", d)
}

// WriteHTML writes the comparison as one self-contained HTML page.
func (d *DiffReport) WriteHTML(w io.Writer, o HTMLOptions) error {
	hd := htmlData{Title: "cordon inspect diff " + d.Old + " → " + d.New, D: d, Opts: o}
	if hd.Opts.Generated.IsZero() {
		hd.Opts.Generated = time.Now()
	}
	return htmlTmpl.ExecuteTemplate(w, "diff", hd)
}

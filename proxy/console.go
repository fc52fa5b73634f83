package proxy

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"
)

// The console's pages, stylesheet and script, in the binary: no CDN, it
// works offline. The script is a file (the CSP forbids inline scripts).
//
//go:embed console
var consoleFiles embed.FS

var consoleTmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"since":      fmtSince,
	"clock":      func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"resolution": fmtResolution,
	"fps":        fmtFPS,
	"bitrate":    fmtBitrate,
	"jitter":     func(j float64) string { return fmt.Sprintf("%.1f ms", j/90) },
	"drops":      fmtDrops,
	"ms":         func(d time.Duration) string { return fmt.Sprintf("%.1f ms", d.Seconds()*1000) },
}).ParseFS(consoleFiles, "console/layout.html"))

// consolePage is what a console template gets.
type consolePage struct {
	Title, Page, Camera, API, Now, Summary string
	// CSRF is the console session's token for actions (admin_csrf.go).
	CSRF string
	// Trunks is set on the cameras page when trunks are configured.
	Trunks  *TrunksStatus
	Cameras []CameraStatus
	One     *CameraStatus
	Readers []ReaderEntry
}

// registerConsole adds the console: / (cameras), /cameras/{name} and
// /readers, rendered on the server and refreshed by /static/console.js
// from the API. It only reads.
func (p *Proxy) registerConsole(mux *http.ServeMux) {
	static, _ := fs.Sub(consoleFiles, "console")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(staticOnly{static})))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		cams := p.publicStatus()
		up := 0
		for _, c := range cams {
			if c.State == stateUp {
				up++
			}
		}
		page := consolePage{Title: "Cameras", Page: "cameras", API: "/v1/cameras",
			Cameras: cams, Summary: fmt.Sprintf("%d up, %d not up", up, len(cams)-up)}
		if ts := p.TrunksStatus(); ts.Edge != nil || len(ts.Trunks) > 0 {
			page.Trunks = &ts
		}
		p.renderConsole(w, r, "cameras", page)
	})
	mux.HandleFunc("GET /cameras/{name...}", func(w http.ResponseWriter, r *http.Request) {
		c := p.camera(r.PathValue("name"))
		if c == nil {
			http.Error(w, "no camera of that name", http.StatusNotFound)
			return
		}
		s := c.status().public()
		s.History = c.history()
		p.renderConsole(w, r, "camera", consolePage{Title: s.Name, Page: "camera", Camera: s.Name,
			API: "/v1/cameras/" + s.Name, One: &s})
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // no icon, and no 404 in the browser's console
	})
	mux.HandleFunc("GET /readers", func(w http.ResponseWriter, r *http.Request) {
		p.renderConsole(w, r, "readers", consolePage{Title: "Readers", Page: "readers", API: "/v1/readers", Readers: p.Readers()})
	})
}

// staticOnly serves the stylesheet and script, not the templates.
type staticOnly struct{ fs.FS }

func (s staticOnly) Open(name string) (fs.File, error) {
	if !strings.HasSuffix(name, ".css") && !strings.HasSuffix(name, ".js") {
		return nil, fs.ErrNotExist
	}
	return s.FS.Open(name)
}

// renderConsole renders a console page with the console session's CSRF
// token (setting the session cookie when the browser has none).
func (p *Proxy) renderConsole(w http.ResponseWriter, r *http.Request, name string, page consolePage) {
	page.Now = time.Now().Format("15:04:05")
	if p.csrf != nil {
		page.CSRF = p.csrf.token(consoleSession(w, r), adminUser(r))
	}
	var buf bytes.Buffer
	if err := consoleTmpl.ExecuteTemplate(&buf, name, page); err != nil {
		http.Error(w, "console: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

func fmtSince(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm %ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

func fmtResolution(c CameraStatus) string {
	if c.Width == 0 || c.Height == 0 {
		return ""
	}
	return fmt.Sprintf("%d×%d", c.Width, c.Height)
}

// fmtFPS marks a measured rate with "~". When the SPS declares a rate
// and the measured one differs by more than 10 %, it shows the measured
// rate first ("12~ (SPS 25)"): what arrives is what recorders get.
func fmtFPS(c CameraStatus) string {
	num := func(f float64) string {
		if f < 10 {
			return fmt.Sprintf("%.1f", f)
		}
		return fmt.Sprintf("%.0f", f)
	}
	switch {
	case c.FPS == 0:
		return ""
	case c.FPSSource == "measured":
		return num(c.FPS) + "~"
	case c.FPSMeasured > 0 && math.Abs(c.FPSMeasured-c.FPS) > c.FPS/10:
		return num(c.FPSMeasured) + "~ (SPS " + num(c.FPS) + ")"
	}
	return num(c.FPS)
}

func fmtBitrate(b uint64) string {
	switch {
	case b == 0:
		return "0"
	case b >= 1e6:
		return fmt.Sprintf("%.2f Mb/s", float64(b)/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.0f kb/s", float64(b)/1e3)
	}
	return fmt.Sprintf("%d b/s", b)
}

func fmtDrops(d map[string]DropCount) string {
	var parts []string
	for k, v := range d {
		if v.Units > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v.Units))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

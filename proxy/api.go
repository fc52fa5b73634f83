package proxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/bluenviron/gortsplib/v5"
)

// registerAPI adds the JSON API: /v1/cameras (every camera, by name),
// /v1/cameras/{name} (one camera; 404 for a name that is not configured)
// and /v1/readers (every attached reader with its camera). The console
// reads the same documents.
func (p *Proxy) registerAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/cameras", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Cameras []CameraStatus `json:"cameras"`
		}{p.publicStatus()})
	})
	mux.HandleFunc("GET /v1/cameras/{name...}", func(w http.ResponseWriter, r *http.Request) {
		c := p.camera(r.PathValue("name"))
		if c == nil {
			writeJSON(w, http.StatusNotFound, struct {
				Error string `json:"error"`
			}{"no camera of that name"})
			return
		}
		s := c.status().public()
		s.History = c.history()
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("GET /v1/trunks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.TrunksStatus())
	})
	mux.HandleFunc("GET /v1/readers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Readers []ReaderEntry `json:"readers"`
		}{p.Readers()})
	})
}

// public is s as the API and the console show it: without the camera's
// address in LastError.
func (s CameraStatus) public() CameraStatus {
	s.LastError = hideCamera(s.LastError, s.URL)
	return s
}

// publicStatus is Status for the API and the console.
func (p *Proxy) publicStatus() []CameraStatus {
	out := p.Status()
	for i := range out {
		out[i] = out[i].public()
	}
	return out
}

// ReaderEntry is one reader in /v1/readers: its camera and its status.
type ReaderEntry struct {
	Camera string `json:"camera"`
	ReaderStatus
}

// Readers returns every attached reader, by camera then remote address.
func (p *Proxy) Readers() []ReaderEntry {
	out := []ReaderEntry{}
	for _, c := range p.cameras() {
		rs := c.stream.readerStatus()
		sort.Slice(rs, func(i, j int) bool { return rs[i].Remote < rs[j].Remote })
		for _, r := range rs {
			out = append(out, ReaderEntry{Camera: c.cfg.Name, ReaderStatus: r})
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// videoStatus fills the codec and size of the stream's current plan
// (nothing before the camera's first session; the last session's when
// the camera is down), and the frame rate while the camera is up.
func (s *stream) videoStatus(cs *CameraStatus) {
	s.mu.Lock()
	plan := s.plan
	s.mu.Unlock()
	if plan != nil {
		if vi, ok := plan.Video(); ok {
			cs.Codec, cs.Width, cs.Height = vi.Codec, vi.Width, vi.Height
			if vi.FPS > 0 && cs.State == stateUp {
				cs.FPS, cs.FPSSource = vi.FPS, "sps"
			}
		}
	}
	if cs.State == stateUp {
		cs.FPSMeasured = s.fps.value()
	}
	if cs.FPSSource == "" && cs.FPSMeasured > 0 {
		cs.FPS, cs.FPSSource = cs.FPSMeasured, "measured"
	}
}

// readerTransport names how a reader is served, for /v1/readers.
func readerTransport(t *gortsplib.SessionTransport, secure bool) string {
	name := "tcp"
	if t != nil {
		switch t.Protocol {
		case gortsplib.ProtocolUDP:
			name = "udp"
		case gortsplib.ProtocolUDPMulticast:
			name = "udp-multicast"
		}
	}
	if secure {
		name += "+tls"
	}
	return name
}

// hideCamera returns a camera's error message without its address: the
// redacted URL becomes "<camera url>", the host "<camera>". The password
// is already out (redactError); it is removed again here, for messages
// from elsewhere.
func hideCamera(msg string, u SecretURL) string {
	if msg == "" || u.IsZero() {
		return msg
	}
	msg = redactError(plainError(msg), u)
	msg = strings.ReplaceAll(msg, u.String(), "<camera url>")
	if h := u.u.Hostname(); h != "" {
		msg = strings.ReplaceAll(msg, u.u.Host, "<camera>")
		msg = strings.ReplaceAll(msg, h, "<camera>")
	}
	return msg
}

type plainError string

func (e plainError) Error() string { return string(e) }

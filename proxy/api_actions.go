package proxy

import (
	"errors"
	"net/http"
)

// errAdminCamera refuses an action on a camera the admin account's
// cameras do not list.
var errAdminCamera = errors.New("admin: this account may not preview or act on this camera (admin_users[].cameras)")

// registerActions adds the admin listener's actions, each a POST or
// DELETE that adminGuard lets through only with the console session's
// CSRF token: start a preview (WHEP offer), end it, reconnect a camera.
// Each is logged with the admin account that asked.
func (p *Proxy) registerActions(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/cameras/{name}/whep", func(w http.ResponseWriter, r *http.Request) {
		if p.preview == nil {
			previewError(w, http.StatusNotFound, errPreviewOff)
			return
		}
		if !p.adminAllows(r, r.PathValue("name")) {
			p.preview.refuse(w, r, http.StatusForbidden, errAdminCamera)
			return
		}
		p.preview.handleOffer(w, r)
	})
	mux.HandleFunc("DELETE /v1/previews/{id}", func(w http.ResponseWriter, r *http.Request) {
		if p.preview == nil {
			previewError(w, http.StatusNotFound, errPreviewOff)
			return
		}
		p.preview.handleDelete(w, r)
	})
	mux.HandleFunc("GET /v1/previews", func(w http.ResponseWriter, r *http.Request) {
		out := []PreviewStatus{}
		if p.preview != nil {
			out = p.preview.status()
		}
		writeJSON(w, http.StatusOK, struct {
			Previews []PreviewStatus `json:"previews"`
		}{out})
	})
	mux.HandleFunc("POST /v1/cameras/{name}/reconnect", func(w http.ResponseWriter, r *http.Request) {
		c := p.camera(r.PathValue("name"))
		if c == nil {
			previewError(w, http.StatusNotFound, errors.New("no camera of that name"))
			return
		}
		if !p.adminAllows(r, c.cfg.Name) {
			p.log.Warn("admin action refused: reconnect camera", "camera", c.cfg.Name, "user", adminUser(r),
				"remote", r.RemoteAddr, "reason", errAdminCamera)
			previewError(w, http.StatusForbidden, errAdminCamera)
			return
		}
		running := c.reconnect()
		p.log.Info("admin action: reconnect camera", "camera", c.cfg.Name, "user", adminUser(r),
			"remote", r.RemoteAddr, "session_running", running)
		writeJSON(w, http.StatusAccepted, struct {
			Camera  string `json:"camera"`
			Running bool   `json:"session_was_running"`
		}{c.cfg.Name, running})
	})
}

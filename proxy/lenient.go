package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/sdpunmarshaler"
)

// Limits of the lenient SDP path.
const (
	maxSDPSize   = 64 << 10
	maxSDPMedias = 32
)

var errSDPUnusable = errors.New("proxy: no media section of the camera's SDP can be parsed")

// lenientDescription parses a camera SDP that gortsplib rejects as a whole
// (one odd media line — an ONVIF metadata track, a broken AAC config — fails
// DESCRIBE for every track). Each media section is tried on its own with the
// session lines; the sections that parse are kept, in order. It returns the
// description and the number of sections dropped.
func lenientDescription(body []byte) (*description.Session, int, error) {
	if len(body) > maxSDPSize {
		return nil, 0, fmt.Errorf("proxy: camera SDP is larger than %d KiB", maxSDPSize>>10)
	}
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	var session strings.Builder
	var medias []string
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "m=") {
			if len(medias) == maxSDPMedias {
				return nil, 0, fmt.Errorf("proxy: camera SDP has more than %d media sections", maxSDPMedias)
			}
			medias = append(medias, "")
		}
		if len(medias) == 0 {
			session.WriteString(line + "\r\n")
		} else {
			medias[len(medias)-1] += line + "\r\n"
		}
	}
	var kept []string
	for _, m := range medias {
		if _, err := parseSDP(session.String() + m); err == nil {
			kept = append(kept, m)
		}
	}
	if len(kept) == 0 {
		return nil, len(medias), errSDPUnusable
	}
	desc, err := parseSDP(session.String() + strings.Join(kept, ""))
	if err != nil {
		return nil, len(medias), fmt.Errorf("proxy: camera SDP: %w", err)
	}
	return desc, len(medias) - len(kept), nil
}

func parseSDP(s string) (*description.Session, error) {
	ssd, err := sdpunmarshaler.Unmarshal([]byte(s))
	if err != nil {
		return nil, err
	}
	var d description.Session
	if err := d.Unmarshal2(ssd); err != nil {
		return nil, err
	}
	if base, ok := ssd.Attribute("control"); ok && base != "*" {
		// An absolute session-level control is the base URL (as gortsplib's
		// own DESCRIBE does); keep it for baseURL below.
		if u, err := parseControl(base); err == nil {
			d.BaseURL = u
		}
	}
	return &d, nil
}

func parseControl(s string) (*base.URL, error) {
	if !strings.HasPrefix(s, "rtsp://") && !strings.HasPrefix(s, "rtsps://") {
		return nil, errors.New("relative")
	}
	return base.ParseURL(s)
}

// baseURL picks the URL that SETUP requests are relative to: the session's
// absolute control attribute, else Content-Base, else the DESCRIBE URL.
// The camera's credentials are kept.
func baseURL(desc *description.Session, contentBase string, u *base.URL) *base.URL {
	var out *base.URL
	switch {
	case desc.BaseURL != nil:
		out = desc.BaseURL
	case contentBase != "":
		cb := contentBase
		if strings.HasPrefix(cb, "/") {
			cb = u.Scheme + "://" + u.Host + cb
		}
		if v, err := base.ParseURL(cb); err == nil {
			out = v
		}
	}
	if out == nil {
		return u
	}
	out.User = u.User
	return out
}

// sdpCapture keeps the body and Content-Base of the last SDP response a
// camera sent, for the lenient path.
type sdpCapture struct {
	body        []byte
	contentBase string
}

func (s *sdpCapture) onResponse(res *base.Response) {
	if ct, ok := res.Header["Content-Type"]; !ok || len(ct) != 1 || !strings.HasPrefix(ct[0], "application/sdp") {
		return
	}
	s.body = bytes.Clone(res.Body)
	s.contentBase = ""
	if cb, ok := res.Header["Content-Base"]; ok && len(cb) == 1 {
		s.contentBase = cb[0]
	}
}

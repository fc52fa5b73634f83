package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/internal/config"
)

// SecretURL is a camera URL whose credentials never leave the proxy: String,
// LogValue, MarshalJSON and error messages all show it redacted
// ("rtsp://admin:xxxxx@10.0.0.5/..."). Only the camera client sees the
// real value.
type SecretURL struct {
	u *url.URL
}

// ParseSecretURL parses an rtsp:// or rtsps:// camera URL.
func ParseSecretURL(raw string) (SecretURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the input, credentials included: do not wrap it.
		return SecretURL{}, errors.New("not a valid URL")
	}
	if u.Scheme != "rtsp" && u.Scheme != "rtsps" {
		return SecretURL{}, errors.New("scheme must be rtsp:// or rtsps://")
	}
	if u.Hostname() == "" {
		return SecretURL{}, errors.New("the camera address (host) is missing")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return SecretURL{}, fmt.Errorf("port %s is not a port number (1-65535)", p)
		}
	}
	return SecretURL{u: u}, nil
}

// MustParseSecretURL is ParseSecretURL for tests and literals; it panics on error.
func MustParseSecretURL(raw string) SecretURL {
	s, err := ParseSecretURL(raw)
	if err != nil {
		panic("proxy: " + err.Error())
	}
	return s
}

// IsZero reports whether no URL is set.
func (s SecretURL) IsZero() bool { return s.u == nil }

// String returns the URL with its password replaced by "xxxxx".
func (s SecretURL) String() string {
	if s.u == nil {
		return ""
	}
	return s.u.Redacted()
}

// reveal returns the URL with credentials, for the camera client only.
func (s SecretURL) reveal() string {
	if s.u == nil {
		return ""
	}
	return s.u.String()
}

// password returns the URL's password ("" when none).
func (s SecretURL) password() string {
	if s.u == nil || s.u.User == nil {
		return ""
	}
	p, _ := s.u.User.Password()
	return p
}

// LogValue implements slog.LogValuer.
func (s SecretURL) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON writes the redacted URL.
func (s SecretURL) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Equal reports whether two URLs are the same, credentials included.
func (s SecretURL) Equal(o SecretURL) bool { return s.reveal() == o.reveal() }

// UnmarshalYAML parses and checks the URL.
func (s *SecretURL) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return config.At(n, "url must be a string like rtsp://user:password@camera:554/path")
	}
	v, err := ParseSecretURL(n.Value)
	if err != nil {
		return config.At(n, "url: %v", err)
	}
	*s = v
	return nil
}

// redactError returns err's text with the camera's password replaced, for
// errors that might quote a URL (camera replies, dial errors).
func redactError(err error, s SecretURL) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	if raw := s.reveal(); raw != "" {
		msg = strings.ReplaceAll(msg, raw, s.String())
	}
	if p := s.password(); p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
		if e := url.QueryEscape(p); e != p {
			msg = strings.ReplaceAll(msg, e, "xxxxx")
		}
		if e := url.PathEscape(p); e != p {
			msg = strings.ReplaceAll(msg, e, "xxxxx")
		}
	}
	return msg
}

var (
	_ slog.LogValuer   = SecretURL{}
	_ json.Marshaler   = SecretURL{}
	_ yaml.Unmarshaler = (*SecretURL)(nil)
)

package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/internal/config"
)

// Network is a syslog transport: udp (RFC 5426), tcp (RFC 6587
// octet-counting framing) or tls (RFC 5425).
type Network string

// Syslog transports.
const (
	UDP Network = "udp"
	TCP Network = "tcp"
	TLS Network = "tls"
)

// UnmarshalYAML accepts only the known transports.
func (n *Network) UnmarshalYAML(node *yaml.Node) error {
	return config.OneOf(node, "syslog network", n, UDP, TCP, TLS)
}

// facilities maps RFC 5424 facility names to their codes.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// Facility is a syslog facility name (kern … local7).
type Facility string

// UnmarshalYAML accepts only the RFC 5424 facility names.
func (f *Facility) UnmarshalYAML(node *yaml.Node) error {
	if _, ok := facilities[node.Value]; !ok {
		return config.At(node, "syslog facility %q is not one of kern, user, daemon, auth, authpriv, security, local0 … local7", node.Value)
	}
	*f = Facility(node.Value)
	return nil
}

// SyslogConfig configures an RFC 5424 syslog sink.
//
//	alerts:
//	  syslog:
//	    network: tls
//	    addr: siem.example.net:6514
//	    ca_file: /etc/cordon/siem-ca.pem
type SyslogConfig struct {
	// Network is udp, tcp or tls. It defaults to udp.
	Network Network `yaml:"network"`
	// Addr is the collector's host:port. It is required; without a port,
	// 514 (udp, tcp) or 6514 (tls) is used.
	Addr string `yaml:"addr"`
	// Facility defaults to local0.
	Facility Facility `yaml:"facility"`
	// AppName defaults to "cordon".
	AppName string `yaml:"app_name"`
	// Hostname defaults to the machine's host name.
	Hostname string `yaml:"hostname"`
	// SDID is the structured-data element id carrying the alert fields. It
	// defaults to "cordon@32473" (32473 is the documentation enterprise
	// number of RFC 5612; use your own).
	SDID string `yaml:"sd_id"`
	// CAFile is a PEM file of CAs trusted for tls. It defaults to the system
	// roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name verified in the server certificate. It
	// defaults to the host of Addr.
	ServerName string `yaml:"server_name"`
	// Timeout bounds dialling and each write. It defaults to 5 s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxMessageSize bounds one UDP message (RFC 5426 asks collectors to
	// take at least 2048): a longer alert has its detail shortened so that
	// the JSON stays whole. It defaults to 8192.
	MaxMessageSize int `yaml:"max_message_size"`
}

type syslogSink struct {
	cfg      SyslogConfig
	log      *slog.Logger
	tlsConf  *tls.Config
	facility int
	procID   string

	mu   sync.Mutex
	conn net.Conn
	buf  []byte
	// After a failed connection, alerts fail fast until downUntil (the
	// backoff doubles from 1 s to 30 s), so that a collector that is down
	// does not stall the engine for a dial timeout per alert.
	downUntil time.Time
	backoff   time.Duration
	lastErr   error
	timeNow   func() time.Time // test hook
}

func (s *syslogSink) now() time.Time {
	if s.timeNow != nil {
		return s.timeNow()
	}
	return time.Now()
}

var _ egress.AlertSink = (*syslogSink)(nil)

// newSyslog checks cfg and returns a syslog sink. It connects on the first
// alert (and reconnects after errors), so a collector that is down at start
// does not stop cordon.
func newSyslog(cfg SyslogConfig, l *slog.Logger) (egress.AlertSink, error) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	if cfg.Network == "" {
		cfg.Network = UDP
	}
	switch cfg.Network {
	case UDP, TCP, TLS:
	default:
		return nil, fmt.Errorf("sink: syslog: Network %q is not one of udp, tcp, tls", cfg.Network)
	}
	if cfg.Addr == "" {
		return nil, errors.New("sink: syslog: Addr is required")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		port := "514"
		if cfg.Network == TLS {
			port = "6514"
		}
		cfg.Addr = net.JoinHostPort(cfg.Addr, port)
	}
	if cfg.Facility == "" {
		cfg.Facility = "local0"
	}
	fac, ok := facilities[string(cfg.Facility)]
	if !ok {
		return nil, fmt.Errorf("sink: syslog: Facility %q is unknown", cfg.Facility)
	}
	if cfg.AppName == "" {
		cfg.AppName = "cordon"
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	cfg.AppName, cfg.Hostname = printASCII(cfg.AppName, 48), printASCII(cfg.Hostname, 255)
	if cfg.SDID == "" {
		cfg.SDID = "cordon@32473"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 8192
	}
	s := &syslogSink{cfg: cfg, log: l.With("component", "sink", "sink", "syslog", "addr", cfg.Addr), facility: fac, procID: strconv.Itoa(os.Getpid())}
	if cfg.Network == TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(cfg.Addr)
		}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("sink: syslog: CAFile: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("sink: syslog: CAFile %s: no PEM certificates", cfg.CAFile)
			}
		}
		if cfg.CertFile != "" || cfg.KeyFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("sink: syslog: CertFile/KeyFile: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		s.tlsConf = tc
	}
	return s, nil
}

// printASCII keeps the printable US-ASCII of s (RFC 5424 header fields),
// at most max bytes; an empty result is the NILVALUE "-".
func printASCII(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		if s[i] >= 33 && s[i] <= 126 {
			b.WriteByte(s[i])
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// severityCode maps an alert severity to a syslog severity.
func severityCode(sev string) int {
	switch sev {
	case "critical":
		return 2
	case "high":
		return 3
	case "medium":
		return 4
	case "low":
		return 5
	case "info":
		return 6
	}
	return 4
}

// sdEscape escapes a structured-data parameter value (RFC 5424 §6.3.3).
func sdEscape(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\\', ']':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return b
}

// Format renders a as an RFC 5424 message (without transport framing): the
// alert kind is the MSGID, its fields are structured data and the message
// is the alert as JSON.
func (s *syslogSink) format(b []byte, a egress.Alert, now time.Time) ([]byte, error) {
	js, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.facility*8+severityCode(a.Severity)), 10)
	b = append(b, ">1 "...)
	b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = append(b, ' ')
	b = append(b, s.cfg.Hostname...)
	b = append(b, ' ')
	b = append(b, s.cfg.AppName...)
	b = append(b, ' ')
	b = append(b, s.procID...)
	b = append(b, ' ')
	b = append(b, printASCII(a.Kind, 32)...)
	b = append(b, " ["...)
	b = append(b, s.cfg.SDID...)
	param := func(k, v string) {
		if v == "" {
			return
		}
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, `="`...)
		b = sdEscape(b, v)
		b = append(b, '"')
	}
	param("kind", a.Kind)
	param("severity", a.Severity)
	param("camera", a.Camera)
	param("src", a.Src)
	param("dst", a.Dst)
	param("domain", a.Domain)
	param("proto", a.Proto)
	if a.Port != 0 {
		param("port", strconv.Itoa(int(a.Port)))
	}
	param("count", strconv.FormatUint(a.Count, 10))
	param("bytes", strconv.FormatUint(a.Bytes, 10))
	b = append(b, "] \xef\xbb\xbf"...) // BOM: the MSG is UTF-8
	b = append(b, js...)
	return b, nil
}

func (s *syslogSink) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: s.cfg.Timeout}
	switch s.cfg.Network {
	case TLS:
		return tls.DialWithDialer(&d, "tcp", s.cfg.Addr, s.tlsConf)
	case TCP:
		return d.Dial("tcp", s.cfg.Addr)
	}
	return d.Dial("udp", s.cfg.Addr)
}

// stale reports whether a stream connection was closed by the peer: a
// write to it would vanish into the kernel buffer.
func stale(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var one [1]byte
	_, err := c.Read(one[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// Send writes a to the collector, reconnecting once if the connection
// failed. On a stream transport the message is octet-counted
// ("LEN SP MSG", RFC 6587 §3.4.1).
func (s *syslogSink) Send(ctx context.Context, a egress.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg, err := s.format(nil, a, time.Now())
	if err != nil {
		return fmt.Errorf("sink: syslog: %w", err)
	}
	if s.cfg.Network == UDP {
		if over := len(msg) - s.cfg.MaxMessageSize; over > 0 {
			// Shorten the detail so the JSON stays whole (each byte cut
			// shortens the JSON by at least one); cut raw bytes only if
			// that is not enough.
			for i := 0; i < 4 && over > 0 && a.Detail != "" && a.Detail != "…"; i++ {
				cut := max(len(a.Detail)-over-len("…"), 0)
				for cut > 0 && !utf8.RuneStart(a.Detail[cut]) {
					cut--
				}
				a.Detail = a.Detail[:cut] + "…"
				m, err := s.format(nil, a, time.Now())
				if err != nil {
					break
				}
				msg, over = m, len(m)-s.cfg.MaxMessageSize
			}
			if len(msg) > s.cfg.MaxMessageSize {
				msg = msg[:s.cfg.MaxMessageSize]
			}
		}
		s.buf = append(s.buf[:0], msg...)
	} else {
		s.buf = strconv.AppendInt(s.buf[:0], int64(len(msg)), 10)
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, msg...)
	}
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sink: syslog %s: %w", s.cfg.Addr, err)
		}
		if s.conn != nil && s.cfg.Network != UDP && stale(s.conn) {
			s.conn.Close()
			s.conn = nil
		}
		if s.conn == nil {
			if now := s.now(); now.Before(s.downUntil) {
				return fmt.Errorf("sink: syslog %s %s: collector down, next attempt in %v: %w", s.cfg.Network, s.cfg.Addr, s.downUntil.Sub(now).Round(time.Millisecond), s.lastErr)
			}
			c, err := s.dial()
			if err != nil {
				last = err
				s.backoff = min(max(2*s.backoff, time.Second), 30*time.Second)
				s.downUntil, s.lastErr = s.now().Add(s.backoff), err
				break
			}
			s.conn, s.backoff = c, 0
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
		if _, err := s.conn.Write(s.buf); err != nil {
			last = err
			s.conn.Close()
			s.conn = nil
			continue
		}
		return nil
	}
	s.log.Warn("syslog delivery failed", "error", last)
	return fmt.Errorf("sink: syslog %s %s: %w", s.cfg.Network, s.cfg.Addr, last)
}

// Close closes the connection.
func (s *syslogSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

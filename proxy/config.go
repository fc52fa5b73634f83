package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/internal/config"
	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// Config is the proxy's configuration: the YAML file's structure and the
// programmatic API's input. Zero values take the defaults documented on each
// field (New fills them in).
type Config struct {
	Listen     Listen     `yaml:"listen"`
	TLS        TLS        `yaml:"tls"`
	CameraSide CameraSide `yaml:"camera_side"`
	Cameras    []Camera   `yaml:"cameras"`
	// Readers are the recorders allowed to read. When empty, reading needs no
	// credentials (any client that reaches the core-side port may read).
	Readers  []Reader `yaml:"readers"`
	Log      Log      `yaml:"log"`
	Timeouts Timeouts `yaml:"timeouts"`
	// WriteQueueSize is the per-reader queue, in packets; it must hold the
	// largest keyframe plus the GOP sent to a new reader. A power of two.
	// It defaults to 4096.
	WriteQueueSize int `yaml:"write_queue_size"`
	// GOPCacheMaxPackets bounds the per-camera GOP cache (the packets since the
	// last keyframe, sent to a new reader so it starts with a picture). 0 means
	// the default, 4000; -1 disables the cache.
	GOPCacheMaxPackets int `yaml:"gop_cache_max_packets"`
	// PerPacketWrites turns off frame-batched output to TCP readers (one
	// write per access unit) and writes each packet through gortsplib's
	// per-reader queue, as UDP and RTSPS readers always are. For
	// benchmarks and troubleshooting.
	PerPacketWrites bool `yaml:"per_packet_writes"`
	// Limits bound what readers may cost the proxy.
	Limits Limits `yaml:"limits"`
}

// Limits bound the core side's connections and output memory, so that
// readers that connect and stay silent, or never read, cannot exhaust file
// descriptors or memory.
type Limits struct {
	// MaxConnections caps open core-side (RTSP and RTSPS) connections in
	// total; further connections are closed at once (and counted). It
	// defaults to 1024.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource caps open core-side connections from one
	// source address. It defaults to 64.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// OutputBufferBytes is the memory all readers' output queues may hold
	// together. When it is full, the reader holding the most is
	// disconnected. It defaults to 256 MiB.
	OutputBufferBytes int64 `yaml:"output_buffer_bytes"`
	// ReaderQueueBytes is the most one reader's output queue may hold (a
	// reader over it skips to the next keyframe). It defaults to 8 MiB:
	// the largest keyframe plus the GOP sent to a new reader must fit.
	ReaderQueueBytes int64 `yaml:"reader_queue_bytes"`
}

// Listen holds the core-side addresses.
type Listen struct {
	// RTSP is the core-side RTSP (TCP) address. It defaults to ":8554".
	RTSP string `yaml:"rtsp"`
	// RTSPS is the optional RTSP-over-TLS address; it needs TLS.Cert and
	// TLS.Key. Empty disables it.
	RTSPS string `yaml:"rtsps"`
	// Admin serves /metrics, /v1/cameras and /healthz. It defaults to
	// "127.0.0.1:9090"; "off" disables it.
	Admin string `yaml:"admin"`
	// UDPRTP and UDPRTCP are the server ports of the UDP transport for
	// readers (an even port and the next one). They default to ports 8000
	// and 8001 on the RTSP listener's host; "off" for both disables UDP
	// (readers then use TCP).
	UDPRTP  string `yaml:"udp_rtp"`
	UDPRTCP string `yaml:"udp_rtcp"`
}

// TLS is the certificate for RTSPS.
type TLS struct {
	Cert string `yaml:"cert"` // PEM certificate chain file
	Key  string `yaml:"key"`  // PEM private key file
}

// CameraSide configures connections to cameras.
type CameraSide struct {
	// Bind is the source IP address for connections to cameras (the camera
	// network's interface address). Empty lets the system choose.
	Bind string `yaml:"bind"`
}

// Log selects logging for the command (the programmatic API takes a logger).
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// Timeouts bound waits on cameras and readers.
type Timeouts struct {
	// Camera is the read/write timeout towards cameras. It defaults to 10 s.
	Camera time.Duration `yaml:"camera"`
	// Reader is the read/write timeout towards readers. It defaults to 10 s.
	Reader time.Duration `yaml:"reader"`
	// OnDemandStart is how long a reader of an on-demand camera waits for the
	// camera to start. It defaults to 10 s.
	OnDemandStart time.Duration `yaml:"on_demand_start"`
	// OnDemandClose is how long an on-demand camera keeps pulling after its
	// last reader left. It defaults to 10 s.
	OnDemandClose time.Duration `yaml:"on_demand_close"`
	// AuthFailureDelay is the longest delay before answering a failed login
	// (the delay is random between half of it and all of it). It defaults to 2 s.
	AuthFailureDelay time.Duration `yaml:"auth_failure_delay"`
	// BackoffMin and BackoffMax bound the reconnect delay of a camera, which
	// doubles from min to max with ±20 % jitter. They default to 1 s and 30 s.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// AuthFailureBackoff is the reconnect delay (±20 % jitter) after a
	// camera refused the credentials (401 or 403): cameras lock the account
	// after a few failed logins. It defaults to 10 minutes.
	AuthFailureBackoff time.Duration `yaml:"auth_failure_backoff"`
}

// Camera is one camera to pull.
type Camera struct {
	// Name is the path readers use: rtsp://PROXY:8554/<name>. Letters, digits,
	// '.', '_' and '-'.
	Name string `yaml:"name"`
	// URL is the camera's RTSP URL, credentials included. It is never logged
	// or shown unredacted.
	URL SecretURL `yaml:"url"`
	// Transport towards the camera. It defaults to tcp.
	Transport Transport `yaml:"transport"`
	// OnDemand pulls the camera only while a reader is attached.
	OnDemand bool `yaml:"on_demand"`
	// MaxReaders limits concurrent readers of this camera; -1 means no
	// limit. It defaults to 32.
	MaxReaders int `yaml:"max_readers"`
	// Mode is how packets are cleaned: rebuild (default) or passthrough.
	Mode Mode `yaml:"mode"`
	// KeepSEI lists SEI payload types kept in rebuild mode (e.g. recovery_point).
	KeepSEI []string `yaml:"keep_sei"`
	// Audio is keep (default) or drop.
	Audio Audio `yaml:"audio"`
	// AUD, in rebuild mode, starts every access unit with a freshly written
	// access unit delimiter (some recorders want one). Default false.
	AUD bool `yaml:"aud"`
	// TLSFingerprint pins an rtsps:// camera's certificate: the SHA-256 of
	// its DER encoding, 64 hex digits, colons and a "sha256:" prefix
	// allowed. Cameras ship self-signed certificates, so there is no chain
	// to verify; without a pin the connection is encrypted but the camera
	// is not authenticated, and the proxy logs the fingerprint it saw.
	TLSFingerprint string `yaml:"tls_fingerprint"`
}

// parseFingerprint decodes a tls_fingerprint value.
func parseFingerprint(s string) ([sha256.Size]byte, error) {
	var fp [sha256.Size]byte
	h := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:"), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return fp, fmt.Errorf("tls_fingerprint %q: want the SHA-256 of the camera's certificate as 64 hex digits (colons allowed), as printed by: openssl s_client -connect CAMERA:322 </dev/null | openssl x509 -noout -fingerprint -sha256", s)
	}
	copy(fp[:], b)
	return fp, nil
}

// rebuildConfig is the camera's stream-cleaning configuration.
func (c Camera) rebuildConfig() rebuild.Config {
	return rebuild.Config{Mode: rebuild.Mode(c.Mode), KeepSEI: c.KeepSEI, Audio: rebuild.AudioPolicy(c.Audio), AUD: c.AUD}
}

// Reader is a recorder/VMS account.
type Reader struct {
	User string `yaml:"user"`
	// Password in clear text (Basic and Digest work), or PasswordHash
	// (argon2id "$argon2id$v=19$m=...,t=...,p=...$salt$hash" or bcrypt
	// "$2a$..."; only Basic authentication can check a hash).
	Password     string `yaml:"password"`
	PasswordHash string `yaml:"password_hash"`
	// Cameras this reader may read: names, or "*" for all. Empty means none.
	Cameras []string `yaml:"cameras"`
	// Networks the reader may connect from (CIDR or single addresses).
	// Empty means any.
	Networks []string `yaml:"networks"`
}

// Transport is the RTSP transport used towards a camera.
type Transport string

// Transports.
const (
	TransportTCP  Transport = "tcp"
	TransportUDP  Transport = "udp"
	TransportAuto Transport = "auto" // UDP, falling back to TCP
)

// UnmarshalYAML validates the value.
func (t *Transport) UnmarshalYAML(n *yaml.Node) error {
	return config.OneOf(n, "transport", t, TransportTCP, TransportUDP, TransportAuto)
}

// Mode is how a camera's packets are cleaned (see package rebuild).
type Mode string

// UnmarshalYAML validates the value.
func (m *Mode) UnmarshalYAML(n *yaml.Node) error {
	return config.OneOf(n, "mode", m, Mode(rebuild.ModeRebuild), Mode(rebuild.ModePassthrough))
}

// Audio says whether a camera's audio crosses.
type Audio string

// UnmarshalYAML validates the value.
func (a *Audio) UnmarshalYAML(n *yaml.Node) error {
	return config.OneOf(n, "audio", a, Audio(rebuild.AudioKeep), Audio(rebuild.AudioDrop))
}

// DecodeConfigFile reads a configuration file strictly (unknown keys and
// bad values are errors naming file and line) without validating it as a
// whole, so that command-line flags can complete it first.
func DecodeConfigFile(path string) (Config, error) {
	var c Config
	if err := config.LoadFile(path, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (Config, error) {
	c, err := DecodeConfigFile(path)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidationError lists everything wrong with a configuration, one problem a line.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Validate checks the configuration as a whole. Its messages are meant for
// the administrator who wrote the file.
func (c *Config) Validate() error {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }

	if len(c.Cameras) == 0 {
		add("cameras: none configured; add at least one camera with a name and a url")
	}
	names := map[string]int{}
	for i, cam := range c.Cameras {
		where := fmt.Sprintf("cameras[%d]", i)
		if cam.Name != "" {
			where += " (" + cam.Name + ")"
		}
		switch {
		case cam.Name == "":
			add("%s: name is missing; it is the path readers use (rtsp://proxy:8554/<name>)", where)
		case !nameRE.MatchString(cam.Name):
			add("%s: name %q may only hold letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)", where, cam.Name)
		default:
			if j, dup := names[cam.Name]; dup {
				add("%s: name %q is already used by cameras[%d]; names must be unique", where, cam.Name, j)
			}
			names[cam.Name] = i
		}
		if cam.URL.IsZero() {
			add("%s: url is missing (rtsp://user:password@camera-address:554/path)", where)
		}
		if cam.TLSFingerprint != "" {
			if _, err := parseFingerprint(cam.TLSFingerprint); err != nil {
				add("%s: %v", where, err)
			} else if !cam.URL.IsZero() && !strings.HasPrefix(strings.ToLower(cam.URL.reveal()), "rtsps://") {
				add("%s: tls_fingerprint is set but the url is not rtsps://; a fingerprint pins the certificate of an RTSPS camera", where)
			}
		}
		if cam.MaxReaders < -1 {
			add("%s: max_readers is %d; use -1 for no limit or a positive number", where, cam.MaxReaders)
		}
		if err := cam.rebuildConfig().Validate(); err != nil {
			add("%s: %s", where, strings.TrimPrefix(err.Error(), "rebuild: "))
		}
	}

	users := map[string]int{}
	for i, r := range c.Readers {
		where := fmt.Sprintf("readers[%d]", i)
		if r.User != "" {
			where += " (" + r.User + ")"
		}
		if r.User == "" {
			add("%s: user is missing", where)
		} else if strings.ContainsAny(r.User, ":\"") {
			add("%s: user may not contain ':' or '\"'", where)
		} else {
			if j, dup := users[r.User]; dup {
				add("%s: user %q is already defined by readers[%d]", where, r.User, j)
			}
			users[r.User] = i
		}
		switch {
		case r.Password == "" && r.PasswordHash == "":
			add("%s: set password or password_hash", where)
		case r.Password != "" && r.PasswordHash != "":
			add("%s: set password or password_hash, not both", where)
		case r.PasswordHash != "":
			if _, err := parseHash(r.PasswordHash); err != nil {
				add("%s: password_hash: %v", where, err)
			}
		}
		if len(r.Cameras) == 0 {
			add("%s: cameras is empty, so this reader could read nothing; list camera names or \"*\"", where)
		}
		for _, name := range r.Cameras {
			if name == "*" {
				continue
			}
			if _, ok := names[name]; !ok {
				add("%s: camera %q is not defined under cameras", where, name)
			}
		}
		for _, n := range r.Networks {
			if _, err := parseNetwork(n); err != nil {
				add("%s: network %q is not an address or CIDR prefix (like 10.0.0.0/24)", where, n)
			}
		}
	}

	if c.Listen.RTSPS != "" && (c.TLS.Cert == "" || c.TLS.Key == "") {
		add("listen.rtsps is set: tls.cert and tls.key are needed too")
	}
	if c.Listen.RTSPS == "" && (c.TLS.Cert != "" || c.TLS.Key != "") {
		add("tls.cert/tls.key are set but listen.rtsps is empty; set listen.rtsps (e.g. \":8322\") or remove tls")
	}
	if (c.Listen.UDPRTP == "off") != (c.Listen.UDPRTCP == "off") {
		add("listen.udp_rtp and listen.udp_rtcp must both be \"off\" or both be set")
	}
	if c.CameraSide.Bind != "" {
		if _, err := netip.ParseAddr(c.CameraSide.Bind); err != nil {
			add("camera_side.bind %q is not an IP address (use the camera-network interface's address)", c.CameraSide.Bind)
		}
	}
	if q := c.WriteQueueSize; q != 0 && (q < 64 || q&(q-1) != 0) {
		add("write_queue_size %d must be a power of two, at least 64", q)
	}
	l := c.Limits
	if l.MaxConnections < 0 || l.MaxConnectionsPerSource < 0 || l.OutputBufferBytes < 0 || l.ReaderQueueBytes < 0 {
		add("limits: values must be positive (0 takes the default)")
	}
	if l.MaxConnections > 0 && l.MaxConnectionsPerSource > l.MaxConnections {
		add("limits.max_connections_per_source (%d) is larger than limits.max_connections (%d)", l.MaxConnectionsPerSource, l.MaxConnections)
	}
	if l.ReaderQueueBytes > 0 && l.OutputBufferBytes > 0 && l.ReaderQueueBytes > l.OutputBufferBytes {
		add("limits.reader_queue_bytes (%d) is larger than limits.output_buffer_bytes (%d)", l.ReaderQueueBytes, l.OutputBufferBytes)
	}
	if c.Timeouts.BackoffMin != 0 && c.Timeouts.BackoffMax != 0 && c.Timeouts.BackoffMin > c.Timeouts.BackoffMax {
		add("timeouts.backoff_min (%s) is larger than timeouts.backoff_max (%s)", c.Timeouts.BackoffMin, c.Timeouts.BackoffMax)
	}
	if c.Timeouts.AuthFailureBackoff < 0 {
		add("timeouts.auth_failure_backoff (%s) is negative; it is the wait after a camera refused the credentials (default 10m)", c.Timeouts.AuthFailureBackoff)
	}
	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// withDefaults returns c with zero values replaced by their defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Listen.RTSP == "" {
		c.Listen.RTSP = ":8554"
	}
	if c.Listen.Admin == "" {
		c.Listen.Admin = "127.0.0.1:9090"
	}
	if c.Listen.UDPRTP == "" && c.Listen.UDPRTCP == "" {
		// Same interface as the RTSP listener (the core side only).
		host, _, _ := net.SplitHostPort(c.Listen.RTSP)
		c.Listen.UDPRTP, c.Listen.UDPRTCP = net.JoinHostPort(host, "8000"), net.JoinHostPort(host, "8001")
	}
	if c.WriteQueueSize == 0 {
		c.WriteQueueSize = 4096
	}
	if c.GOPCacheMaxPackets == 0 {
		c.GOPCacheMaxPackets = 4000
	}
	if c.Limits.MaxConnections == 0 {
		c.Limits.MaxConnections = 1024
	}
	if c.Limits.MaxConnectionsPerSource == 0 {
		c.Limits.MaxConnectionsPerSource = min(64, c.Limits.MaxConnections)
	}
	if c.Limits.OutputBufferBytes == 0 {
		c.Limits.OutputBufferBytes = 256 << 20
	}
	if c.Limits.ReaderQueueBytes == 0 {
		c.Limits.ReaderQueueBytes = min(8<<20, c.Limits.OutputBufferBytes)
	}
	def(&c.Timeouts.Camera, 10*time.Second)
	def(&c.Timeouts.Reader, 10*time.Second)
	def(&c.Timeouts.OnDemandStart, 10*time.Second)
	def(&c.Timeouts.OnDemandClose, 10*time.Second)
	def(&c.Timeouts.AuthFailureDelay, 2*time.Second)
	def(&c.Timeouts.BackoffMin, time.Second)
	def(&c.Timeouts.BackoffMax, 30*time.Second)
	def(&c.Timeouts.AuthFailureBackoff, 10*time.Minute)
	c.Cameras = slices.Clone(c.Cameras)
	for i := range c.Cameras {
		cam := &c.Cameras[i]
		if cam.Transport == "" {
			cam.Transport = TransportTCP
		}
		if cam.Mode == "" {
			cam.Mode = Mode(rebuild.ModeRebuild)
		}
		if cam.Audio == "" {
			cam.Audio = Audio(rebuild.AudioKeep)
		}
		if cam.MaxReaders == 0 {
			cam.MaxReaders = 32
		}
	}
	return c
}

// parseNetwork accepts a CIDR prefix or a single address.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

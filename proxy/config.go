package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
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
	// Readers are the recorders allowed to read; each must log in. When
	// empty, AllowAnonymous must say so on purpose.
	Readers []Reader `yaml:"readers"`
	// AllowAnonymous lets any client that reaches the reader-side listeners
	// read every camera without credentials. Without readers it must be
	// true (the proxy refuses to start otherwise); with readers it must be
	// false. The demo sets it, on 127.0.0.1 only.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// AdminUsers may use the admin listener (console, API, /metrics;
	// /healthz and /readyz stay open) with HTTP Basic. When set, every
	// request needs one of them, even on loopback. When empty, listen.admin
	// must be a loopback address (the proxy refuses to start otherwise).
	AdminUsers []AdminUser `yaml:"admin_users"`
	// AdminTLS serves the admin listener over HTTPS (cert and key, PEM
	// files; both or neither). Empty: plain HTTP.
	AdminTLS TLS `yaml:"admin_tls"`
	// Preview configures the console's live preview (WebRTC).
	Preview  Preview  `yaml:"preview"`
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
	// Trunk is this proxy's end of QUIC trunks: its key pair and, on an
	// edge, the address and the cores allowed (docs/trunk.md).
	Trunk TrunkEnd `yaml:"trunk"`
	// Trunks, on a core proxy, are the edge proxies it pulls cameras from.
	Trunks []Trunk `yaml:"trunks"`

	// origin says where the values came from (file lines, flags) for
	// messages; nil for a Config built in code.
	origin *origin
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

// Listen holds the reader-side (core network) addresses. Every address is
// IP:port with an IP literal of this host; an empty IP (":8554") listens on
// every interface, the camera network's too, so it is only ever written on
// purpose. Port 0 picks a free port (for tests).
type Listen struct {
	// RTSP is the core-side RTSP (TCP) address. Required: there is no
	// default, so the proxy never listens on an interface nobody chose.
	RTSP string `yaml:"rtsp"`
	// RTSPS is the optional RTSP-over-TLS address; it needs TLS.Cert and
	// TLS.Key. Empty disables it.
	RTSPS string `yaml:"rtsps"`
	// Admin serves the console, the API (/v1/...), /metrics, /healthz and
	// /readyz. It defaults to "127.0.0.1:9554" (9554: clear of
	// Prometheus's 9090, Grafana's 3000, node_exporter's 9100 and
	// MediaMTX's ports); "off" disables it. Off loopback it needs
	// admin_users.
	Admin string `yaml:"admin"`
	// UDPRTP is the server port of the UDP transport for readers (RTP, an
	// even port). It defaults to port 8000 on the RTSP listener's IP;
	// "off" disables UDP (readers then use TCP).
	UDPRTP string `yaml:"udp_rtp"`
	// UDPRTCP is the RTCP port, UDPRTP's port + 1. It defaults to that
	// port on UDPRTP's IP, and is off when UDPRTP is.
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
	// ReadCoalesce, when not 0, lets camera frames wait up to this long
	// before the proxy reads them, so that under load one wake-up of the
	// proxy reads the frames of every camera that sent one meanwhile
	// instead of one wake-up per frame (less CPU per GB; docs/bench.md,
	// "Coalesced camera reads": 5ms saved 12-14 % at 100 cameras and cost
	// more than it saved at 5). It applies to cameras read over plain
	// RTSP/TCP, on Linux. 0 (the default) reads each frame as it arrives.
	// At most 50ms.
	ReadCoalesce time.Duration `yaml:"read_coalesce"`
}

// Log selects logging for the command (the programmatic API takes a logger).
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// Log levels and formats.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

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
	// Password in clear text (Basic and Digest work), or PasswordHash:
	// argon2id "$argon2id$v=19$m=...,t=...,p=...$salt$hash" or bcrypt
	// "$2a$..." (only Basic can check them), or the Digest HA1
	// "$digest-md5$realm=ipcam$<hex(md5(user:ipcam:password))>" (Digest and
	// Basic; password-equivalent for this realm, see DigestHash). Make them
	// with `cordon proxy hash`.
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

// DecodeConfigFile reads a configuration file strictly without validating
// it as a whole, so that command-line flags can complete it first. It
// fails on a file that cannot be read or is not YAML. Unknown keys and
// bad values are kept, with their lines, and reported by Validate together
// with every other problem, so that one run lists them all; the Config
// also remembers the line of each key for Validate's messages.
func DecodeConfigFile(path string) (Config, error) {
	data, err := config.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var doc yaml.Node
	if err := config.Decode(path, data, &doc); err != nil {
		return Config{}, err // not YAML: nothing more to say
	}
	o := &origin{file: path, lines: config.KeyLines(&doc)}
	var c Config
	if err := config.Decode(path, data, &c); err != nil {
		var one *config.Error
		var many config.Errors
		switch {
		case errors.As(err, &many):
		case errors.As(err, &one):
			many = config.Errors{one}
		default:
			return Config{}, err
		}
		for _, e := range many {
			o.decodeErrs = append(o.decodeErrs, Problem{Where: e.File + ":" + strconv.Itoa(e.Line), line: e.Line, Msg: e.Msg})
		}
	}
	c.origin = o
	return c, nil
}

// origin is where a Config's values came from.
type origin struct {
	file       string
	lines      map[string]int    // key path → line (config.KeyLines)
	flags      map[string]string // key path → the flag that set it
	decodeErrs []Problem         // unknown keys and bad values, from decoding
}

// SetByFlag records that the value at key (say "listen.rtsp") was set by a
// command-line flag (say "--listen"), so that a problem with it names the
// flag rather than a line of the file.
func (c *Config) SetByFlag(key, flag string) {
	if c.origin == nil {
		c.origin = &origin{}
	}
	if c.origin.flags == nil {
		c.origin.flags = map[string]string{}
	}
	c.origin.flags[key] = flag
}

// where locates key: its line in the file (or its closest parent's), or
// the flag that set it.
func (o *origin) where(key string) (string, int) {
	if o == nil {
		return "", 0
	}
	if f, ok := o.flags[key]; ok {
		return f, 0
	}
	for k := key; k != ""; {
		if l, ok := o.lines[k]; ok {
			return o.file + ":" + strconv.Itoa(l), l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return o.file, 0
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Problem is one thing wrong with a configuration, or worth a warning.
type Problem struct {
	// Where is "FILE:LINE" (or "FILE" for a missing key) when the
	// configuration came from a file, the flag that set the value, or
	// empty for a Config built in code.
	Where string
	// Key is the key path, like "listen.rtsp" or "cameras[2].url"; empty
	// for a problem found while decoding the file.
	Key string
	// Msg says what is wrong and what to write instead. It names the key.
	Msg string

	line int
}

func (p Problem) String() string {
	if p.Where == "" {
		return p.Msg
	}
	return p.Where + ": " + p.Msg
}

// ValidationError lists everything wrong with a configuration, one problem a
// line. It is exported for the command, which maps it to a usage error (exit
// code 2) and names the file when there is more than one problem.
type ValidationError struct{ Problems []Problem }

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return fmt.Sprintf("%d problems:\n  %s", len(e.Problems), strings.Join(s, "\n  "))
}

// problems collects a configuration's problems, each located by its key.
type problems struct {
	o    *origin
	list []Problem
}

func (ps *problems) add(key, format string, args ...any) {
	w, l := ps.o.where(key)
	ps.list = append(ps.list, Problem{Where: w, Key: key, Msg: fmt.Sprintf(format, args...), line: l})
}

// result merges the file's decoding problems, drops a problem on a line
// that decoding already reported (a rejected value is also a missing one),
// and sorts by line when the configuration came from a file.
func (ps *problems) result() []Problem {
	if ps.o == nil || (len(ps.o.decodeErrs) == 0 && ps.o.file == "") {
		return ps.list
	}
	out := slices.Clone(ps.o.decodeErrs)
	seen := map[int]bool{}
	for _, p := range out {
		seen[p.line] = true
	}
	for _, p := range ps.list {
		if p.line == 0 || !seen[p.line] {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b Problem) int { return a.line - b.line })
	return out
}

// Validate checks the configuration as a whole, without looking at this
// host (Check does both). It reports every problem at once. Its messages
// are meant for the administrator who wrote the file.
func (c *Config) Validate() error {
	errs, _ := c.collect(nil)
	if len(errs) > 0 {
		return &ValidationError{Problems: errs}
	}
	return nil
}

// Check is Validate and more: it checks the configuration against this
// host (listener and camera_side.bind addresses are this host's, the TLS
// files load) and returns warnings that do not stop the proxy (a reader-side
// listener on the camera network's interface). Every problem is in the
// error (a *ValidationError) at once. Ports in use are not checked: the
// running proxy holds its own, and a check before a reload must pass.
func (c *Config) Check() (warnings []Problem, err error) {
	h, herr := loadHost()
	if herr != nil {
		h = nil // cannot list interfaces: check what does not need them
	}
	errs, warns := c.collect(h)
	if len(errs) > 0 {
		return warns, &ValidationError{Problems: errs}
	}
	return warns, nil
}

// collect returns the configuration's problems and warnings; with a host,
// also those that depend on this host.
func (c *Config) collect(h *host) (errs, warns []Problem) {
	ps := &problems{o: c.origin}
	if len(c.Cameras) == 0 && len(c.Trunks) == 0 {
		ps.add("cameras", "cameras: none configured; add at least one camera with a name and a url")
	}
	names := c.checkCameras(ps.add)
	c.checkTrunks(ps.add, names)
	c.checkReaders(ps.add, names)
	c.checkAdmin(ps.add, names)
	c.checkPreview(ps.add)
	ls := c.checkListeners(ps)
	bind := c.checkSettings(ps.add)
	if h == nil {
		return ps.result(), nil
	}
	wps := &problems{o: c.origin}
	c.checkHost(h, ls, bind, ps, wps)
	return ps.result(), wps.list
}

// addFunc records one problem at a key.
type addFunc = func(key, format string, args ...any)

// checkCameras checks the cameras; it returns the index of each name.
func (c *Config) checkCameras(add addFunc) map[string]int {
	names := map[string]int{}
	for i, cam := range c.Cameras {
		key := fmt.Sprintf("cameras[%d]", i)
		where := key
		if cam.Name != "" {
			where += " (" + cam.Name + ")"
		}
		switch {
		case cam.Name == "":
			add(key+".name", "%s: name is missing; it is the path readers use (rtsp://proxy:8554/<name>)", where)
		case !nameRE.MatchString(cam.Name):
			add(key+".name", "%s: name %q may only hold letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)", where, cam.Name)
		default:
			if j, dup := names[cam.Name]; dup {
				add(key+".name", "%s: name %q is already used by cameras[%d]; names must be unique", where, cam.Name, j)
			}
			names[cam.Name] = i
		}
		cam.check(add, key, where)
	}
	return names
}

// check checks one camera (at key) but its name.
func (cam Camera) check(add addFunc, key, where string) {
	if cam.URL.IsZero() {
		add(key+".url", "%s: url is missing (rtsp://user:password@camera-address:554/path)", where)
	}
	if cam.TLSFingerprint != "" {
		if _, err := parseFingerprint(cam.TLSFingerprint); err != nil {
			add(key+".tls_fingerprint", "%s: %v", where, err)
		} else if !cam.URL.IsZero() && !strings.HasPrefix(strings.ToLower(cam.URL.reveal()), "rtsps://") {
			add(key+".tls_fingerprint", "%s: tls_fingerprint is set but the url is not rtsps://; a fingerprint pins the certificate of an RTSPS camera", where)
		}
	}
	if cam.MaxReaders < -1 {
		add(key+".max_readers", "%s: max_readers is %d; use -1 for no limit or a positive number", where, cam.MaxReaders)
	}
	if err := cam.rebuildConfig().Validate(); err != nil {
		add(key+".keep_sei", "%s: %s", where, strings.TrimPrefix(err.Error(), "rebuild: "))
	}
}

// checkReaders checks the readers (names: the cameras) and whether
// anonymous reading is meant.
func (c *Config) checkReaders(add addFunc, names map[string]int) {
	users := map[string]int{}
	for i, r := range c.Readers {
		key := fmt.Sprintf("readers[%d]", i)
		where := key
		if r.User != "" {
			where += " (" + r.User + ")"
		}
		if r.User == "" {
			add(key, "%s: user is missing", where)
		} else if strings.ContainsAny(r.User, ":\"") {
			add(key+".user", "%s: user may not contain ':' or '\"'", where)
		} else {
			if j, dup := users[r.User]; dup {
				add(key+".user", "%s: user %q is already defined by readers[%d]", where, r.User, j)
			}
			users[r.User] = i
		}
		r.check(add, key, where, names)
	}
	switch {
	case len(c.Readers) == 0 && !c.AllowAnonymous:
		add("readers", "readers: none configured, so anyone who reaches listen.rtsp could read every camera; "+
			"add readers (each with user, password and cameras) so that recorders must log in, or set allow_anonymous: true to allow that on purpose")
	case len(c.Readers) > 0 && c.AllowAnonymous:
		add("allow_anonymous", "allow_anonymous is true but readers are configured, and readers must log in; remove allow_anonymous (or the readers)")
	}
}

// check checks one reader (at key) but its user.
func (r Reader) check(add addFunc, key, where string, names map[string]int) {
	switch {
	case r.Password == "" && r.PasswordHash == "":
		add(key, "%s: set password or password_hash", where)
	case r.Password != "" && r.PasswordHash != "":
		add(key+".password_hash", "%s: set password or password_hash, not both", where)
	case r.PasswordHash != "":
		if _, err := parseHash(r.PasswordHash); err != nil {
			add(key+".password_hash", "%s: password_hash: %v", where, err)
		}
	}
	if len(r.Cameras) == 0 {
		add(key+".cameras", "%s: cameras is empty, so this reader could read nothing; list camera names or \"*\"", where)
	}
	for j, name := range r.Cameras {
		if name == "*" {
			continue
		}
		if _, ok := names[name]; !ok && !trunkCovers(names, name) {
			add(fmt.Sprintf("%s.cameras[%d]", key, j), "%s: camera %q is not defined under cameras", where, name)
		}
	}
	for j, n := range r.Networks {
		if _, err := parseNetwork(n); err != nil {
			add(fmt.Sprintf("%s.networks[%d]", key, j), "%s: network %q is not an address or CIDR prefix (like 10.0.0.0/24)", where, n)
		}
	}
}

// checkSettings checks the settings outside cameras, readers and listen;
// it returns camera_side.bind (invalid when not set or wrong).
func (c *Config) checkSettings(add addFunc) netip.Addr {
	if c.Listen.RTSPS != "" && (c.TLS.Cert == "" || c.TLS.Key == "") {
		add("listen.rtsps", "listen.rtsps is set: tls.cert and tls.key are needed too")
	}
	if c.Listen.RTSPS == "" && (c.TLS.Cert != "" || c.TLS.Key != "") {
		add("tls", "tls.cert/tls.key are set but listen.rtsps is empty; set listen.rtsps (e.g. \":8322\") or remove tls")
	}
	var bind netip.Addr
	if c.CameraSide.Bind != "" {
		a, err := netip.ParseAddr(c.CameraSide.Bind)
		if err != nil {
			add("camera_side.bind", "camera_side.bind %q is not an IP address (use the camera-network interface's address)", c.CameraSide.Bind)
		} else {
			bind = a.Unmap()
		}
	}
	if d := c.CameraSide.ReadCoalesce; d < 0 || d > maxReadCoalesce {
		add("camera_side.read_coalesce", "camera_side.read_coalesce %s is out of range: 0 (off) to %s", d, maxReadCoalesce)
	}
	c.checkTuning(add)
	return bind
}

// checkTuning checks log, write_queue_size, limits and timeouts.
func (c *Config) checkTuning(add addFunc) {
	if c.Log.Level != "" && !slices.Contains(logLevels, c.Log.Level) {
		add("log.level", "log.level %q is not one of %s", c.Log.Level, strings.Join(logLevels, ", "))
	}
	if c.Log.Format != "" && !slices.Contains(logFormats, c.Log.Format) {
		add("log.format", "log.format %q is not one of %s", c.Log.Format, strings.Join(logFormats, ", "))
	}
	if q := c.WriteQueueSize; q != 0 && (q < 64 || q&(q-1) != 0) {
		add("write_queue_size", "write_queue_size %d must be a power of two, at least 64", q)
	}
	l := c.Limits
	if l.MaxConnections < 0 || l.MaxConnectionsPerSource < 0 || l.OutputBufferBytes < 0 || l.ReaderQueueBytes < 0 {
		add("limits", "limits: values must be positive (0 takes the default)")
	}
	if l.MaxConnections > 0 && l.MaxConnectionsPerSource > l.MaxConnections {
		add("limits.max_connections_per_source", "limits.max_connections_per_source (%d) is larger than limits.max_connections (%d)", l.MaxConnectionsPerSource, l.MaxConnections)
	}
	if l.ReaderQueueBytes > 0 && l.OutputBufferBytes > 0 && l.ReaderQueueBytes > l.OutputBufferBytes {
		add("limits.reader_queue_bytes", "limits.reader_queue_bytes (%d) is larger than limits.output_buffer_bytes (%d)", l.ReaderQueueBytes, l.OutputBufferBytes)
	}
	if c.Timeouts.BackoffMin != 0 && c.Timeouts.BackoffMax != 0 && c.Timeouts.BackoffMin > c.Timeouts.BackoffMax {
		add("timeouts.backoff_min", "timeouts.backoff_min (%s) is larger than timeouts.backoff_max (%s)", c.Timeouts.BackoffMin, c.Timeouts.BackoffMax)
	}
	if c.Timeouts.AuthFailureBackoff < 0 {
		add("timeouts.auth_failure_backoff", "timeouts.auth_failure_backoff (%s) is negative; it is the wait after a camera refused the credentials (default 10m)", c.Timeouts.AuthFailureBackoff)
	}
}

// maxReadCoalesce bounds camera_side.read_coalesce (the latency it may add).
const maxReadCoalesce = 50 * time.Millisecond

// defaultAdmin is listen.admin's default.
const defaultAdmin = "127.0.0.1:9554"

// withDefaults returns c with zero values replaced by their defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	// Listen.RTSP has no default (Validate requires it); the others
	// follow it or stay on loopback.
	if c.Listen.Admin == "" {
		c.Listen.Admin = defaultAdmin
	}
	if c.Listen.UDPRTP == "" {
		// Same interface as the RTSP listener (the core side only).
		host, _, _ := net.SplitHostPort(c.Listen.RTSP)
		c.Listen.UDPRTP = net.JoinHostPort(host, "8000")
	}
	switch {
	case c.Listen.UDPRTP == "off":
		c.Listen.UDPRTCP = "off"
	case c.Listen.UDPRTCP == "":
		host, port, _ := net.SplitHostPort(c.Listen.UDPRTP)
		n, _ := strconv.Atoi(port)
		c.Listen.UDPRTCP = net.JoinHostPort(host, strconv.Itoa(n+1))
	}
	if c.Preview.MaxSessions == 0 {
		c.Preview.MaxSessions = 8
	}
	def(&c.Preview.IdleTimeout, 10*time.Second)
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

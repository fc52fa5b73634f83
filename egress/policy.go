package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-vms/cordon/internal/config"
	"github.com/cordon-vms/cordon/internal/humanize"
	"go.yaml.in/yaml/v3"
)

// Policy says which hosts are cameras, whom they may talk to, and the
// thresholds of the detections. It is read strictly from YAML (LoadPolicy);
// zero values take the documented defaults (NewEngine fills them).
type Policy struct {
	// Cameras are the addresses watched.
	Cameras Cameras `yaml:"cameras"`
	// Allow lists the infrastructure cameras may talk to. Traffic matching a
	// rule raises no unexpected-destination, volume, beacon, lateral or
	// new-destination alert (vendor-cloud and dns-tunnel still apply: a vendor
	// domain resolved through the allowed resolver is still reported).
	Allow []AllowRule `yaml:"allow"`
	// Lateral configures camera → camera and camera → core detection.
	Lateral Lateral `yaml:"lateral"`
	// Thresholds of the detections.
	Thresholds Thresholds `yaml:"thresholds"`
	// Watchlists are extra watch-list files (the format `cordon inspect
	// --watchlist` writes), merged with the embedded vendor-cloud list.
	// Relative paths are relative to the policy file.
	Watchlists []string `yaml:"watchlists"`
	// Baseline configures new-destination learning.
	Baseline BaselineConfig `yaml:"baseline"`
	// Flows bounds the flow table.
	Flows FlowLimits `yaml:"flows"`
	// Decode tunes packet decoding.
	Decode Decode `yaml:"decode"`
}

// Decode tunes packet decoding.
type Decode struct {
	// VXLANPorts are the UDP ports VXLAN (RFC 7348) is decoded on: a
	// datagram to one of them whose 8-byte header is valid (flags 0x08,
	// reserved bits zero) and that carries an Ethernet frame is unwrapped;
	// any other stays an ordinary UDP flow. It defaults to
	// DefaultVXLANPorts.
	VXLANPorts []uint16 `yaml:"vxlan_ports"`
}

// DefaultVXLANPorts are the IANA VXLAN port and Linux's default.
var DefaultVXLANPorts = []uint16{4789, 8472}

// Cameras selects the camera addresses.
type Cameras struct {
	// Networks are the camera networks (CIDRs or single addresses). Required.
	Networks []Prefix `yaml:"networks"`
	// Exclude removes addresses from Networks (gateway, proxy, syslog server).
	Exclude []Prefix `yaml:"exclude"`
	// Names gives cameras a name and vendor used in alerts (optional).
	Names []CameraName `yaml:"names"`
}

// CameraName names one camera.
type CameraName struct {
	Addr   Addr   `yaml:"addr"`
	Name   string `yaml:"name"`
	Vendor string `yaml:"vendor"`
}

// AllowRule allows traffic between cameras and Host. A rule matches a
// connection when the peer is in Host, Proto matches (any when empty), and
// Port equals the service port of the connection — the port of whoever was
// connected to: the peer's port when the camera connects out, the camera's
// port when the peer connects in (the proxy pulling RTSP on 554). A rule
// without a port allows every port.
type AllowRule struct {
	Host  Prefix `yaml:"host"`
	Proto Proto  `yaml:"proto"`
	Port  uint16 `yaml:"port"`
	Note  string `yaml:"note"`
}

// Lateral configures the lateral detection.
type Lateral struct {
	// Core are networks cameras must never reach on management ports
	// (servers, workstations). Other cameras are always included.
	Core []Prefix `yaml:"core"`
	// Ports are the management ports. It defaults to DefaultLateralPorts.
	Ports []uint16 `yaml:"ports"`
}

// DefaultLateralPorts are management and device-service ports: FTP, SSH,
// telnet, RPC, NetBIOS, SMB, MSSQL, MySQL, RDP, VNC, WinRM, Hikvision SDK
// (8000), Reolink (9000), XiongMai DVRIP (34567), Dahua (37777).
var DefaultLateralPorts = []uint16{21, 22, 23, 135, 139, 445, 1433, 3306, 3389, 5900, 5985, 5986, 8000, 9000, 34567, 37777}

// Thresholds tune the detections.
type Thresholds struct {
	// Aggregate is the window over which repeats of one camera, kind and
	// destination are folded into one alert. It defaults to 1m.
	Aggregate time.Duration `yaml:"aggregate"`
	// Suppress is how long, after an alert of one camera, kind and
	// destination was emitted, its later occurrences are not alerted one
	// window at a time but folded into one summary of the suppressed
	// repeats (Alert.Repeat) at the end of the period, as Zeek's notice
	// suppression. It defaults to 0: every window alerts.
	Suppress  time.Duration `yaml:"suppress"`
	DNSTunnel DNSTunnel     `yaml:"dns_tunnel"`
	Beacon    Beacon        `yaml:"beacon"`
	Volume    Volume        `yaml:"volume"`
}

// DNSTunnel raises dns-tunnel when, within Window, one camera sends at least
// Queries queries and at least LongNames distinct suspicious names under one
// registered domain. A name is suspicious when the part left of the
// registered domain has at least MinLength characters, or contains a hex
// label of 16+ characters, or has a character entropy of 3.5 bits or more
// over 12+ characters.
type DNSTunnel struct {
	Window    time.Duration `yaml:"window"`     // defaults to 5m
	Queries   int           `yaml:"queries"`    // defaults to 25
	LongNames int           `yaml:"long_names"` // defaults to 15
	MinLength int           `yaml:"min_length"` // defaults to 20
}

// Beacon raises beacon when a camera contacts one non-allowed destination at
// least Events times at regular intervals: the mean interval of the last
// Events contacts is at least MinInterval and their standard deviation at
// most MaxJitter of the mean. A contact is a new connection or datagram flow,
// or a packet after the flow was idle for MinInterval/2; retransmitted SYNs
// are not contacts.
type Beacon struct {
	Events      int           `yaml:"events"`       // defaults to 6
	MinInterval time.Duration `yaml:"min_interval"` // defaults to 10s
	MaxJitter   float64       `yaml:"max_jitter"`   // defaults to 0.1
}

// Volume raises volume when a camera sends more than Bytes to non-allowed
// destinations within Window (bytes the camera sends only, on connections it
// opened).
type Volume struct {
	Window time.Duration `yaml:"window"` // defaults to 5m
	Bytes  ByteSize      `yaml:"bytes"`  // defaults to 20MB
}

// BaselineConfig configures new-destination.
type BaselineConfig struct {
	// File is where the learned destinations are kept across restarts.
	// Empty disables new-destination (the --baseline flag sets it too).
	File string `yaml:"file"`
	// Learn is how long after the baseline was created new destinations are
	// learned silently. It defaults to 0: every new one is reported.
	Learn time.Duration `yaml:"learn"`
	// Max bounds the number of learned destinations. It defaults to 100000.
	Max int `yaml:"max"`
}

// FlowLimits bounds the flow table.
type FlowLimits struct {
	// Max is the number of flows tracked; the least recently seen flow is
	// evicted (and counted) when a new one arrives. It defaults to 100000.
	Max int `yaml:"max"`
	// Idle is how long a flow without packets is kept. It defaults to 5m.
	Idle time.Duration `yaml:"idle"`
}

// Defaults fills zero values with the documented defaults.
func (p *Policy) Defaults() {
	d := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	i := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	t := &p.Thresholds
	d(&t.Aggregate, time.Minute)
	d(&t.DNSTunnel.Window, 5*time.Minute)
	i(&t.DNSTunnel.Queries, 25)
	i(&t.DNSTunnel.LongNames, 15)
	i(&t.DNSTunnel.MinLength, 20)
	i(&t.Beacon.Events, 6)
	d(&t.Beacon.MinInterval, 10*time.Second)
	if t.Beacon.MaxJitter == 0 {
		t.Beacon.MaxJitter = 0.1
	}
	d(&t.Volume.Window, 5*time.Minute)
	if t.Volume.Bytes == 0 {
		t.Volume.Bytes = 20 << 20
	}
	if len(p.Lateral.Ports) == 0 {
		p.Lateral.Ports = DefaultLateralPorts
	}
	if len(p.Decode.VXLANPorts) == 0 {
		p.Decode.VXLANPorts = DefaultVXLANPorts
	}
	i(&p.Baseline.Max, 100000)
	i(&p.Flows.Max, 100000)
	d(&p.Flows.Idle, 5*time.Minute)
}

// LoadPolicy reads, strictly decodes and validates a policy file (see
// DecodePolicyFile). NewEngine fills the defaults.
func LoadPolicy(path string) (*Policy, error) {
	var p Policy
	if err := DecodePolicyFile(path, &p, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// DecodePolicyFile reads the YAML file at path strictly into v — a *Policy,
// or a struct that holds one inline (the command's file adds the alert
// routes), p pointing at it — and validates p. It reports every problem at
// once, in line order, each as FILE:LINE: message (config.Errors): unknown
// keys and bad values from decoding, then what Validate finds, placed at
// the line of the key it names. A key whose value decoding already rejected
// is not reported twice.
func DecodePolicyFile(path string, v any, p *Policy) error {
	data, err := config.ReadFile(path)
	if err != nil {
		return err
	}
	return decodePolicy(path, data, v, p)
}

// parsePolicy is LoadPolicy for in-memory data; name is used in messages.
func parsePolicy(name string, data []byte) (*Policy, error) {
	var p Policy
	if err := decodePolicy(name, data, &p, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func decodePolicy(name string, data []byte, v any, p *Policy) error {
	var doc yaml.Node
	if err := config.Decode(name, data, &doc); err != nil {
		return err // not YAML: nothing more to say
	}
	var errs config.Errors
	if err := config.Decode(name, data, v); err != nil {
		var one *config.Error
		switch {
		case errors.As(err, &errs):
		case errors.As(err, &one):
			errs = config.Errors{one}
		default:
			return err
		}
	}
	rejected := map[int]bool{}
	for _, e := range errs {
		rejected[e.Line] = true
		if strings.Contains(e.Msg, "appears twice") {
			// The YAML decoder abandons a mapping with a duplicate key:
			// validating what it left would report its keys missing.
			slices.SortStableFunc(errs, func(a, b *config.Error) int { return a.Line - b.Line })
			return errs
		}
	}
	for _, e := range p.validate(name, config.KeyLines(&doc)) {
		if e.Line == 0 || !rejected[e.Line] {
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *config.Error) int { return a.Line - b.Line })
	return errs
}

// Validate checks what a per-field decoder cannot: required sections and
// ranges. name prefixes the messages. It reports every problem at once
// (config.Errors).
func (p *Policy) Validate(name string) error {
	if errs := p.validate(name, nil); len(errs) > 0 {
		return errs
	}
	return nil
}

// validate returns p's problems; lines (config.KeyLines of the file) places
// each at the line of the key it names, or of its closest parent.
func (p *Policy) validate(name string, lines map[string]int) config.Errors {
	var errs config.Errors
	add := func(key, format string, args ...any) {
		line := 0
		for k := key; k != "" && line == 0; {
			if l, ok := lines[k]; ok {
				line = l
				break
			}
			i := strings.LastIndexAny(k, ".[")
			if i < 0 {
				break
			}
			k = k[:i]
		}
		errs = append(errs, &config.Error{File: name, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if len(p.Cameras.Networks) == 0 {
		add("cameras.networks", "cameras.networks is empty: list the camera networks, like [192.168.50.0/24]")
	}
	t := p.Thresholds
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"thresholds.aggregate", t.Aggregate}, {"thresholds.suppress", t.Suppress},
		{"thresholds.dns_tunnel.window", t.DNSTunnel.Window}, {"thresholds.beacon.min_interval", t.Beacon.MinInterval},
		{"thresholds.volume.window", t.Volume.Window}, {"baseline.learn", p.Baseline.Learn}, {"flows.idle", p.Flows.Idle},
	} {
		if d.v < 0 {
			add(d.key, "%s is %s: must not be negative", d.key, d.v)
		}
	}
	if t.DNSTunnel.Queries < 0 || t.DNSTunnel.LongNames < 0 || t.DNSTunnel.MinLength < 0 {
		add("thresholds.dns_tunnel", "thresholds.dns_tunnel: queries, long_names and min_length must be positive")
	}
	if t.DNSTunnel.LongNames > t.DNSTunnel.Queries && t.DNSTunnel.Queries > 0 {
		add("thresholds.dns_tunnel.long_names", "thresholds.dns_tunnel.long_names (%d) is larger than queries (%d): it could never trigger", t.DNSTunnel.LongNames, t.DNSTunnel.Queries)
	}
	if t.Beacon.Events < 0 || (t.Beacon.Events > 0 && t.Beacon.Events < 3) {
		add("thresholds.beacon.events", "thresholds.beacon.events is %d: at least 3 contacts are needed to judge regularity", t.Beacon.Events)
	}
	if t.Beacon.Events > maxBeaconEvents {
		add("thresholds.beacon.events", "thresholds.beacon.events is %d: at most %d", t.Beacon.Events, maxBeaconEvents)
	}
	if t.Beacon.MaxJitter < 0 || t.Beacon.MaxJitter > 1 {
		add("thresholds.beacon.max_jitter", "thresholds.beacon.max_jitter is %g: want a fraction of the interval between 0 and 1, like 0.1", t.Beacon.MaxJitter)
	}
	if p.Baseline.Max < 0 {
		add("baseline.max", "baseline.max is %d: must be positive", p.Baseline.Max)
	}
	if p.Flows.Max < 0 {
		add("flows.max", "flows.max is %d: must be positive", p.Flows.Max)
	}
	if slices.Contains(p.Decode.VXLANPorts, 0) {
		add("decode.vxlan_ports", "decode.vxlan_ports: port 0 is not a port")
	}
	for i, c := range p.Cameras.Names {
		if !c.Addr.IsValid() || c.Name == "" {
			add(fmt.Sprintf("cameras.names[%d]", i), "cameras.names entry %d: set both addr and name", i+1)
		}
	}
	return errs
}

// Prefix is an address or a network in CIDR notation.
type Prefix struct{ netip.Prefix }

// UnmarshalYAML accepts "192.168.50.2" and "192.168.50.0/24".
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	v, err := parsePrefix(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return config.At(n, "%q is not an IP address or network like 192.168.50.0/24", n.Value)
	}
	*p = v
	return nil
}

// parsePrefix parses an address or a CIDR.
func parsePrefix(s string) (Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Prefix{}, err
		}
		return Prefix{p.Masked()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return Prefix{}, err
	}
	a = a.Unmap()
	return Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
}

// Proto is an IP protocol name in a policy: tcp, udp, icmp, or empty for any.
type Proto string

// UnmarshalYAML validates the protocol name.
func (p *Proto) UnmarshalYAML(n *yaml.Node) error {
	switch n.Value {
	case "tcp", "udp", "icmp", "any", "":
		*p = Proto(n.Value)
		if *p == "any" {
			*p = ""
		}
		return nil
	}
	return config.At(n, "proto %q is not one of tcp, udp, icmp, any", n.Value)
}

func (p Proto) number() uint8 {
	switch p {
	case "tcp":
		return 6
	case "udp":
		return 17
	case "icmp":
		return 1
	}
	return 0
}

// UnmarshalYAML checks the keys and cross-field rules of an allow entry.
func (r *AllowRule) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return config.At(n, "an allow entry is a mapping like {host: 192.168.50.1, proto: udp, port: 53}")
	}
	var hostSeen bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "host":
			hostSeen = true
			err = r.Host.UnmarshalYAML(v)
		case "proto":
			err = r.Proto.UnmarshalYAML(v)
		case "port":
			p, perr := strconv.ParseUint(v.Value, 10, 16)
			if perr != nil || p == 0 {
				return config.At(v, "port %q is not a port number between 1 and 65535", v.Value)
			}
			r.Port = uint16(p)
		case "note":
			r.Note = v.Value
		default:
			return config.At(k, "unknown key %q in allow entry (want host, proto, port, note)", k.Value)
		}
		if err != nil {
			return err
		}
	}
	if !hostSeen {
		return config.At(n, "allow entry without host: say which address or network is allowed")
	}
	if r.Port != 0 && r.Proto != "tcp" && r.Proto != "udp" {
		return config.At(n, "allow entry for %s has port %d but no proto: add proto: tcp or proto: udp", r.Host, r.Port)
	}
	return nil
}

// ByteSize is a number of bytes written as 1048576, 500kB, 20MB, 100M or 1GiB.
type ByteSize uint64

// UnmarshalYAML parses a size with an optional unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if err != nil {
		return config.At(n, "%q is not a size like 500kB, 20MB, 100M or 1GiB", n.Value)
	}
	*b = v
	return nil
}

// parseByteSize parses a size in cordon's one size syntax
// (humanize.ParseBytes: 1048576, 500kB, 20MB, 100M, 1GiB; kB/MB/GB are
// powers of 1000, K/M/G and KiB/MiB/GiB powers of 1024). Zero is refused:
// every size in a policy is a threshold or a bound.
func parseByteSize(s string) (ByteSize, error) {
	v, err := humanize.ParseBytes(s)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("egress: bad size %q", s)
	}
	return ByteSize(v), nil
}

func (b ByteSize) String() string {
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(b)/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(b)/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(b)/1e3)
	}
	return fmt.Sprintf("%d B", uint64(b))
}

// Addr is one IP address in a policy.
type Addr struct{ netip.Addr }

// UnmarshalYAML parses an IPv4 or IPv6 address.
func (a *Addr) UnmarshalYAML(n *yaml.Node) error {
	v, err := netip.ParseAddr(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return config.At(n, "%q is not an IP address like 192.168.50.10", n.Value)
	}
	a.Addr = v.Unmap()
	return nil
}

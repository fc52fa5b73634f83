package proxy

import (
	"slices"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/internal/config"
	"github.com/cordon-vms/cordon/internal/humanize"
)

// TrunkTransport is how one camera's media crosses a trunk.
type TrunkTransport string

// Trunk transports.
const (
	// TrunkStream carries the camera on its own reliable QUIC stream:
	// nothing is lost, a congested trunk shows as the edge skipping whole
	// GOPs (the default).
	TrunkStream TrunkTransport = "stream"
	// TrunkDatagram carries each RTP packet in QUIC DATAGRAM frames:
	// lower latency, never retransmitted; a lost datagram shows as the
	// core's readers skipping to the next keyframe (counted).
	TrunkDatagram TrunkTransport = "datagram"
)

// UnmarshalYAML validates the value.
func (t *TrunkTransport) UnmarshalYAML(n *yaml.Node) error {
	return config.OneOf(n, "transport", t, TrunkStream, TrunkDatagram)
}

// Bitrate is a rate in bits per second, written as humanize.ParseBitrate
// reads it ("50M" is 50 Mbit/s).
type Bitrate int64

// UnmarshalYAML parses the value.
func (b *Bitrate) UnmarshalYAML(n *yaml.Node) error {
	v, err := humanize.ParseBitrate(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return config.At(n, "bad bitrate %q (want bits per second, e.g. 50M, 800k, 1.5G or 50Mbit/s)", n.Value)
	}
	*b = Bitrate(v)
	return nil
}

// MarshalYAML writes the value as it is read.
func (b Bitrate) MarshalYAML() (any, error) { return int64(b), nil }

// String is the rate for people ("50.0 Mbit/s").
func (b Bitrate) String() string { return humanize.Bitrate(int64(b)) }

// TrunkCamera overrides a trunk's settings for one of its cameras.
type TrunkCamera struct {
	// Transport is this camera's; it defaults to the trunk's.
	Transport TrunkTransport `yaml:"transport"`
	// FEC is this camera's; it defaults to the trunk's.
	FEC TrunkFEC `yaml:"fec"`
	// AlwaysOn is this camera's; it defaults to the trunk's.
	AlwaysOn *bool `yaml:"always_on"`
}

// trunkCameraMedia is how one camera of trunk tr is carried.
func (tr *Trunk) cameraMedia(name string) (TrunkTransport, bool) {
	transport, always := tr.Transport, tr.AlwaysOn
	if o, ok := tr.Overrides[name]; ok {
		if o.Transport != "" {
			transport = o.Transport
		}
		if o.AlwaysOn != nil {
			always = *o.AlwaysOn
		}
	}
	if transport == "" {
		transport = TrunkStream
	}
	return transport, always
}

// cameraFEC is the FEC of one camera of trunk tr (off unless it is a
// datagram camera).
func (tr *Trunk) cameraFEC(name string) TrunkFEC {
	transport, _ := tr.cameraMedia(name)
	f := tr.FEC
	if o, ok := tr.Overrides[name]; ok && (o.FEC != TrunkFEC{}) {
		f = o.FEC
	}
	return fecFor(transport, f)
}

// checkTrunkMedia checks the media settings of trunk tr (trunks[i]) and
// of the edge end (trunk.max_bitrate).
func checkTrunkMedia(add addFunc, key, where string, tr Trunk) {
	if tr.MaxBitrate < 0 {
		add(key+".max_bitrate", "%s: max_bitrate is negative", where)
	}
	if tr.MaxBitrate > 0 && tr.MaxBitrate < minTrunkBitrate {
		add(key+".max_bitrate", "%s: max_bitrate %s is below %s, too little for one video camera; leave it out for no cap", where, tr.MaxBitrate, Bitrate(minTrunkBitrate))
	}
	names := make([]string, 0, len(tr.Overrides))
	datagrams := tr.Transport == TrunkDatagram
	for n, o := range tr.Overrides {
		names = append(names, n)
		datagrams = datagrams || o.Transport == TrunkDatagram
	}
	sort.Strings(names)
	if tr.FEC.on() && !datagrams {
		add(key+".fec", "%s: fec is set but no camera of this trunk has transport datagram (stream cameras are retransmitted by QUIC)", where)
	}
	for _, n := range names {
		o := tr.Overrides[n]
		if t, _ := tr.cameraMedia(n); o.FEC.on() && t != TrunkDatagram {
			add(key+".overrides", "%s: overrides: camera %q sets fec but its transport is not datagram", where, n)
		}
		switch {
		case !nameRE.MatchString(n):
			add(key+".overrides", "%s: overrides: %q is not a camera name (letters, digits, '.', '_' and '-')", where, n)
		case !slices.Contains(tr.Cameras, "*") && !slices.Contains(tr.Cameras, n):
			add(key+".overrides", "%s: overrides: camera %q is not in this trunk's cameras", where, n)
		}
	}
}

// minTrunkBitrate is the lowest max_bitrate accepted (a cap below a
// camera's bitrate would only drop every GOP).
const minTrunkBitrate = 64_000

// checkTrunkEndMedia checks trunk.max_bitrate.
func (c *Config) checkTrunkEndMedia(add addFunc) {
	b := c.Trunk.MaxBitrate
	switch {
	case b != 0 && c.Trunk.Listen == "" && len(c.Trunk.Dial) == 0:
		add("trunk.max_bitrate", "trunk.max_bitrate is set but trunk.listen and trunk.dial are not; it caps what this edge sends to each core")
	case b < 0:
		add("trunk.max_bitrate", "trunk.max_bitrate is negative")
	case b > 0 && b < minTrunkBitrate:
		add("trunk.max_bitrate", "trunk.max_bitrate %s is below %s, too little for one video camera; leave it out for no cap", b, Bitrate(minTrunkBitrate))
	}
}

// trunkCap is the cap of one core's connection: the lower of the edge's
// trunk.max_bitrate and what the core asked (0: none).
func trunkCap(edge, core int64) int64 {
	switch {
	case edge <= 0:
		return max(core, 0)
	case core <= 0:
		return edge
	}
	return min(edge, core)
}

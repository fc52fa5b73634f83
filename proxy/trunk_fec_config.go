package proxy

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/internal/config"
)

// TrunkFEC is the forward error correction of a datagram camera
// (trunk_fec.go): the edge follows each group of up to Data datagrams
// with Parity repair datagrams (fewer for a shorter group, at least one),
// and the core rebuilds a group's lost datagrams from any Data of them.
// In a file it is "off", a percentage ("20%": groups of up to 20
// datagrams, 20 % of repair) or {data: 10, parity: 2}. The zero value
// is the default: DefaultTrunkFEC for datagram cameras.
type TrunkFEC struct {
	Data, Parity int
	// Off: no repair datagrams (the camera's datagrams as before FEC).
	Off bool
}

// DefaultTrunkFEC is the FEC of a datagram camera that does not set it:
// groups of up to 20 datagrams and 4 repair (20 %).
var DefaultTrunkFEC = TrunkFEC{Data: 20, Parity: 4}

// FEC bounds: what a core accepts from an edge and a file may ask.
const (
	maxFECData   = 32
	maxFECParity = 16
	// fecPercentData is the group size of the percentage form.
	fecPercentData = 20
)

// on reports whether f asks for repair datagrams.
func (f TrunkFEC) on() bool { return !f.Off && f.Data > 0 }

// String is the value as a file writes it.
func (f TrunkFEC) String() string {
	switch {
	case f.Off:
		return "off"
	case f.Data == 0:
		return "default"
	}
	return fmt.Sprintf("%d+%d", f.Data, f.Parity)
}

// check validates a {data, parity} pair.
func (f TrunkFEC) check() error {
	switch {
	case f.Off:
		return nil
	case f.Data < 1 || f.Data > maxFECData:
		return fmt.Errorf("data %d is out of range (1 to %d datagrams per group)", f.Data, maxFECData)
	case f.Parity < 1 || f.Parity > maxFECParity:
		return fmt.Errorf("parity %d is out of range (1 to %d repair datagrams per group)", f.Parity, maxFECParity)
	case f.Parity > f.Data:
		return fmt.Errorf("parity %d is more than data %d (more repair than data: use transport stream)", f.Parity, f.Data)
	}
	return nil
}

// UnmarshalYAML reads "off", "N%" or {data: D, parity: P}.
func (f *TrunkFEC) UnmarshalYAML(n *yaml.Node) error {
	const want = `want off, a percentage such as "20%%", or {data: 10, parity: 2}`
	switch n.Kind {
	case yaml.ScalarNode:
		v := strings.TrimSpace(n.Value)
		if v == "off" || v == "false" {
			*f = TrunkFEC{Off: true}
			return nil
		}
		p, ok := strings.CutSuffix(v, "%")
		pct, err := strconv.Atoi(strings.TrimSpace(p))
		if !ok || err != nil {
			return config.At(n, "fec: bad value %q ("+want+")", n.Value)
		}
		if pct < 5 || pct > 80 {
			return config.At(n, "fec: %d%% is out of range (5%% to 80%%)", pct)
		}
		*f = TrunkFEC{Data: fecPercentData, Parity: max(1, (fecPercentData*pct+50)/100)}
		return nil
	case yaml.MappingNode:
		var g TrunkFEC
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var dst *int
			switch k.Value {
			case "data":
				dst = &g.Data
			case "parity":
				dst = &g.Parity
			default:
				return config.At(k, "fec: unknown key %q (want data and parity)", k.Value)
			}
			x, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil {
				return config.At(v, "fec: %s: bad number %q", k.Value, v.Value)
			}
			*dst, seen[k.Value] = x, true
		}
		if !seen["data"] || !seen["parity"] {
			return config.At(n, "fec: both data and parity are needed ("+want+")")
		}
		if err := g.check(); err != nil {
			return config.At(n, "fec: %v", err)
		}
		*f = g
		return nil
	}
	return config.At(n, "fec: bad value ("+want+")")
}

// MarshalYAML writes the value as it is read.
func (f TrunkFEC) MarshalYAML() (any, error) {
	switch {
	case f.Off:
		return "off", nil
	case f.Data == 0:
		return nil, nil
	}
	return map[string]int{"data": f.Data, "parity": f.Parity}, nil
}

// fecFor is the FEC that applies to a camera of transport tr, set to f
// (the camera's, else the trunk's): off for stream cameras.
func fecFor(tr TrunkTransport, f TrunkFEC) TrunkFEC {
	switch {
	case tr != TrunkDatagram || f.Off:
		return TrunkFEC{Off: true}
	case f.Data == 0:
		return DefaultTrunkFEC
	}
	return f
}

// trunkFECWire is the FEC of a play request (what the core asks) and
// of its answer (what the edge sends).
type trunkFECWire struct {
	Data   int `json:"data"`
	Parity int `json:"parity"`
}

package proxy

import (
	"fmt"
	"net"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-vms/cordon/internal/config"
)

// TrunkDialer says which end of a trunk opens the QUIC connection.
type TrunkDialer string

// Trunk dialers.
const (
	TrunkDialerCore TrunkDialer = "core" // the core dials the edge's trunk.listen (the default)
	TrunkDialerEdge TrunkDialer = "edge" // the edge dials the core's trunk.listen (edges behind NAT)
)

// UnmarshalYAML validates the value.
func (d *TrunkDialer) UnmarshalYAML(n *yaml.Node) error {
	return config.OneOf(n, "dialer", d, TrunkDialerCore, TrunkDialerEdge)
}

// trunkUsed reports whether this proxy is an end of any trunk.
func (c *Config) trunkUsed() bool {
	return c.Trunk.Listen != "" || len(c.Trunk.Dial) > 0 || len(c.Trunks) > 0
}

// edgeDials reports whether some trunk has the edge dialing this proxy.
func (c *Config) edgeDials() bool {
	return slices.ContainsFunc(c.Trunks, func(t Trunk) bool { return t.Dialer == TrunkDialerEdge })
}

// checkTrunkEnd checks trunk: (this proxy's end).
func (c *Config) checkTrunkEnd(add addFunc) {
	t := c.Trunk
	serves := t.Listen != "" || len(t.Dial) > 0
	switch {
	case len(t.Peers) > 0 && !serves:
		add("trunk.peers", "trunk.peers is set but trunk.listen and trunk.dial are not; peers are the cores this edge serves (through trunk.listen or trunk.dial)")
	case len(t.Peers) == 0 && len(t.Dial) > 0:
		add("trunk.peers", "trunk.peers: none configured, so the cores of trunk.dial would be refused; add the fingerprint `cordon trunk keygen` printed on each core")
	case len(t.Peers) == 0 && t.Listen != "" && !c.edgeDials():
		add("trunk.peers", "trunk.peers: none configured, so no core could connect; add the fingerprint `cordon trunk keygen` printed on each core")
	}
	for i, p := range t.Peers {
		_, err := parseTrunkFingerprint(p)
		switch {
		case err == nil:
		case t.CA == "":
			add(fmt.Sprintf("trunk.peers[%d]", i), "trunk.peers[%d]: %v", i, err)
		case !nameRE.MatchString(p):
			add(fmt.Sprintf("trunk.peers[%d]", i), "trunk.peers[%d]: %q is neither a fingerprint nor a certificate name (letters, digits, '.', '_' and '-') for trunk.ca to check", i, p)
		}
	}
	for i, a := range t.Dial {
		key := fmt.Sprintf("trunk.dial[%d]", i)
		if _, _, err := net.SplitHostPort(a); err != nil {
			add(key, "%s: %q: want a core's trunk.listen as host:port", key, a)
		} else if j := slices.Index(t.Dial, a); j < i {
			add(key, "%s: %q is already trunk.dial[%d]", key, a, j)
		}
	}
	if c.trunkUsed() && (t.Cert == "" || t.Key == "") {
		add("trunk.cert", "trunk.cert and trunk.key are required with trunk.listen or trunks (make them with: cordon trunk keygen -o DIR)")
	}
}

// checkTrunkPeer checks how trunks[i] reaches its edge and knows it.
func (c *Config) checkTrunkPeer(add addFunc, key, where string, tr Trunk) {
	switch tr.Dialer {
	case TrunkDialerEdge:
		if tr.Address != "" {
			add(key+".address", "%s: address %q is not used with dialer \"edge\" (the edge dials this proxy's trunk.listen); remove it", where, tr.Address)
		}
		if c.Trunk.Listen == "" {
			add(key+".dialer", "%s: dialer \"edge\" needs trunk.listen on this proxy: the address the edge dials (its trunk.dial)", where)
		}
		for j, o := range c.Trunks {
			if o.Name == tr.Name {
				break
			}
			if o.Dialer == TrunkDialerEdge && trunkTrustOf(o, nil).sameIdentity(trunkTrustOf(tr, nil)) {
				add(key+".fingerprint", "%s: trunks[%d] (%s) has the same edge certificate; an edge that dials in could not be told apart", where, j, o.Name)
			}
		}
	default:
		if _, _, err := net.SplitHostPort(tr.Address); err != nil {
			add(key+".address", "%s: address %q: want the edge's trunk.listen as host:port", where, tr.Address)
		}
	}
	switch {
	case tr.Fingerprint == "" && c.Trunk.CA == "":
		add(key+".fingerprint", "%s: fingerprint is missing: paste the edge's (`cordon trunk keygen` printed it on the edge), or set trunk.ca", where)
	case tr.Fingerprint != "":
		if _, err := parseTrunkFingerprint(tr.Fingerprint); err != nil {
			add(key+".fingerprint", "%s: %v", where, err)
		}
		if tr.PeerName != "" {
			add(key+".peer_name", "%s: peer_name is checked only without a fingerprint (the edge's certificate issued by trunk.ca); remove one of them", where)
		}
	case tr.PeerName != "" && !nameRE.MatchString(tr.PeerName):
		add(key+".peer_name", "%s: peer_name %q is not a certificate name (letters, digits, '.', '_' and '-')", where, tr.PeerName)
	}
}

package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// TrunkEnd is this proxy's side of QUIC trunks (docs/trunk.md): its key
// pair (from `cordon trunk keygen`), used both when it serves its cameras
// to core proxies (Listen) and when it pulls cameras from edges (Trunks).
type TrunkEnd struct {
	// Listen, on an edge proxy, is the UDP address core proxies connect to
	// (IP:port; ":7443" listens on every interface). Empty: no core may
	// connect.
	Listen string `yaml:"listen"`
	// Cert and Key are this end's PEM certificate and private key.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Peers are the core proxies this edge serves (through Listen or
	// Dial): the SHA-256 fingerprints `cordon trunk keygen` printed on
	// each core or, with CA, the names their certificates were issued
	// for. Any other certificate is refused and logged.
	Peers []string `yaml:"peers"`
	// Dial, on an edge behind NAT, lists the cores' trunk.listen
	// addresses (host:port) this edge connects to, instead of (or as well
	// as) listening. Only who opens the QUIC connection changes: the core
	// still asks and the edge still answers, by camera name.
	Dial []string `yaml:"dial"`
	// CA is a PEM file of CA certificates: a peer whose certificate is
	// not pinned is accepted when the CA issued it for an allowed name
	// (a name in Peers on an edge; trunks[].peer_name on a core). Empty:
	// pinned fingerprints only.
	CA string `yaml:"ca"`
	// MaxBitrate caps what this edge sends to each core, all cameras
	// together (e.g. "50M"); past it, cameras drop whole GOPs
	// (docs/trunk.md). It defaults to no cap.
	MaxBitrate Bitrate `yaml:"max_bitrate"`
}

// Trunk is one edge proxy a core proxy pulls cameras from. Each remote
// camera is served to this proxy's readers as rtsp://PROXY:8554/<name>/<camera>.
type Trunk struct {
	// Name is the edge's name: the first part of its cameras' paths.
	// Letters, digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Address is the edge's trunk.listen address, host:port (UDP). It is
	// not set when the edge dials (Dialer "edge").
	Address string `yaml:"address"`
	// Dialer says who opens the connection: "core" (this proxy dials
	// Address; the default) or "edge" (the edge dials this proxy's
	// trunk.listen, for edges behind NAT).
	Dialer TrunkDialer `yaml:"dialer"`
	// Fingerprint is the SHA-256 fingerprint of the edge's certificate,
	// as `cordon trunk keygen` printed it on the edge. Without it the
	// edge's certificate must be issued by trunk.ca for PeerName.
	Fingerprint string `yaml:"fingerprint"`
	// PeerName is the name trunk.ca issued the edge's certificate for,
	// checked when there is no Fingerprint. It defaults to Name.
	PeerName string `yaml:"peer_name"`
	// Cameras are the edge's camera names to pull, or ["*"] for every
	// camera the edge lists.
	Cameras []string `yaml:"cameras"`
	// Transport is how the cameras' media crosses the trunk: "stream"
	// or "datagram" (trunk_media_config.go). It defaults to stream.
	Transport TrunkTransport `yaml:"transport"`
	// FEC is the forward error correction of the trunk's datagram
	// cameras: "off", "20%" or {data: 10, parity: 2} (trunk_fec_config.go).
	// It defaults to DefaultTrunkFEC (20 %) for datagram cameras; stream
	// cameras have none (QUIC retransmits).
	FEC TrunkFEC `yaml:"fec"`
	// AlwaysOn pulls the cameras all the time. It defaults to false: a
	// camera is pulled from the edge only while a reader of this proxy
	// wants it.
	AlwaysOn bool `yaml:"always_on"`
	// MaxBitrate caps what the edge sends on this trunk, all cameras
	// together (e.g. "50M"); the edge applies the lower of this and its
	// own trunk.max_bitrate. It defaults to no cap.
	MaxBitrate Bitrate `yaml:"max_bitrate"`
	// Overrides sets transport, fec or always_on for some cameras, by name.
	Overrides map[string]TrunkCamera `yaml:"overrides"`
	// Connections is the most QUIC connections the trunk's cameras are
	// spread over (each camera stays on one; trunk_link.go), 1 to 128.
	// Each has its own congestion controller: over a lossy WAN one
	// connection carries a few Mbit/s at most. It defaults to one per
	// camera (as RTSP/TCP has), up to 128.
	Connections int `yaml:"connections"`
}

// trunkPath is the path core readers use for camera cam of edge.
func trunkPath(edge, cam string) string { return edge + "/" + cam }

// checkTrunks checks trunk and trunks; names are the cameras' (a trunk's
// name may not be one of them). It adds the paths readers may name to
// names (edge/camera, and edge/* for a trunk that takes every camera).
func (c *Config) checkTrunks(add addFunc, names map[string]int) {
	c.checkTrunkEnd(add)
	c.checkTrunkEndMedia(add)
	seen := map[string]int{}
	for i, tr := range c.Trunks {
		key := fmt.Sprintf("trunks[%d]", i)
		where := key
		if tr.Name != "" {
			where += " (" + tr.Name + ")"
		}
		switch {
		case tr.Name == "":
			add(key+".name", "%s: name is missing; it is the first part of the paths readers use (rtsp://proxy:8554/<name>/<camera>)", where)
		case !nameRE.MatchString(tr.Name):
			add(key+".name", "%s: name %q may only hold letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)", where, tr.Name)
		default:
			if j, dup := seen[tr.Name]; dup {
				add(key+".name", "%s: name %q is already used by trunks[%d]", where, tr.Name, j)
			}
			if _, cam := names[tr.Name]; cam {
				add(key+".name", "%s: name %q is also a camera's name; a trunk's name must differ from every camera's", where, tr.Name)
			}
			seen[tr.Name] = i
		}
		c.checkTrunkPeer(add, key, where, tr)
		checkTrunkMedia(add, key, where, tr)
		if tr.Connections < 0 || tr.Connections > maxTrunkConnections {
			add(key+".connections", "%s: connections %d is out of range: 1 to %d (or leave it out: one per camera, up to %d)", where, tr.Connections, maxTrunkConnections, maxTrunkConnections)
		}
		if len(tr.Cameras) == 0 {
			add(key+".cameras", "%s: cameras is empty; list the edge's camera names or \"*\"", where)
		}
		for j, cam := range tr.Cameras {
			switch {
			case cam == "*" && len(tr.Cameras) > 1:
				add(fmt.Sprintf("%s.cameras[%d]", key, j), "%s: \"*\" takes every camera; list names or \"*\" alone", where)
			case cam == "*":
				names[trunkPath(tr.Name, "*")] = i
			case !nameRE.MatchString(cam):
				add(fmt.Sprintf("%s.cameras[%d]", key, j), "%s: camera %q is not a camera name (letters, digits, '.', '_' and '-')", where, cam)
			default:
				names[trunkPath(tr.Name, cam)] = i
			}
		}
	}
}

// trunkCovers reports whether name is a trunk camera readers may be given
// (names as filled by checkTrunks).
func trunkCovers(names map[string]int, name string) bool {
	edge, _, ok := strings.Cut(name, "/")
	if !ok {
		return false
	}
	_, all := names[trunkPath(edge, "*")]
	return all
}

// parseTrunkFingerprint is parseFingerprint with a message for trunks.
func parseTrunkFingerprint(s string) ([sha256.Size]byte, error) {
	fp, err := parseFingerprint(s)
	if err != nil {
		return fp, fmt.Errorf("fingerprint %q: want the SHA-256 fingerprint `cordon trunk keygen` printed (64 hex digits, colons allowed)", s)
	}
	return fp, nil
}

// trunkPins parses fingerprints that Validate accepted.
func trunkPins(fps ...string) [][sha256.Size]byte {
	var out [][sha256.Size]byte
	for _, s := range fps {
		if fp, err := parseFingerprint(s); err == nil && !slices.Contains(out, fp) {
			out = append(out, fp)
		}
	}
	return out
}

// checkTrunkFiles checks that trunk.cert and trunk.key load (Check only).
func (c *Config) checkTrunkFiles(ps *problems) {
	t := c.Trunk
	if t.Cert == "" || t.Key == "" || !c.trunkUsed() {
		return
	}
	if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
		ps.add("trunk.cert", "trunk.cert/trunk.key: %v", err)
	}
	if _, err := loadTrunkCA(t.CA); err != nil {
		ps.add("trunk.ca", "%v", err)
	}
}

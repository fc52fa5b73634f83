package proxy

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TrunksStatus is /v1/trunks: this proxy as an edge (the cores connected
// to trunk.listen) and as a core (its trunks to edges).
type TrunksStatus struct {
	Edge   *TrunkEdgeStatus `json:"edge"` // nil without trunk.listen
	Trunks []TrunkStatus    `json:"trunks"`
}

// TrunkEdgeStatus is the edge end: its address and the cores connected.
type TrunkEdgeStatus struct {
	Listen string `json:"listen"`
	// Refused counts handshakes refused because the core's certificate is
	// not one of trunk.peers (each is logged with its fingerprint).
	Refused uint64            `json:"refused"`
	Cores   []TrunkPeerStatus `json:"cores"`
	Dial    []TrunkDialStatus `json:"dial,omitempty"` // trunk.dial: the cores this edge connects to
}

// TrunkPeerStatus is one connected core, over its connections (Remote,
// Since and RTT are its oldest connection's; BytesSent and PacketsLost
// the sums over its connections).
type TrunkPeerStatus struct {
	Fingerprint string        `json:"fingerprint"`
	Remote      string        `json:"remote"`
	Since       time.Time     `json:"since"`
	Connections int           `json:"connections"`
	Cameras     int64         `json:"cameras"` // cameras it reads now
	RTT         time.Duration `json:"rtt_ns"`
	BytesSent   uint64        `json:"bytes_sent"` // QUIC payload bytes, retransmissions included
	PacketsLost uint64        `json:"packets_lost"`
	// MaxBitrate is the cap applied to this core (bit/s; 0: none);
	// CapOver is true while it bites (cameras drop GOPs), CapEpisodes
	// counts the times it started to.
	MaxBitrate  int64               `json:"max_bitrate"`
	CapOver     bool                `json:"cap_over"`
	CapEpisodes uint64              `json:"cap_episodes"`
	CameraStats []TrunkCameraStatus `json:"camera_stats"`
}

// TrunkStatus is one trunk of a core.
type TrunkStatus struct {
	Name        string    `json:"name"`
	Address     string    `json:"address"`
	State       string    `json:"state"`
	Since       time.Time `json:"since"`
	LastError   string    `json:"last_error,omitempty"`
	Reconnects  uint64    `json:"reconnects"`
	EdgeCameras []string  `json:"edge_cameras"` // the edge's catalogue, last seen
	// Cameras is the number of this trunk's cameras that are up.
	Cameras int `json:"cameras_up"`
	// State, Since and LastError are connection 0's (the catalogue's).
	// MediaBytes are the media frames' bytes received, over every
	// connection; RTT is connection 0's, BytesReceived and PacketsLost
	// the sums over the current connections (quic-go's statistics).
	MediaBytes    uint64        `json:"media_bytes"`
	RTT           time.Duration `json:"rtt_ns"`
	BytesReceived uint64        `json:"bytes_received"`
	PacketsLost   uint64        `json:"packets_lost"`
	// DatagramsUnknown are datagrams of no current camera, or malformed.
	DatagramsUnknown uint64              `json:"datagrams_unknown"`
	CameraStats      []TrunkCameraStatus `json:"camera_stats"`
	// Connections are the trunk's QUIC connections (trunks[].connections;
	// connection 0 carries the catalogue); ConnectionsUp those up.
	Connections   []TrunkConnectionStatus `json:"connections"`
	ConnectionsUp int                     `json:"connections_up"`
}

// TrunksStatus returns the trunks' state.
func (p *Proxy) TrunksStatus() TrunksStatus {
	var out TrunksStatus
	if e := p.trunkEdge; e != nil {
		es := &TrunkEdgeStatus{Refused: e.refused.Load(), Cores: []TrunkPeerStatus{}}
		if e.ln != nil {
			es.Listen = e.ln.Addr().String()
		}
		es.Dial = e.dialStatus()
		es.Cores = e.coresStatus()
		sort.Slice(es.Cores, func(i, j int) bool { return es.Cores[i].Remote < es.Cores[j].Remote })
		out.Edge = es
	}
	up := map[*trunkCore]int{}
	for _, c := range p.cameras() {
		if c.trunk != nil {
			c.mu.Lock()
			if c.state == stateUp {
				up[c.trunk]++
			}
			c.mu.Unlock()
		}
	}
	out.Trunks = []TrunkStatus{}
	for _, t := range p.trunkList() {
		t.mu.Lock()
		s := TrunkStatus{Name: t.cfg.Name, Address: t.cfg.Address, EdgeCameras: append([]string{}, t.remote...)}
		t.mu.Unlock()
		s.Reconnects, s.MediaBytes, s.Cameras = t.reconnects.Load(), t.bytesIn.Load(), up[t]
		s.DatagramsUnknown, s.CameraStats = t.dgram.unknown.Load(), t.media.status()
		for i, l := range t.linkList() {
			ls := l.status()
			if i == 0 {
				s.State, s.Since, s.LastError, s.RTT = ls.State, ls.Since, ls.LastError, ls.RTT
			}
			if ls.State == trunkUp {
				s.ConnectionsUp++
			}
			s.BytesReceived += ls.BytesReceived
			s.PacketsLost += ls.PacketsLost
			s.Connections = append(s.Connections, ls)
		}
		out.Trunks = append(out.Trunks, s)
	}
	return out
}

var (
	descTrunkUp      = prometheus.NewDesc("cordon_trunk_up", "1 while the trunk's first QUIC connection to the edge (the catalogue's) is up.", []string{"trunk"}, nil)
	descTrunkBytes   = prometheus.NewDesc("cordon_trunk_media_bytes_total", "Media frame bytes received through the trunk.", []string{"trunk"}, nil)
	descTrunkRTT     = prometheus.NewDesc("cordon_trunk_rtt_seconds", "Smoothed RTT of the trunk's QUIC connection (0 while down).", []string{"trunk"}, nil)
	descTrunkCameras = prometheus.NewDesc("cordon_trunk_cameras", "The trunk's cameras that are up.", []string{"trunk"}, nil)
	descTrunkConns   = prometheus.NewDesc("cordon_trunk_connections_up", "The trunk's QUIC connections that are up (of trunks[].connections).", []string{"trunk"}, nil)
	descTrunkRecon   = prometheus.NewDesc("cordon_trunk_reconnects_total", "Trunk connections that ended or failed and were retried.", []string{"trunk"}, nil)
	descTrunkCores   = prometheus.NewDesc("cordon_trunk_edge_cores", "Core proxies connected to this edge's trunk.listen.", nil, nil)
	descTrunkRefused = prometheus.NewDesc("cordon_trunk_edge_refused_total", "Trunk handshakes refused on trunk.listen or trunk.dial: certificate not trusted (trunk.peers, or the trunks an edge may dial in for).", nil, nil)
	descTrunkPanics  = prometheus.NewDesc("cordon_trunk_panics_total", "Internal errors (panics) contained in trunk goroutines.", nil, nil)
)

var trunkDescs = append([]*prometheus.Desc{descTrunkUp, descTrunkBytes, descTrunkRTT, descTrunkCameras, descTrunkConns, descTrunkRecon, descTrunkCores, descTrunkRefused, descTrunkPanics}, trunkMediaDescs...)

// collectTrunks exports the trunks' metrics.
func (p *Proxy) collectTrunks(ch chan<- prometheus.Metric) {
	if p.trunkEdge == nil && len(p.trunkList()) == 0 {
		return
	}
	st := p.TrunksStatus()
	for _, t := range st.Trunks {
		up := 0.0
		if t.State == trunkUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descTrunkUp, prometheus.GaugeValue, up, t.Name)
		ch <- prometheus.MustNewConstMetric(descTrunkBytes, prometheus.CounterValue, float64(t.MediaBytes), t.Name)
		ch <- prometheus.MustNewConstMetric(descTrunkRTT, prometheus.GaugeValue, t.RTT.Seconds(), t.Name)
		ch <- prometheus.MustNewConstMetric(descTrunkCameras, prometheus.GaugeValue, float64(t.Cameras), t.Name)
		ch <- prometheus.MustNewConstMetric(descTrunkConns, prometheus.GaugeValue, float64(t.ConnectionsUp), t.Name)
		ch <- prometheus.MustNewConstMetric(descTrunkRecon, prometheus.CounterValue, float64(t.Reconnects), t.Name)
	}
	if st.Edge != nil {
		ch <- prometheus.MustNewConstMetric(descTrunkCores, prometheus.GaugeValue, float64(len(st.Edge.Cores)))
		ch <- prometheus.MustNewConstMetric(descTrunkRefused, prometheus.CounterValue, float64(st.Edge.Refused))
	}
	ch <- prometheus.MustNewConstMetric(descTrunkPanics, prometheus.CounterValue, float64(p.trunkPanics.Load()))
	collectTrunkMedia(ch, st)
}

// coresStatus is the connected cores, one entry per core (fingerprint)
// whatever its number of connections.
func (e *trunkEdge) coresStatus() []TrunkPeerStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	byFP := map[string]*TrunkPeerStatus{}
	out := []TrunkPeerStatus{}
	for conn, peer := range e.peers {
		st := conn.ConnectionStats()
		c := byFP[peer.fingerprint]
		if c == nil {
			m := peer.media
			l := m.limit.Load()
			c = &TrunkPeerStatus{
				Fingerprint: peer.fingerprint, Remote: peer.remote, Since: peer.since, RTT: st.SmoothedRTT,
				MaxBitrate: l.bitrate(), CapOver: l.overNow(), CapEpisodes: l.episodeCount(),
				CameraStats: m.status(),
			}
			byFP[peer.fingerprint] = c
		} else if peer.since.Before(c.Since) {
			c.Remote, c.Since, c.RTT = peer.remote, peer.since, st.SmoothedRTT
		}
		c.Connections++
		c.Cameras += peer.streams.Load()
		c.BytesSent += st.BytesSent
		c.PacketsLost += st.PacketsLost
	}
	for _, c := range byFP {
		out = append(out, *c)
	}
	return out
}

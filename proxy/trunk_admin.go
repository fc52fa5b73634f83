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

// TrunkPeerStatus is one connected core.
type TrunkPeerStatus struct {
	Fingerprint string        `json:"fingerprint"`
	Remote      string        `json:"remote"`
	Since       time.Time     `json:"since"`
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
	// MediaBytes are the media frames' bytes received, over every
	// connection; RTT, BytesReceived and PacketsLost are the current
	// connection's (quic-go's statistics).
	MediaBytes    uint64        `json:"media_bytes"`
	RTT           time.Duration `json:"rtt_ns"`
	BytesReceived uint64        `json:"bytes_received"`
	PacketsLost   uint64        `json:"packets_lost"`
	// DatagramsUnknown are datagrams of no current camera, or malformed.
	DatagramsUnknown uint64              `json:"datagrams_unknown"`
	CameraStats      []TrunkCameraStatus `json:"camera_stats"`
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
		e.mu.Lock()
		for conn, peer := range e.peers {
			st := conn.ConnectionStats()
			es.Cores = append(es.Cores, TrunkPeerStatus{
				Fingerprint: peer.fingerprint, Remote: peer.remote, Since: peer.since,
				Cameras: peer.streams.Load(), RTT: st.SmoothedRTT, BytesSent: st.BytesSent, PacketsLost: st.PacketsLost,
				MaxBitrate: peer.media.capBPS.Load(), CapOver: peer.media.limit.Load().overNow(), CapEpisodes: peer.media.limit.Load().episodeCount(),
				CameraStats: peer.media.status(),
			})
		}
		e.mu.Unlock()
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
		s := TrunkStatus{
			Name: t.cfg.Name, Address: t.cfg.Address, State: t.state, Since: t.since, LastError: t.lastErr,
			EdgeCameras: append([]string{}, t.remote...),
		}
		conn := t.conn
		t.mu.Unlock()
		s.Reconnects, s.MediaBytes, s.Cameras = t.reconnects.Load(), t.bytesIn.Load(), up[t]
		s.DatagramsUnknown, s.CameraStats = t.dgram.unknown.Load(), t.media.status()
		if conn != nil {
			st := conn.ConnectionStats()
			s.RTT, s.BytesReceived, s.PacketsLost = st.SmoothedRTT, st.BytesReceived, st.PacketsLost
		}
		out.Trunks = append(out.Trunks, s)
	}
	return out
}

var (
	descTrunkUp      = prometheus.NewDesc("cordon_trunk_up", "1 while the trunk's QUIC connection to the edge is up.", []string{"trunk"}, nil)
	descTrunkBytes   = prometheus.NewDesc("cordon_trunk_media_bytes_total", "Media frame bytes received through the trunk.", []string{"trunk"}, nil)
	descTrunkRTT     = prometheus.NewDesc("cordon_trunk_rtt_seconds", "Smoothed RTT of the trunk's QUIC connection (0 while down).", []string{"trunk"}, nil)
	descTrunkCameras = prometheus.NewDesc("cordon_trunk_cameras", "The trunk's cameras that are up.", []string{"trunk"}, nil)
	descTrunkRecon   = prometheus.NewDesc("cordon_trunk_reconnects_total", "Trunk connections that ended or failed and were retried.", []string{"trunk"}, nil)
	descTrunkCores   = prometheus.NewDesc("cordon_trunk_edge_cores", "Core proxies connected to this edge's trunk.listen.", nil, nil)
	descTrunkRefused = prometheus.NewDesc("cordon_trunk_edge_refused_total", "Trunk handshakes refused on trunk.listen or trunk.dial: certificate not trusted (trunk.peers, or the trunks an edge may dial in for).", nil, nil)
	descTrunkPanics  = prometheus.NewDesc("cordon_trunk_panics_total", "Internal errors (panics) contained in trunk goroutines.", nil, nil)
)

var trunkDescs = append([]*prometheus.Desc{descTrunkUp, descTrunkBytes, descTrunkRTT, descTrunkCameras, descTrunkRecon, descTrunkCores, descTrunkRefused, descTrunkPanics}, trunkMediaDescs...)

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
		ch <- prometheus.MustNewConstMetric(descTrunkRecon, prometheus.CounterValue, float64(t.Reconnects), t.Name)
	}
	if st.Edge != nil {
		ch <- prometheus.MustNewConstMetric(descTrunkCores, prometheus.GaugeValue, float64(len(st.Edge.Cores)))
		ch <- prometheus.MustNewConstMetric(descTrunkRefused, prometheus.CounterValue, float64(st.Edge.Refused))
	}
	ch <- prometheus.MustNewConstMetric(descTrunkPanics, prometheus.CounterValue, float64(p.trunkPanics.Load()))
	collectTrunkMedia(ch, st)
}

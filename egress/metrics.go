package egress

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gopacket/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's counters. They are atomics so an HTTP scrape can
// read them while the engine runs.
type Metrics struct {
	Packets        atomic.Uint64   // packets handed to HandlePacket
	Decoded        atomic.Uint64   // packets decoded to an IP flow (reassembled datagrams once)
	Bytes          atomic.Uint64   // IP bytes of decoded packets
	LinkControl    atomic.Uint64   // link-layer control frames (ARP, LLDP, STP, ...): understood, not IP
	NonIP          atomic.Uint64   // other packets that are not IP, or of a link type not decoded
	Fragments      atomic.Uint64   // IP fragments held for reassembly
	Reassembled    atomic.Uint64   // IP datagrams reassembled from fragments
	FragmentsLost  atomic.Uint64   // datagrams given up (timed out, evicted, too many fragments)
	DecodeErrors   atomic.Uint64   // malformed packets dropped
	Ignored        atomic.Uint64   // IP packets not involving a camera
	FlowRecords    atomic.Uint64   // NetFlow/IPFIX records handed to HandleFlow
	Flows          atomic.Uint64   // flows created
	FlowsActive    atomic.Uint64   // flows in the table (updated every second)
	FlowEvictions  atomic.Uint64   // flows evicted because the table was full
	FlowsExpired   atomic.Uint64   // flows removed after being idle
	StateEvictions atomic.Uint64   // detection state dropped at its bound
	SNIs           atomic.Uint64   // TLS/QUIC server names read
	DNSTCPSkipped  atomic.Uint64   // DNS-over-TCP messages not read (bounds, a gap in the stream)
	SendErrors     atomic.Uint64   // alerts a sink failed to take
	Alerts         []atomic.Uint64 // by kind, in the order of Detectors

	undecodedMu sync.Mutex
	undecoded   map[undecodedKey]uint64
}

type undecodedKey struct {
	reason dropReason
	lt     layers.LinkType
}

// Undecoded is a count of packets that were not decoded, for one reason
// and link type.
type Undecoded struct {
	Reason   string // link-type, not-ip, malformed, fragment, tunnel-depth
	LinkType layers.LinkType
	Packets  uint64
}

// countUndecoded counts one packet of link type lt not decoded for r.
func (m *Metrics) countUndecoded(r dropReason, lt layers.LinkType) {
	switch r {
	case dropLinkType, dropNotIP:
		m.NonIP.Add(1)
	case dropFragment:
		m.Fragments.Add(1)
	default:
		m.DecodeErrors.Add(1)
	}
	m.undecodedMu.Lock()
	if m.undecoded == nil {
		m.undecoded = map[undecodedKey]uint64{}
	}
	m.undecoded[undecodedKey{r, lt}]++
	m.undecodedMu.Unlock()
}

// Undecoded returns the packets not decoded, by reason and link type, in
// the order of reasons and then link types.
func (m *Metrics) Undecoded() []Undecoded {
	m.undecodedMu.Lock()
	defer m.undecodedMu.Unlock()
	out := make([]Undecoded, 0, len(m.undecoded))
	for k, n := range m.undecoded {
		out = append(out, Undecoded{Reason: k.reason.String(), LinkType: k.lt, Packets: n})
	}
	slices.SortFunc(out, func(a, b Undecoded) int {
		return cmp.Or(cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.LinkType, b.LinkType))
	})
	return out
}

// linkTypeName names a link type with its number, like "Linux SLL2 (276)".
func linkTypeName(lt layers.LinkType) string {
	name := lt.String()
	if name == "UnknownLinkType" {
		name = "unknown"
	}
	return fmt.Sprintf("%s (%d)", name, uint16(lt))
}

// Collector exposes the engine's metrics to Prometheus (names start with
// cordon_egress_).
func (e *Engine) Collector() prometheus.Collector {
	return &collector{e: e}
}

type collector struct {
	e *Engine
}

var (
	descAlerts    = prometheus.NewDesc("cordon_egress_alerts_total", "Alerts emitted, by kind.", []string{"kind"}, nil)
	descUndecoded = prometheus.NewDesc("cordon_egress_undecoded_packets_total",
		"Packets not decoded, by reason (link-type, not-ip, malformed, fragment, tunnel-depth) and link type number.",
		[]string{"reason", "link_type"}, nil)
	counters = []struct {
		name, help string
		gauge      bool
		get        func(*Metrics) uint64
	}{
		{"packets_total", "Packets read.", false, func(m *Metrics) uint64 { return m.Packets.Load() }},
		{"decoded_packets_total", "Packets decoded to an IP flow.", false, func(m *Metrics) uint64 { return m.Decoded.Load() }},
		{"reassembled_datagrams_total", "IP datagrams reassembled from fragments.", false, func(m *Metrics) uint64 { return m.Reassembled.Load() }},
		{"fragments_lost_total", "IP datagrams whose fragments were given up (time-out, bounds).", false, func(m *Metrics) uint64 { return m.FragmentsLost.Load() }},
		{"bytes_total", "IP bytes of decoded packets.", false, func(m *Metrics) uint64 { return m.Bytes.Load() }},
		{"link_control_packets_total", "Link-layer control frames (ARP, LLDP, STP, LACP, ...): understood, not IP.", false, func(m *Metrics) uint64 { return m.LinkControl.Load() }},
		{"non_ip_packets_total", "Packets that are not IP, other than link-layer control frames.", false, func(m *Metrics) uint64 { return m.NonIP.Load() }},
		{"fragments_total", "IP fragments held for reassembly.", false, func(m *Metrics) uint64 { return m.Fragments.Load() }},
		{"drops_total", "Malformed packets dropped.", false, func(m *Metrics) uint64 { return m.DecodeErrors.Load() }},
		{"ignored_packets_total", "IP packets not involving a camera.", false, func(m *Metrics) uint64 { return m.Ignored.Load() }},
		{"flow_records_total", "NetFlow/IPFIX records handled.", false, func(m *Metrics) uint64 { return m.FlowRecords.Load() }},
		{"flows_total", "Flows created.", false, func(m *Metrics) uint64 { return m.Flows.Load() }},
		{"flows_active", "Flows in the flow table.", true, func(m *Metrics) uint64 { return m.FlowsActive.Load() }},
		{"flow_evictions_total", "Flows evicted because the table was full.", false, func(m *Metrics) uint64 { return m.FlowEvictions.Load() }},
		{"flows_expired_total", "Flows removed after being idle.", false, func(m *Metrics) uint64 { return m.FlowsExpired.Load() }},
		{"state_evictions_total", "Detection state dropped at its bound.", false, func(m *Metrics) uint64 { return m.StateEvictions.Load() }},
		{"server_names_total", "TLS and QUIC server names read.", false, func(m *Metrics) uint64 { return m.SNIs.Load() }},
		{"dns_tcp_skipped_total", "DNS-over-TCP messages not read: past 1024 per connection, over 4096 bytes, or after a gap in the stream.", false, func(m *Metrics) uint64 { return m.DNSTCPSkipped.Load() }},
		{"alert_send_errors_total", "Alerts a sink failed to take.", false, func(m *Metrics) uint64 { return m.SendErrors.Load() }},
	}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAlerts
	ch <- descUndecoded
	for _, k := range counters {
		ch <- prometheus.NewDesc("cordon_egress_"+k.name, k.help, nil, nil)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := &c.e.m
	for i, k := range Kinds {
		ch <- prometheus.MustNewConstMetric(descAlerts, prometheus.CounterValue, float64(m.Alerts[i].Load()), k)
	}
	for _, u := range m.Undecoded() {
		ch <- prometheus.MustNewConstMetric(descUndecoded, prometheus.CounterValue, float64(u.Packets), u.Reason, strconv.Itoa(int(u.LinkType)))
	}
	for _, k := range counters {
		t := prometheus.CounterValue
		if k.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("cordon_egress_"+k.name, k.help, nil, nil), t, float64(k.get(m)))
	}
}

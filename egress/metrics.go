package egress

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's counters. They are atomics so an HTTP scrape can
// read them while the engine runs.
type Metrics struct {
	Packets        atomic.Uint64   // packets handed to HandlePacket
	Bytes          atomic.Uint64   // IP bytes of decoded packets
	NonIP          atomic.Uint64   // packets that are not IP (ARP, LLDP, ...)
	Fragments      atomic.Uint64   // non-first IP fragments (no ports; skipped)
	DecodeErrors   atomic.Uint64   // malformed packets dropped
	Ignored        atomic.Uint64   // IP packets not involving a camera
	FlowRecords    atomic.Uint64   // NetFlow/IPFIX records handed to HandleFlow
	Flows          atomic.Uint64   // flows created
	FlowsActive    atomic.Uint64   // flows in the table (updated every second)
	FlowEvictions  atomic.Uint64   // flows evicted because the table was full
	FlowsExpired   atomic.Uint64   // flows removed after being idle
	StateEvictions atomic.Uint64   // detection state dropped at its bound
	SNIs           atomic.Uint64   // TLS/QUIC server names read
	SendErrors     atomic.Uint64   // alerts a sink failed to take
	Alerts         []atomic.Uint64 // by kind, in the order of Detectors
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
	descAlerts = prometheus.NewDesc("cordon_egress_alerts_total", "Alerts emitted, by kind.", []string{"kind"}, nil)
	counters   = []struct {
		name, help string
		gauge      bool
		get        func(*Metrics) uint64
	}{
		{"packets_total", "Packets read.", false, func(m *Metrics) uint64 { return m.Packets.Load() }},
		{"bytes_total", "IP bytes of decoded packets.", false, func(m *Metrics) uint64 { return m.Bytes.Load() }},
		{"non_ip_packets_total", "Packets that are not IP.", false, func(m *Metrics) uint64 { return m.NonIP.Load() }},
		{"fragments_total", "Non-first IP fragments skipped.", false, func(m *Metrics) uint64 { return m.Fragments.Load() }},
		{"drops_total", "Malformed packets dropped.", false, func(m *Metrics) uint64 { return m.DecodeErrors.Load() }},
		{"ignored_packets_total", "IP packets not involving a camera.", false, func(m *Metrics) uint64 { return m.Ignored.Load() }},
		{"flow_records_total", "NetFlow/IPFIX records handled.", false, func(m *Metrics) uint64 { return m.FlowRecords.Load() }},
		{"flows_total", "Flows created.", false, func(m *Metrics) uint64 { return m.Flows.Load() }},
		{"flows_active", "Flows in the flow table.", true, func(m *Metrics) uint64 { return m.FlowsActive.Load() }},
		{"flow_evictions_total", "Flows evicted because the table was full.", false, func(m *Metrics) uint64 { return m.FlowEvictions.Load() }},
		{"flows_expired_total", "Flows removed after being idle.", false, func(m *Metrics) uint64 { return m.FlowsExpired.Load() }},
		{"state_evictions_total", "Detection state dropped at its bound.", false, func(m *Metrics) uint64 { return m.StateEvictions.Load() }},
		{"server_names_total", "TLS and QUIC server names read.", false, func(m *Metrics) uint64 { return m.SNIs.Load() }},
		{"alert_send_errors_total", "Alerts a sink failed to take.", false, func(m *Metrics) uint64 { return m.SendErrors.Load() }},
	}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAlerts
	for _, k := range counters {
		ch <- prometheus.NewDesc("cordon_egress_"+k.name, k.help, nil, nil)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := &c.e.m
	for i, k := range Kinds {
		ch <- prometheus.MustNewConstMetric(descAlerts, prometheus.CounterValue, float64(m.Alerts[i].Load()), k)
	}
	for _, k := range counters {
		t := prometheus.CounterValue
		if k.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("cordon_egress_"+k.name, k.help, nil, nil), t, float64(k.get(m)))
	}
}

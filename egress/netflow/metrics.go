package netflow

import "github.com/prometheus/client_golang/prometheus"

// Metrics returns a Prometheus collector of the collector's counters
// (cordon_egress_netflow_*), read from Stats at each scrape.
func (c *Collector) Metrics() prometheus.Collector { return metrics{c} }

type metrics struct{ c *Collector }

type metricDef struct {
	name, help string
	gauge      bool
	get        func(Stats) float64
}

var metricDefs = []metricDef{
	{"datagrams_total", "NetFlow/IPFIX datagrams decoded.", false, func(s Stats) float64 { return float64(s.Datagrams) }},
	{"records_total", "Flow records handed to the engine.", false, func(s Stats) float64 { return float64(s.Records) }},
	{"decode_errors_total", "Datagrams that failed to decode (malformed, unsupported version, oversized).", false, func(s Stats) float64 { return float64(s.DecodeErrors) }},
	{"unknown_templates_total", "Data sets whose template was unknown or expired.", false, func(s Stats) float64 { return float64(s.UnknownTemplates) }},
	{"template_rejects_total", "Templates refused (zero-length fields, over the per-exporter limit).", false, func(s Stats) float64 { return float64(s.TemplateRejects) }},
	{"templates_expired_total", "Templates forgotten after the template timeout.", false, func(s Stats) float64 { return float64(s.TemplatesExpired) }},
	{"dropped_records_total", "Records over the per-datagram limit.", false, func(s Stats) float64 { return float64(s.DroppedRecords) }},
	{"skipped_records_total", "Data records without IP addresses.", false, func(s Stats) float64 { return float64(s.SkippedRecords) }},
	{"exporters", "Exporters with templates.", true, func(s Stats) float64 { return float64(s.Exporters) }},
}

func desc(d metricDef) *prometheus.Desc {
	return prometheus.NewDesc("cordon_egress_netflow_"+d.name, d.help, nil, nil)
}

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDefs {
		ch <- desc(d)
	}
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.c.Stats()
	for _, d := range metricDefs {
		t := prometheus.CounterValue
		if d.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(desc(d), t, d.get(s))
	}
}

package sink

import "github.com/prometheus/client_golang/prometheus"

// Metrics returns a Prometheus collector of the webhook's counters
// (cordon_egress_webhook_*), read from Stats at each scrape.
func (w *Webhook) Metrics() prometheus.Collector { return webhookMetrics{w} }

type webhookMetrics struct{ w *Webhook }

var webhookDescs = []struct {
	d     *prometheus.Desc
	gauge bool
	get   func(WebhookStats) float64
}{
	{prometheus.NewDesc("cordon_egress_webhook_delivered_total", "Alerts the webhook receiver accepted.", nil, nil), false, func(s WebhookStats) float64 { return float64(s.Delivered) }},
	{prometheus.NewDesc("cordon_egress_webhook_retries_total", "Failed webhook attempts that will be retried.", nil, nil), false, func(s WebhookStats) float64 { return float64(s.Retries) }},
	{prometheus.NewDesc("cordon_egress_webhook_rejected_total", "Alerts the receiver refused (kept in rejected.jsonl).", nil, nil), false, func(s WebhookStats) float64 { return float64(s.Rejected) }},
	{prometheus.NewDesc("cordon_egress_webhook_dropped_total", "Oldest alerts dropped because the spool was full.", nil, nil), false, func(s WebhookStats) float64 { return float64(s.Dropped) }},
	{prometheus.NewDesc("cordon_egress_webhook_spooled", "Alerts waiting in the spool.", nil, nil), true, func(s WebhookStats) float64 { return float64(s.Spooled) }},
}

func (m webhookMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range webhookDescs {
		ch <- d.d
	}
}

func (m webhookMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.w.Stats()
	for _, d := range webhookDescs {
		t := prometheus.CounterValue
		if d.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(d.d, t, d.get(s))
	}
}

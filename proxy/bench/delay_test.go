package bench

import (
	"strings"
	"testing"
	"time"
)

const metricsText = `# HELP cordon_reader_frame_delay_seconds Time ...
# TYPE cordon_reader_frame_delay_seconds histogram
cordon_reader_frame_delay_seconds_bucket{le="0.001"} 50
cordon_reader_frame_delay_seconds_bucket{le="0.002"} 90
cordon_reader_frame_delay_seconds_bucket{le="0.005"} 100
cordon_reader_frame_delay_seconds_bucket{le="+Inf"} 100
cordon_reader_frame_delay_seconds_sum 0.1
cordon_reader_frame_delay_seconds_count 100
cordon_camera_up{camera="a"} 1
`

func TestDelayHistogram(t *testing.T) {
	h, err := parseHistogram(strings.NewReader(metricsText), delayMetric)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.25, 500 * time.Microsecond},  // halfway through the first bucket
		{0.5, time.Millisecond},         // its top
		{0.7, 1500 * time.Microsecond},  // halfway through the second
		{0.95, 3500 * time.Microsecond}, // halfway through the third
	} {
		if got, over := h.quantile(tc.q); got != tc.want || over {
			t.Errorf("quantile(%v) = %v (over %v), want %v", tc.q, got, over, tc.want)
		}
	}

	// The window is the difference of two scrapes.
	before, _ := parseHistogram(strings.NewReader(strings.NewReplacer(" 50\n", " 40\n", " 90\n", " 40\n", " 100\n", " 40\n").Replace(metricsText)), delayMetric)
	d, err := h.sub(before)
	if err != nil {
		t.Fatal(err)
	}
	if d.total() != 60 {
		t.Fatalf("window holds %v observations, want 60", d.total())
	}
	if got, _ := d.quantile(0.5); got <= time.Millisecond || got > 2*time.Millisecond {
		t.Errorf("window p50 = %v, want within the second bucket", got)
	}

	// Beyond the largest bucket.
	over, _ := parseHistogram(strings.NewReader(strings.Replace(metricsText, `le="+Inf"} 100`, `le="+Inf"} 200`, 1)), delayMetric)
	if got, isOver := over.quantile(0.99); !isOver || got != 5*time.Millisecond {
		t.Errorf("quantile past the last bucket = %v (over %v), want 5ms, over", got, isOver)
	}

	for _, bad := range []string{"", "cordon_camera_up 1\n", `cordon_reader_frame_delay_seconds_bucket{le="x"} 1` + "\n", `cordon_reader_frame_delay_seconds_bucket{le="1"} 1` + "\n"} {
		if _, err := parseHistogram(strings.NewReader(bad), delayMetric); err == nil {
			t.Errorf("parseHistogram(%q) succeeded", bad)
		}
	}
}

func TestParseGauge(t *testing.T) {
	body := "# HELP cordon_gop_cache_bytes x\n# TYPE cordon_gop_cache_bytes gauge\ncordon_gop_cache_bytes_other 7\ncordon_gop_cache_bytes 1.2345e+06\n"
	if v, ok := parseGauge(body, gopMetric); !ok || v != 1234500 {
		t.Fatalf("parseGauge = %v, %v; want 1234500, true", v, ok)
	}
	if _, ok := parseGauge("cordon_up 1\n", gopMetric); ok {
		t.Fatal("parseGauge found a gauge that is not there")
	}
}

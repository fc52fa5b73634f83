package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// delayMetric is the proxy's histogram of the time from a frame's last
// camera packet reaching it to the frame's write to a reader returning.
// Reading it before and after the window separates the proxy's own delay
// from the bench's (whose readers share the machine).
const delayMetric = "cordon_reader_frame_delay_seconds"

// histogram is a cumulative Prometheus histogram: counts per upper bound.
type histogram struct {
	bounds []float64 // ascending; the last is +Inf
	counts []float64
}

// scrapeDelay reads the delay histogram from a proxy's /metrics.
func scrapeDelay(ctx context.Context, adminAddr string) (*histogram, error) {
	body, err := scrapeMetrics(ctx, adminAddr)
	if err != nil {
		return nil, err
	}
	return parseHistogram(strings.NewReader(body), delayMetric)
}

// scrapeMetrics returns a proxy's /metrics.
func scrapeMetrics(ctx context.Context, adminAddr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second) // a starved proxy answers late
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return string(b), err
}

// gopMetric is the bytes the proxy's GOP caches hold, all together.
const gopMetric = "cordon_gop_cache_bytes"

// parseGauge returns the value of one unlabelled gauge in the Prometheus
// text format, and whether it is there.
func parseGauge(body, name string) (float64, bool) {
	for line := range strings.Lines(body) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	}
	return 0, false
}

// parseHistogram picks the buckets of one unlabelled histogram out of the
// Prometheus text format.
func parseHistogram(r io.Reader, name string) (*histogram, error) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + `_bucket{le="`
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, rest, ok := strings.Cut(line, `"} `)
		if !ok {
			return nil, fmt.Errorf("%s: cannot parse %q", name, sc.Text())
		}
		bound, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		n, err2 := strconv.ParseFloat(strings.Fields(rest + " ")[0], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: cannot parse %q", name, sc.Text())
		}
		bs = append(bs, bucket{bound, n})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("no %s histogram in /metrics", name)
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	h := &histogram{}
	for _, b := range bs {
		h.bounds = append(h.bounds, b.le)
		h.counts = append(h.counts, b.n)
	}
	if !math.IsInf(h.bounds[len(h.bounds)-1], 1) {
		return nil, fmt.Errorf("%s: no +Inf bucket", name)
	}
	return h, nil
}

// sub returns the observations made between o and h (same buckets).
func (h *histogram) sub(o *histogram) (*histogram, error) {
	if !slices.Equal(h.bounds, o.bounds) {
		return nil, fmt.Errorf("%s: buckets changed between scrapes", delayMetric)
	}
	d := &histogram{bounds: h.bounds, counts: make([]float64, len(h.counts))}
	for i := range h.counts {
		d.counts[i] = h.counts[i] - o.counts[i]
	}
	return d, nil
}

// total is the number of observations.
func (h *histogram) total() float64 { return h.counts[len(h.counts)-1] }

// quantile estimates the q-quantile as Prometheus's histogram_quantile
// does: linear within the bucket that holds it. A quantile in the +Inf
// bucket is reported as the largest finite bound, with over set.
func (h *histogram) quantile(q float64) (d time.Duration, over bool) {
	n := h.total()
	if n == 0 {
		return 0, false
	}
	rank := q * n
	i, _ := slices.BinarySearchFunc(h.counts, rank, cmp.Compare[float64])
	if i >= len(h.bounds)-1 {
		return seconds(h.bounds[len(h.bounds)-2]), true
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = h.bounds[i-1], h.counts[i-1]
	}
	in := h.counts[i] - below
	frac := 1.0
	if in > 0 {
		frac = (rank - below) / in
	}
	return seconds(lo + (h.bounds[i]-lo)*frac), false
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

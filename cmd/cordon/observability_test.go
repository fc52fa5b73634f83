package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// syncBuffer is a bytes.Buffer a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls buf until re matches, and returns the first group.
func waitFor(t *testing.T, buf *syncBuffer, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never appeared in:\n%s", re, buf.String())
	return ""
}

var metricName = regexp.MustCompile(`\bcordon_[a-z0-9_]+\b`)

// kitMetrics returns the metric names the Grafana dashboard and the alert
// rules query, each with where it is used.
func kitMetrics(t *testing.T) map[string]string {
	t.Helper()
	used := map[string]string{}
	b, err := os.ReadFile("../../packaging/grafana/cordon.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				used[m] = "dashboard panel " + strconv.Quote(p.Title)
			}
		}
	}
	for _, v := range dash.Templating.List {
		for _, m := range metricName.FindAllString(v.Definition, -1) {
			used[m] = "dashboard variable " + v.Name
		}
	}
	b, err = os.ReadFile("../../packaging/prometheus/cordon-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("rules: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				used[m] = "alert " + r.Alert
			}
		}
	}
	if len(dash.Panels) < 10 || n < 8 {
		t.Fatalf("%d panels and %d rules: the files did not parse as expected", len(dash.Panels), n)
	}
	return used
}

// scrape returns the sample names at http://addr/metrics.
func scrape(t *testing.T, addr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		names[name] = true
	}
	return names
}

// TestObservabilityKitMetrics: every metric the Grafana dashboard and the
// Prometheus rules use is exported by cordon proxy (the demo, with one
// reader attached) or cordon egress (--netflow on loopback), both run
// in-process and scraped over loopback.
func TestObservabilityKitMetrics(t *testing.T) {
	used := kitMetrics(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	var pout, perr syncBuffer
	wg.Go(func() {
		if err := runProxy(ctx, &env{Stdin: strings.NewReader(""), Stdout: &pout, Stderr: &perr}, []string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--udp", "off", "--log-level", "warn"}); err != nil {
			t.Errorf("proxy: %v\n%s", err, perr.String())
		}
	})
	rtspURL := waitFor(t, &pout, regexp.MustCompile(`proxied at (rtsp://\S+)`))
	admin := waitFor(t, &pout, regexp.MustCompile(`http://(\S+)/v1/cameras`))
	waitCameraUp(t, admin)
	reader := playRTSP(t, rtspURL)
	defer reader.Close()

	dir := t.TempDir()
	var eout, eerr syncBuffer
	wg.Go(func() {
		err := runEgress(ctx, &env{Stdin: strings.NewReader(""), Stdout: &eout, Stderr: &eerr}, []string{
			"--policy", "../../packaging/etc/cordon/egress/default.yml", "--baseline", dir + "/baseline.json",
			"--netflow", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-level", "info"})
		if err != nil {
			t.Errorf("egress: %v\n%s", err, eerr.String())
		}
	})
	egressAddr := waitFor(t, &eerr, regexp.MustCompile(`msg="serving metrics" addr=(\S+)`))

	// Series with labels appear with what they count: the reader's once the
	// proxy counts it, the cleaner's once it dropped a unit of the demo's
	// filler. Scrape until everything used is there, or time is up.
	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		exported := scrape(t, admin)
		for name := range scrape(t, egressAddr) {
			exported[name] = true
		}
		missing = missing[:0]
		for name, where := range used {
			if !exported[name] {
				missing = append(missing, fmt.Sprintf("%s (%s)", name, where))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("the dashboard and rules use metrics cordon does not export:\n%s", strings.Join(missing, "\n"))
	}
	t.Logf("%d metrics used by the dashboard and rules, all exported", len(used))
}

// waitCameraUp polls /v1/cameras until a camera plays.
func waitCameraUp(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + admin + "/v1/cameras"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"state": "up"`) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the demo camera never came up")
}

// playRTSP is a minimal RTSP reader over TCP (OPTIONS, DESCRIBE, SETUP of
// every track interleaved, PLAY) that then drains the stream. Enough for the
// proxy to count a reader; the proxy's own tests use real clients.
func playRTSP(t *testing.T, url string) io.Closer {
	t.Helper()
	host := strings.TrimPrefix(url, "rtsp://")
	host, _, _ = strings.Cut(host, "/")
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	cseq := 0
	request := func(method, u string, headers ...string) (map[string]string, string) {
		t.Helper()
		cseq++
		fmt.Fprintf(c, "%s %s RTSP/1.0\r\nCSeq: %d\r\n%s\r\n", method, u, cseq, strings.Join(append(headers, ""), "\r\n"))
		status, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "RTSP/1.0 200") {
			t.Fatalf("%s %s: %q %v", method, u, status, err)
		}
		h := map[string]string{}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, ":")
			h[strings.ToLower(k)] = strings.TrimSpace(v)
		}
		body := make([]byte, 0)
		if n, _ := strconv.Atoi(h["content-length"]); n > 0 {
			body = make([]byte, n)
			if _, err := io.ReadFull(br, body); err != nil {
				t.Fatal(err)
			}
		}
		return h, string(body)
	}
	request("OPTIONS", url)
	h, sdp := request("DESCRIBE", url, "Accept: application/sdp")
	base := strings.TrimSuffix(h["content-base"], "/")
	if base == "" {
		base = url
	}
	session := ""
	ch := 0
	inMedia := false
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "m=") {
			inMedia = true
		}
		ctl, ok := strings.CutPrefix(line, "a=control:")
		if !ok || !inMedia {
			continue
		}
		if !strings.HasPrefix(ctl, "rtsp://") {
			ctl = base + "/" + ctl
		}
		hdrs := []string{fmt.Sprintf("Transport: RTP/AVP/TCP;unicast;interleaved=%d-%d", ch, ch+1)}
		if session != "" {
			hdrs = append(hdrs, "Session: "+session)
		}
		sh, _ := request("SETUP", ctl, hdrs...)
		session, _, _ = strings.Cut(sh["session"], ";")
		ch += 2
	}
	if session == "" {
		t.Fatalf("no track to set up in the SDP:\n%s", sdp)
	}
	request("PLAY", url, "Session: "+session)
	c.SetDeadline(time.Time{})
	go io.Copy(io.Discard, c)
	return c
}

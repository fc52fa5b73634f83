package egress

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/zstd"
)

var update = flag.Bool("update", false, "regenerate testdata/planted.pcap and the golden alerts")

// memSink collects alerts in memory.
type memSink struct {
	mu     sync.Mutex
	alerts []Alert
}

// count is how many alerts of kind name domain.
func (s *memSink) count(kind, domain string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.alerts {
		if a.Kind == kind && a.Domain == domain {
			n++
		}
	}
	return n
}

func (s *memSink) Send(_ context.Context, a Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
	return nil
}

func (s *memSink) Close() error { return nil }

func (s *memSink) jsonl() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, a := range s.alerts {
		_ = enc.Encode(a)
	}
	return b.Bytes()
}

// TestGenerate rebuilds the planted capture with -update (the recipe is
// internal/pcapgen.Planted; QUIC Initials and the TLS ClientHello come from
// real clients, so the bytes differ on each run while the events do not).
func TestGenerate(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata/planted.pcap")
	}
	var b bytes.Buffer
	if err := pcapgen.Planted(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/planted.pcap", b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var s bytes.Buffer
	if err := pcapgen.Small(&s); err != nil {
		t.Fatal(err)
	}
	// The CLI scripts embed this capture in base64 (see egress_pcap.txtar).
	if err := os.WriteFile("testdata/small.pcap", s.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runPcap(t *testing.T, path string, base *Baseline) *memSink {
	t.Helper()
	p, err := LoadPolicy("testdata/policy.yml")
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	e, err := NewEngine(Config{Policy: p, Sink: sink, Baseline: base, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := e.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.Metrics().DecodeErrors.Load(); n != 0 {
		t.Errorf("%d decode errors", n)
	}
	return sink
}

// TestPlanted runs the planted capture: every planted event raises its
// alert, the allowed traffic raises none, and the output matches the golden
// file (refresh with -update).
func TestPlanted(t *testing.T) {
	dir := t.TempDir()
	base, err := LoadBaseline(filepath.Join(dir, "baseline.json"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	sink := runPcap(t, "testdata/planted.pcap", base)
	got := sink.jsonl()
	golden := "testdata/planted.golden.jsonl"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("alerts differ from %s (run with -update after checking):\n%s", golden, got)
	}

	checkPlantedAlerts(t, sink.alerts)

	// new-destination survives a restart: a second run over the same capture
	// raises none, the other kinds stay.
	base2, err := LoadBaseline(filepath.Join(dir, "baseline.json"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if base2.Len() == 0 {
		t.Fatal("baseline not saved")
	}
	again := runPcap(t, "testdata/planted.pcap", base2)
	for _, a := range again.alerts {
		if a.Kind == KindNewDestination {
			t.Errorf("new-destination after restart: %+v", a)
		}
	}
	if len(again.alerts) != len(sink.alerts)-count(sink.alerts, KindNewDestination) {
		t.Errorf("second run: %d alerts, want %d", len(again.alerts), len(sink.alerts)-count(sink.alerts, KindNewDestination))
	}
}

// checkPlantedAlerts: every planted event raised its alert, allowed peers
// none, and each alert is complete.
func checkPlantedAlerts(t *testing.T, alerts []Alert) {
	t.Helper()
	type seen struct{ kind, camera, dst, domain string }
	var all []seen
	for _, a := range alerts {
		all = append(all, seen{a.Kind, a.Camera, a.Dst, a.Domain})
		// Allowed peers never appear, except the resolver carrying a vendor or tunnel query.
		if (a.Dst == "192.168.50.2" || a.Dst == "192.168.50.3") ||
			(a.Dst == "192.168.50.1" && a.Kind != KindVendorCloud && a.Kind != KindDNSTunnel) {
			t.Errorf("alert about allowed traffic: %+v", a)
		}
		if a.Kind == KindBeacon && a.Dst != "198.51.100.200" {
			t.Errorf("beacon on non-periodic traffic: %+v", a)
		}
	}
	for _, w := range []seen{
		{KindVendorCloud, "front-door", "192.168.50.1", "litedev.hik-connect.com"},
		{KindVendorCloud, "front-door", "203.0.113.10", "dev.ezvizlife.com"},
		{KindVendorCloud, "lobby", "198.51.100.20", "iotaccess.easy4ipcloud.com"},
		{KindVendorCloud, "lobby", "203.0.113.80", ""},
		{KindVendorCloud, "front-door", "203.0.113.30", "upgrade.secu100.net"},
		{KindVendorCloud, "lobby", "198.51.100.77", ""},
		{KindUnexpectedDestination, "loading-dock", "8.8.8.8", ""},
		{KindUnexpectedDestination, "front-door", "203.0.113.10", ""},
		{KindDNSTunnel, "loading-dock", "192.168.50.1", "data-drop.net"},
		{KindBeacon, "lobby", "198.51.100.200", ""},
		{KindVolume, "loading-dock", "203.0.113.200", ""},
		{KindLateral, "front-door", "192.168.50.11", ""}, // listing 10.1.2.3 too
		{KindNewDestination, "loading-dock", "203.0.113.200", ""},
	} {
		if !slices.Contains(all, w) {
			t.Errorf("missing alert %+v", w)
		}
	}
	listed := false // in the repeats of the lateral alert sent at once
	for _, a := range alerts {
		listed = listed || a.Kind == KindLateral && slices.Contains(a.Destinations, "10.1.2.3 tcp/445 (core host)")
	}
	if !listed {
		t.Errorf("no lateral alert lists the core host 10.1.2.3")
	}
	for _, a := range alerts {
		if a.Kind == KindVolume && a.Bytes < 1_000_000 {
			t.Errorf("volume alert with %d bytes", a.Bytes)
		}
		if a.Detail == "" || a.Severity == "" || a.FirstSeen.IsZero() || a.Count == 0 {
			t.Errorf("incomplete alert %+v", a)
		}
	}
}

func count(as []Alert, kind string) int {
	n := 0
	for _, a := range as {
		if a.Kind == kind {
			n++
		}
	}
	return n
}

// TestTsharkReadsFixtures checks the crafted capture with a real decoder:
// tshark must read it without complaint and see the planted DNS, TLS SNI and
// QUIC SNI.
func TestTsharkReadsFixtures(t *testing.T) {
	tshark := testutil.NeedTool(t, "tshark")[0]
	out, err := exec.Command(tshark, "-r", "testdata/planted.pcap", "-Y", "dns.qry.name or tls.handshake.extensions_server_name or http.host", "-T", "fields",
		"-e", "dns.qry.name", "-e", "tls.handshake.extensions_server_name", "-e", "http.host").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	for _, want := range []string{"litedev.hik-connect.com", "dev.ezvizlife.com", "iotaccess.easy4ipcloud.com", "data-drop.net", "upgrade.secu100.net"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tshark does not see %s in the capture:\n%.2000s", want, out)
		}
	}
}

// TestPcapngAndCompression: the planted capture as pcapng, gzip- and
// zstd-compressed, yields exactly the alerts of the pcap.
func TestPcapngAndCompression(t *testing.T) {
	want := runPcap(t, "testdata/planted.pcap", nil).jsonl()
	src, err := OpenFile("testdata/planted.pcap", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriter(&ng, src.LinkType())
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := src.ReadPacketData()
		if err != nil {
			break
		}
		ci.InterfaceIndex = 0
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(ng.Bytes())
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(ng.Bytes())
	zw.Close()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"planted.pcapng": ng.Bytes(), "planted.pcapng.gz": gz.Bytes(), "planted.pcapng.zst": zs.Bytes()} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := runPcap(t, path, nil).jsonl(); !bytes.Equal(got, want) {
			t.Errorf("%s: alerts differ from the pcap's:\n%s", name, got)
		}
	}
}

package egress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func encapEngine(t testing.TB) (*Engine, *memSink) {
	t.Helper()
	p, err := LoadPolicy("testdata/encap.yml")
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	e, err := NewEngine(Config{Policy: p, Sink: sink, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return e, sink
}

// TestEncapsulationCases runs each case of the encapsulation capture alone:
// the query it hides is seen (one vendor-cloud alert naming it), nothing
// else is raised (no "contacted … on /0") and nothing is counted malformed.
func TestEncapsulationCases(t *testing.T) {
	for _, c := range pcapgen.EncapCases() {
		t.Run(c.Name, func(t *testing.T) {
			e, sink := encapEngine(t)
			ts := pcapgen.Start
			for _, f := range c.Frames {
				ts = ts.Add(time.Millisecond)
				e.HandlePacket(context.Background(), f, gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}, pcapgen.EncapLinkTypes[c.Iface])
			}
			if err := e.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(sink.alerts) != 1 || sink.alerts[0].Kind != KindVendorCloud || sink.alerts[0].Domain != c.Name {
				t.Errorf("alerts %+v, want one vendor-cloud for %s", sink.alerts, c.Name)
			}
			if n := e.m.DecodeErrors.Load(); n != 0 {
				t.Errorf("%d packets counted malformed: %+v", n, e.m.Undecoded())
			}
		})
	}
}

// TestEncapsulationCapture reads the pcapng of every case, one interface
// per link type: each name alerts once, the ARP request is counted as a
// link-layer control frame, and the frame of link type 147 cordon cannot
// decode is counted by reason and link type, with one warning for it.
func TestEncapsulationCapture(t *testing.T) {
	e, sink := encapEngine(t)
	var logBuf bytes.Buffer
	e.log = slogTo(&logBuf)
	src, err := OpenFile("testdata/encap.pcapng", nil)
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
	got := map[string]int{}
	for _, a := range sink.alerts {
		if a.Kind != KindVendorCloud {
			t.Errorf("unexpected alert %+v", a)
		}
		got[a.Domain]++
	}
	cases := pcapgen.EncapCases()
	for _, c := range cases {
		if got[c.Name] != 1 {
			t.Errorf("%s: %d alerts, want 1", c.Name, got[c.Name])
		}
	}
	want := []Undecoded{
		{"fragment", layers.LinkTypeEthernet, 9},
		{"link-type", pcapgen.LinkTypeUser0, 1},
	}
	if u := e.m.Undecoded(); !slices.Equal(u, want) {
		t.Errorf("undecoded %+v, want %+v", u, want)
	}
	if r, l := e.m.Reassembled.Load(), e.m.FragmentsLost.Load(); r != 4 || l != 0 {
		t.Errorf("reassembled %d, lost %d; want 4 and 0", r, l)
	}
	if n := strings.Count(logBuf.String(), "link type not decoded"); n != 1 || !strings.Contains(logBuf.String(), "unknown (147)") {
		t.Errorf("want one warning naming link type 147:\n%s", logBuf.String())
	}
	if n := e.m.LinkControl.Load(); n != 1 { // the ARP request
		t.Errorf("%d link-layer control frames, want 1", n)
	}
	if s := e.m.Summary(time.Second); !strings.Contains(s, "1 link-layer control frames (ARP, LLDP, STP, ...); not decoded: 9 fragment (Ethernet (1)), 1 link-type (unknown (147))") {
		t.Errorf("summary %q does not list the packets not decoded", s)
	}
}

// TestTsharkReadsEncap: tshark sees every query of the encapsulation
// capture too (it decodes SLL2, GRE, ERSPAN, VXLAN and reassembles IPv4 and
// IPv6 fragments), so the crafted frames are what they claim to be.
func TestTsharkReadsEncap(t *testing.T) {
	tshark := testutil.NeedTool(t, "tshark")[0]
	out, err := exec.Command(tshark, "-r", "testdata/encap.pcapng", "-Y", "dns.qry.name", "-T", "fields", "-e", "dns.qry.name").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	for _, c := range pcapgen.EncapCases() {
		if !strings.Contains(string(out), c.Name) {
			t.Errorf("tshark does not see %s:\n%s", c.Name, out)
		}
	}
}

// TestNothingDecoded: a capture whose packets are all of a link type
// cordon does not read is an error that says so.
func TestNothingDecoded(t *testing.T) {
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	_ = w.WriteFileHeader(65535, pcapgen.LinkTypeUser0)
	for range 3 {
		_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: pcapgen.Start, CaptureLength: 4, Length: 4}, []byte{1, 2, 3, 4})
	}
	src, err := openStream("user0.pcap", io.NopCloser(&b))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newTestEngine(t, testPolicy)
	err = e.Run(context.Background(), src)
	var nd *NothingDecodedError
	if !errors.As(err, &nd) || err.Error() != "egress: user0.pcap: none of the 3 packets could be decoded: 3 link-type (link type unknown (147))" {
		t.Fatalf("Run = %v", err)
	}
	// An empty capture is not an error.
	var empty bytes.Buffer
	w = pcapgo.NewWriter(&empty)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	src, _ = openStream("empty.pcap", io.NopCloser(&empty))
	if err := e.Run(context.Background(), src); err != nil {
		t.Fatalf("empty capture: %v", err)
	}
}

// TestFragmentBounds: fragments that never complete stay within the
// reassembler's bounds and are given up, counted, after the time-out.
func TestFragmentBounds(t *testing.T) {
	var m Metrics
	r := newReassembler(&m)
	src, dst := netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("8.8.8.8")
	chunk := make([]byte, 8000)
	ts := int64(0)
	for i := range 3 * maxFragDatagrams {
		if _, dr := r.add(fragKey{src: src, dst: dst, id: uint32(i), proto: protoUDP}, 0, true, chunk, ts); dr != dropFragment {
			t.Fatalf("datagram %d: %v", i, dr)
		}
		if len(r.m) > maxFragDatagrams || r.bytes > maxFragBytes {
			t.Fatalf("datagram %d: %d datagrams, %d bytes held", i, len(r.m), r.bytes)
		}
	}
	if m.FragmentsLost.Load() == 0 {
		t.Fatal("no datagram given up")
	}
	held := uint64(len(r.m))
	lost := m.FragmentsLost.Load()
	r.expire(ts + int64(fragTimeout) + 1)
	if len(r.m) != 0 || r.bytes != 0 || m.FragmentsLost.Load() != lost+held {
		t.Fatalf("after the time-out: %d datagrams, %d bytes, %d lost", len(r.m), r.bytes, m.FragmentsLost.Load())
	}
	// Too many fragments, and a fragment past 64 KiB.
	k := fragKey{src: src, dst: dst, id: 1}
	for i := range maxFragments + 1 {
		_, dr := r.add(k, 8*i, true, chunk[:8], ts)
		if i == maxFragments && dr != dropMalformed {
			t.Fatalf("fragment %d: %v", i, dr)
		}
	}
	if _, dr := r.add(k, maxDatagram-8, true, chunk[:16], ts); dr != dropMalformed {
		t.Fatalf("fragment past 64 KiB: %v", dr)
	}
}

func TestGenerateEncap(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata/encap.pcapng")
	}
	var b bytes.Buffer
	if err := pcapgen.Encap(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/encap.pcapng", b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestPlainIPv4MatchesParser: the parser-free path for plain Ethernet/IPv4
// frames decodes every frame it takes exactly as gopacket's parser does,
// over the planted capture's frames and variants of each (cut short,
// fragment bits set, IP length changed, options, VLAN-tagged).
func TestPlainIPv4MatchesParser(t *testing.T) {
	src, err := OpenFile("testdata/planted.pcap", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var m Metrics
	fast, slow := newDecoder(&m, DefaultVXLANPorts), newDecoder(&m, DefaultVXLANPorts)
	taken := 0
	check := func(frame []byte) {
		if plainMatchesParser(t, fast, slow, frame) {
			taken++
		}
	}
	for {
		data, _, err := src.ReadPacketData()
		if err != nil {
			break
		}
		frame := slices.Clone(data)
		check(frame)
		for _, cut := range []int{len(frame) - 1, 14 + 20, 14 + 24} {
			if cut > 0 && cut < len(frame) {
				check(frame[:cut])
			}
		}
		if len(frame) < 14+20 {
			continue
		}
		for _, mut := range []func(b []byte){
			func(b []byte) { b[14+6] |= 0x20 },                     // more fragments
			func(b []byte) { b[14+7] |= 0x01 },                     // fragment offset
			func(b []byte) { b[14+6] |= 0x40 },                     // don't fragment: still plain
			func(b []byte) { b[14+2], b[14+3] = 0, 0 },             // TSO: length 0
			func(b []byte) { b[14+3] -= 4 },                        // shorter IP length
			func(b []byte) { b[14] = 0x46 },                        // options
			func(b []byte) { b[12], b[13] = 0x81, 0x00 },           // VLAN tag
			func(b []byte) { b[14+9] = byte(protoTCP ^ 1) },        // another protocol
			func(b []byte) { b[14+9] = 41 },                        // IPv6 in IPv4: the parser unwraps it
			func(b []byte) { b[14+9] = 4 },                         // IPv4 in IPv4
			func(b []byte) { b[14+9] = protoUDP; b[14+3] &= 0xf0 }, // UDP, odd length
		} {
			b := slices.Clone(frame)
			mut(b)
			check(b)
		}
	}
	if taken < 100 {
		t.Fatalf("only %d frames took the plain path", taken)
	}
}

// plainMatchesParser reports whether frame took the plain path, failing t
// when the parser decodes it differently.
func plainMatchesParser(t *testing.T, fast, slow *decoder, frame []byte) bool {
	t.Helper()
	var pf, ps packet
	rf, ok := fast.plainIPv4(frame, &pf)
	if !ok {
		return false
	}
	rs := slow.layers(slow.pEth, frame, &ps, 0)
	if rf != rs || !reflect.DeepEqual(pf, ps) {
		t.Fatalf("frame %x:\nplain  %v %+v\nparser %v %+v", frame, rf, pf, rs, ps)
	}
	return true
}

// FuzzPlainIPv4: on any frame the parser-free path takes, it agrees with
// gopacket's parser; seeded from the planted capture.
func FuzzPlainIPv4(f *testing.F) {
	src, err := OpenFile("testdata/planted.pcap", nil)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		data, _, err := src.ReadPacketData()
		if err != nil {
			break
		}
		f.Add(slices.Clone(data))
	}
	src.Close()
	var m Metrics
	fast, slow := newDecoder(&m, DefaultVXLANPorts), newDecoder(&m, DefaultVXLANPorts)
	f.Fuzz(func(t *testing.T, frame []byte) {
		plainMatchesParser(t, fast, slow, frame)
	})
}

package capture

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// pkt describes a crafted Ethernet frame.
type pkt struct {
	proto    string // tcp, udp, icmp, icmp6, arp, sctp
	src, dst string // addr:port
	frag     uint16 // IPv4 fragment offset (8-byte units)
}

func (p pkt) frame(t testing.TB, id int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	payload := gopacket.Payload([]byte{byte(id >> 8), byte(id), 'c', 'o', 'r', 'd', 'o', 'n'})
	if p.proto == "arp" {
		eth.EthernetType = layers.EthernetTypeARP
		s, d := netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst)
		arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: 1, SourceHwAddress: eth.SrcMAC, SourceProtAddress: s.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: d.AsSlice()}
		return serialize(t, eth, arp, payload)
	}
	s, d := netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst)
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	protos := map[string]layers.IPProtocol{"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "sctp": 132}
	if s.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: protos[p.proto], SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice(), FragOffset: p.frag}
		ls, nl = []gopacket.SerializableLayer{eth, ip}, ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: protos[p.proto], SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice()}
		ls, nl = []gopacket.SerializableLayer{eth, ip}, ip
	}
	switch p.proto {
	case "tcp":
		tcp := &layers.TCP{SrcPort: layers.TCPPort(s.Port()), DstPort: layers.TCPPort(d.Port()), SYN: true, Window: 1024}
		_ = tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	case "udp":
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
		_ = udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp)
	case "sctp":
		ls = append(ls, &layers.SCTP{SrcPort: layers.SCTPPort(s.Port()), DstPort: layers.SCTPPort(d.Port())})
	case "icmp":
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)})
	case "icmp6":
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
		_ = ic.SetNetworkLayerForChecksum(nl)
		ls = append(ls, ic)
	}
	return serialize(t, append(ls, payload)...)
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// corpus is the set of frames every filter case is run against.
var corpus = []pkt{
	{"udp", "192.168.50.10:40000", "203.0.113.5:8800", 0},
	{"udp", "192.168.50.10:5353", "192.168.50.1:53", 0},
	{"tcp", "192.168.50.10:40001", "198.51.100.7:443", 0},
	{"tcp", "192.168.50.2:51000", "192.168.50.10:554", 0},
	{"tcp", "192.168.50.10:554", "192.168.50.2:51000", 0},
	{"udp", "192.168.50.10:40000", "203.0.113.5:8800", 100}, // a later fragment: no ports
	{"icmp", "192.168.50.10:0", "192.168.50.1:0", 0},
	{"udp", "[2001:db8:50::10]:41000", "[2001:db8:99::1]:9999", 0},
	{"tcp", "[2001:db8:50::10]:41001", "[2001:db8:99::1]:443", 0},
	{"icmp6", "[2001:db8:50::10]:0", "[fe80::1]:0", 0},
	{"sctp", "10.0.0.1:3868", "10.0.0.2:3868", 0},
	{"arp", "192.168.50.10", "192.168.50.1", 0},
	{"udp", "10.9.8.7:123", "192.168.50.11:123", 0},
}

// filterCases are filters with the corpus indices they accept.
var filterCases = []struct {
	expr string
	want []int
}{
	{"", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
	{"udp", []int{0, 1, 5, 7, 12}},
	{"tcp", []int{2, 3, 4, 8}},
	{"ip6", []int{7, 8, 9}},
	{"ip", []int{0, 1, 2, 3, 4, 5, 6, 10, 12}},
	{"arp", []int{11}},
	{"icmp or icmp6", []int{6, 9}},
	{"sctp", []int{10}},
	{"port 8800", []int{0}},
	{"udp port 53", []int{1}},
	{"tcp port 53", nil},
	{"dst port 554", []int{3}},
	{"src port 554", []int{4}},
	{"tcp src port 554", []int{4}},
	{"port 3868", []int{10}},
	{"portrange 400-600", []int{2, 3, 4, 8}},
	{"host 192.168.50.2", []int{3, 4}},
	{"src host 192.168.50.2", []int{3}},
	{"dst host 2001:db8:99::1", []int{7, 8}},
	{"net 192.168.50.0/24", []int{0, 1, 2, 3, 4, 5, 6, 11, 12}},
	{"src host 192.168.50.10 and not udp", []int{2, 4, 6, 11}},
	{"dst host 192.168.50.10", []int{3}},
	{"src net 192.168.50.0/24 and not dst net 192.168.50.0/24", []int{0, 2, 5}},
	{"net 2001:db8::/32", []int{7, 8, 9}},
	{"net 2001:db8:50::/48 and udp", []int{7}},
	{"net 0.0.0.0/0", []int{0, 1, 2, 3, 4, 5, 6, 10, 11, 12}},
	{"not port 554 and (udp or tcp) and net 192.168.50.0/24", []int{0, 1, 2, 5, 12}},
	{"!(host 192.168.50.2) && tcp", []int{2, 8}},
	{"udp || arp", []int{0, 1, 5, 7, 11, 12}},
	{"proto 17 and dst port 9999", []int{7}},
	{"host 192.168.50.10 and (port 53 or port 443)", []int{1, 2}},
	{"not ip and not ip6", []int{11}},
}

func runFilter(t testing.TB, prog []bpf.Instruction, frame []byte) int {
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCompileFilter(t *testing.T) {
	frames := make([][]byte, len(corpus))
	for i, p := range corpus {
		frames[i] = p.frame(t, i)
	}
	for _, tc := range filterCases {
		t.Run(tc.expr, func(t *testing.T) {
			prog, err := CompileFilter(tc.expr, 96)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bpf.Assemble(prog); err != nil {
				t.Fatalf("assemble: %v", err)
			}
			var got []int
			for i, f := range frames {
				n := runFilter(t, prog, f)
				if n != 0 {
					got = append(got, i)
					if n != 96 {
						t.Errorf("frame %d: kept %d bytes, want the snaplen 96", i, n)
					}
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("accepts %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCompileFilterRaw: on raw IP packets every filter keeps what it keeps
// on the Ethernet frames, less ARP (which raw IP interfaces do not carry).
func TestCompileFilterRaw(t *testing.T) {
	for _, tc := range filterCases {
		prog, err := CompileFilterRaw(tc.expr, 96)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []int
		for i, p := range corpus {
			if p.proto == "arp" {
				continue
			}
			if slices.Contains(tc.want, i) {
				want = append(want, i)
			}
			if runFilter(t, prog, p.frame(t, i)[14:]) != 0 {
				got = append(got, i)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("raw %q: accepts %v, want %v", tc.expr, got, want)
		}
	}
}

// TestFilterAgreesWithTcpdump runs every filter through tcpdump (libpcap's
// compiler) over the same frames, as Ethernet and as raw IP captures: both
// must keep the same ones.
func TestFilterAgreesWithTcpdump(t *testing.T) {
	tcpdump := testutil.NeedTool(t, "tcpdump")[0]
	for _, raw := range []bool{false, true} {
		name, lt, compile := "ethernet", layers.LinkTypeEthernet, CompileFilter
		if raw {
			name, lt, compile = "raw", layers.LinkTypeRaw, CompileFilterRaw
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var buf bytes.Buffer
			w := pcapgo.NewWriter(&buf)
			_ = w.WriteFileHeader(65535, lt)
			var frames [][]byte
			for i, p := range corpus {
				f := p.frame(t, i)
				if raw {
					if p.proto == "arp" {
						continue
					}
					f = f[14:]
				}
				frames = append(frames, f)
				_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(int64(1e9+i), 0), CaptureLength: len(f), Length: len(f)}, f)
			}
			in := filepath.Join(dir, "corpus.pcap")
			if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, tc := range filterCases {
				if raw && strings.Contains(tc.expr, "arp") {
					continue // tcpdump refuses arp on raw IP; TestCompileFilterRaw covers it
				}
				out := filepath.Join(dir, "out.pcap")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				cmd := exec.CommandContext(ctx, tcpdump, "-r", in, "-w", out, tc.expr)
				if msg, err := cmd.CombinedOutput(); err != nil {
					cancel()
					t.Fatalf("tcpdump %q: %v\n%s", tc.expr, err, msg)
				}
				cancel()
				kept := readFrames(t, out)
				var want []int
				for i, f := range frames {
					for _, k := range kept {
						if bytes.Equal(f, k) {
							want = append(want, i)
							break
						}
					}
				}
				prog, err := compile(tc.expr, 65535)
				if err != nil {
					t.Fatal(err)
				}
				var got []int
				for i, f := range frames {
					if runFilter(t, prog, f) != 0 {
						got = append(got, i)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("filter %q: cordon keeps %v, tcpdump keeps %v", tc.expr, got, want)
				}
			}
		})
	}
}

func readFrames(t *testing.T, path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		out = append(out, data)
	}
}

func TestFilterErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"host", `capture: filter "host": at offset 0: "host" needs a value`},
		{"host example.com", `capture: filter "host example.com": at offset 5: host wants an IP address (names are not resolved), not "example.com"`},
		{"port 70000", `at offset 5: port wants a number 0-65535, not "70000"`},
		{"net 10.0.0.0", `at offset 4: net wants a CIDR prefix like 192.168.50.0/24, not "10.0.0.0"`},
		{"tcp and", `at offset 7: expression ends early`},
		{"(udp", `at offset 4: missing )`},
		{"udp)", `at offset 3: unexpected ")"`},
		{"vlan 100", `at offset 0: unknown primitive "vlan"`},
		{"portrange 9-1", `at offset 10: portrange wants LOW-HIGH, not "9-1"`},
		{"proto x", `at offset 6: proto wants a protocol number 0-255, not "x"`},
		{strings.Repeat("(", 100) + "udp" + strings.Repeat(")", 100), `nested too deeply`},
		{strings.Repeat("a", MaxFilterLen+1), `longer than 1024 bytes`},
		{strings.TrimSuffix(strings.Repeat("port 1 or ", 65), " or "), `more than 64 primitives`},
	} {
		_, err := CompileFilter(tc.expr, 0)
		var fe *FilterError
		if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CompileFilter(%.40q) = %v, want a FilterError containing %q", tc.expr, err, tc.want)
		}
	}
	// 64 primitives of IPv6 nets compile to too long jumps or programs.
	expr := strings.TrimSuffix(strings.Repeat("net 2001:db8::/127 or ", 40), " or ")
	if _, err := CompileFilter(expr, 0); !errors.Is(err, ErrFilterTooComplex) {
		t.Errorf("long filter: %v, want ErrFilterTooComplex", err)
	}
}

// FuzzCompileFilter: any expression either fails cleanly or yields a
// program the assembler and the BPF VM accept, which never panics on the
// corpus frames.
func FuzzCompileFilter(f *testing.F) {
	for _, tc := range filterCases {
		f.Add(tc.expr)
	}
	f.Add("src net 10.0.0.0/8 && !dst portrange 1-1024 || (arp)")
	frames := make([][]byte, len(corpus))
	for i, p := range corpus {
		frames[i] = p.frame(f, i)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		prog, err := CompileFilter(expr, 128)
		if err != nil {
			return
		}
		if len(prog) > maxInstructions {
			t.Fatalf("%d instructions", len(prog))
		}
		if _, err := bpf.Assemble(prog); err != nil {
			t.Fatalf("assemble %q: %v", expr, err)
		}
		for _, fr := range frames {
			if n := runFilter(t, prog, fr); n != 0 && n != 128 {
				t.Fatalf("kept %d", n)
			}
		}
	})
}

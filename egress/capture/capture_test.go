package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// vethPair creates a network namespace and a veth pair: host (in this
// namespace, hostAddr) and its peer inside the namespace (peerAddr). Only
// these two addresses are used; everything is removed at the end.
func vethPair(t *testing.T) (host, hostAddr, peerAddr string) {
	t.Helper()
	testutil.NeedRoot(t, "creates a network namespace and a veth pair")
	ip := testutil.NeedTool(t, "ip")[0]
	id := os.Getpid() % 100000
	ns := fmt.Sprintf("cordon-cap-%d", id)
	host, peer := fmt.Sprintf("cdh%d", id), fmt.Sprintf("cdp%d", id)
	third := id % 250
	hostAddr, peerAddr = fmt.Sprintf("10.254.%d.1", third), fmt.Sprintf("10.254.%d.2", third)
	run := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		exec.Command(ip, "link", "del", host).Run()
		exec.Command(ip, "netns", "del", ns).Run()
	})
	run("link", "add", host, "type", "veth", "peer", "name", peer)
	run("link", "set", peer, "netns", ns)
	run("addr", "add", hostAddr+"/30", "dev", host)
	run("link", "set", host, "up")
	run("-n", ns, "addr", "add", peerAddr+"/30", "dev", peer)
	run("-n", ns, "link", "set", peer, "up")
	run("-n", ns, "link", "set", "lo", "up")
	return host, hostAddr, peerAddr
}

type captured struct {
	data []byte
	ci   gopacket.CaptureInfo
}

// collect reads from src until want packets arrived or the deadline.
func collect(t *testing.T, src *Source, want int, d time.Duration) <-chan []captured {
	out := make(chan []captured, 1)
	go func() {
		var got []captured
		deadline := time.Now().Add(d)
		for len(got) < want && time.Now().Before(deadline) {
			data, ci, err := src.ReadPacketData()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("read: %v", err)
				}
				break
			}
			got = append(got, captured{append([]byte(nil), data...), ci})
		}
		out <- got
	}()
	return out
}

// TestLiveCaptureVeth captures crafted UDP and TCP between this namespace
// and a veth peer in a namespace the test creates, and checks the filter
// and the snap length.
func TestLiveCaptureVeth(t *testing.T) {
	iface, hostAddr, peerAddr := vethPair(t)

	udpSrc, err := open(iface, Options{Filter: "udp and dst port 9999 and dst host " + peerAddr, Snaplen: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer udpSrc.Close()
	tcpSrc, err := open(iface, Options{Filter: "tcp and host " + peerAddr, Promiscuous: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tcpSrc.Close()
	if udpSrc.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v", udpSrc.LinkType())
	}
	udpGot := collect(t, udpSrc, 3, 5*time.Second)
	tcpGot := collect(t, tcpSrc, 2, 5*time.Second)

	// Noise the filters must drop: UDP to another port (the peer answers
	// with ICMP port unreachable), and ARP.
	// An unconnected socket: the peer's ICMP port unreachable must not
	// fail the next write.
	pc, err := net.ListenPacket("udp", net.JoinHostPort(hostAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo([]byte("noise"), &net.UDPAddr{IP: net.ParseIP(peerAddr), Port: 9998}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1000)
	for i := range 3 {
		big[0] = byte(i)
		if _, err := pc.WriteTo(big, &net.UDPAddr{IP: net.ParseIP(peerAddr), Port: 9999}); err != nil {
			t.Fatal(err)
		}
	}
	// TCP to a closed port: our SYN out, the peer's RST back.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(peerAddr, "8080"), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("connected to a port nobody listens on")
	}

	checkUDPCapture(t, <-udpGot, hostAddr, peerAddr)
	checkTCPCapture(t, <-tcpGot)
	if rx, drops, err := udpSrc.Stats(); err != nil || drops != 0 || rx < 3 {
		t.Errorf("stats: received %d dropped %d err %v", rx, drops, err)
	}
}

// checkUDPCapture: the three 1000-byte datagrams to port 9999, in order,
// cut to the 200-byte snap length.
func checkUDPCapture(t *testing.T, udp []captured, hostAddr, peerAddr string) {
	t.Helper()
	if len(udp) != 3 {
		t.Fatalf("udp capture: %d packets, want 3", len(udp))
	}
	for i, c := range udp {
		p := gopacket.NewPacket(c.data, layers.LayerTypeEthernet, gopacket.Default)
		ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip4 == nil || u == nil {
			t.Fatalf("packet %d is not IPv4/UDP: %v", i, p)
		}
		if ip4.SrcIP.String() != hostAddr || ip4.DstIP.String() != peerAddr || u.DstPort != 9999 {
			t.Errorf("packet %d: %v:%d > %v:%d", i, ip4.SrcIP, u.SrcPort, ip4.DstIP, u.DstPort)
		}
		if c.ci.CaptureLength != 200 || len(c.data) != 200 || c.ci.Length != 14+20+8+1000 {
			t.Errorf("packet %d: caplen %d (data %d), len %d; want snaplen 200 of %d", i, c.ci.CaptureLength, len(c.data), c.ci.Length, 14+20+8+1000)
		}
		if c.data[14+20+8] != byte(i) {
			t.Errorf("packet %d: payload starts %d, packets out of order", i, c.data[42])
		}
	}
}

// checkTCPCapture: the SYN to the closed port, then the peer's RST.
func checkTCPCapture(t *testing.T, tcp []captured) {
	t.Helper()
	if len(tcp) != 2 {
		t.Fatalf("tcp capture: %d packets, want SYN and RST", len(tcp))
	}
	var flags []string
	for _, c := range tcp {
		p := gopacket.NewPacket(c.data, layers.LayerTypeEthernet, gopacket.Default)
		tl, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tl == nil {
			t.Fatalf("not TCP: %v", p)
		}
		switch {
		case tl.SYN && !tl.ACK:
			flags = append(flags, "SYN")
		case tl.RST:
			flags = append(flags, "RST")
		default:
			flags = append(flags, "other")
		}
	}
	if strings.Join(flags, ",") != "SYN,RST" {
		t.Errorf("tcp flags %v, want SYN then RST", flags)
	}
}

// TestCloseUnblocksRead: Close makes a blocked ReadPacketData return io.EOF.
func TestCloseUnblocksRead(t *testing.T) {
	testutil.NeedRoot(t, "opens a packet socket")
	src, err := Open("lo", Options{Filter: "udp port 1 and host 127.0.0.254"})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := src.ReadPacketData()
		errc <- err
	}()
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	src.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("read after close: %v, want io.EOF", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("read returned %v after Close", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("ReadPacketData still blocked after Close")
	}
}

// TestNoCapNetRaw runs this test binary again without CAP_NET_RAW (setpriv
// drops it from the bounding set): Open must say what is missing.
func TestNoCapNetRaw(t *testing.T) {
	if os.Getenv("CORDON_CAPTURE_NOCAP") == "1" {
		_, err := Open("lo", Options{})
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_RAW") {
			fmt.Printf("Open without CAP_NET_RAW: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("ok:", err)
		os.Exit(0)
	}
	testutil.NeedRoot(t, "drops CAP_NET_RAW from a root process")
	setpriv := testutil.NeedTool(t, "setpriv")[0]
	cmd := exec.Command(setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", os.Args[0], "-test.run=^TestNoCapNetRaw$")
	cmd.Env = append(os.Environ(), "CORDON_CAPTURE_NOCAP=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok: capture: needs CAP_NET_RAW") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ iface, filter, want string }{
		{"", "", "an interface name is required"},
		{"cordon-nope0", "", `no interface "cordon-nope0"`},
		{"../etc", "", "is not an interface name"},
		{"lo", "port x", `port wants a number`},
	} {
		_, err := Open(tc.iface, Options{Filter: tc.filter})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q, %q) = %v, want %q", tc.iface, tc.filter, err, tc.want)
		}
	}
}

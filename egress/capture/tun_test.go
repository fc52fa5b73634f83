package capture

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// inNewNetns runs f on a thread moved into a new, empty network namespace
// (and never returned to the scheduler, so nothing else runs there).
// Sockets f opens belong to that namespace; programs it runs start in it.
func inNewNetns(t *testing.T, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// openTun creates a tun interface attached to this process.
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(ifr))); errno != 0 {
		unix.Close(fd)
		return nil, errno
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// TestLiveCaptureTun captures raw IP on a tun interface in a network
// namespace the test creates: a UDP datagram sent to the peer (outgoing)
// and one the test injects through the tun (incoming) pass the filter; the
// rest of the datagrams do not.
func TestLiveCaptureTun(t *testing.T) {
	testutil.NeedRoot(t, "creates a network namespace and a tun interface")
	ip := testutil.NeedTool(t, "ip")[0]
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	var (
		got []captured
		lt  layers.LinkType
	)
	err := inNewNetns(t, func() error {
		tun, err := openTun("cdtun0")
		if err != nil {
			return err
		}
		defer tun.Close()
		for _, args := range [][]string{{"addr", "add", "10.253.0.1/30", "dev", "cdtun0"}, {"link", "set", "cdtun0", "up"}} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput()
			cancel()
			if err != nil {
				return errors.New("ip " + strings.Join(args, " ") + ": " + err.Error() + ": " + string(out))
			}
		}
		src, err := open("cdtun0", Options{Filter: "udp and port 9999 and net 10.253.0.0/30"})
		if err != nil {
			return err
		}
		defer src.Close()
		lt = src.LinkType()
		res := collect(t, src, 2, 5*time.Second)
		// Outgoing: the kernel routes it into the tun (the test's fd).
		pc, err := net.ListenPacket("udp4", "10.253.0.1:0")
		if err != nil {
			return err
		}
		defer pc.Close()
		dst := &net.UDPAddr{IP: net.IPv4(10, 253, 0, 2), Port: 9999}
		pc.WriteTo([]byte("to the peer"), &net.UDPAddr{IP: net.IPv4(10, 253, 0, 2), Port: 9998}) // filtered out
		if _, err := pc.WriteTo([]byte("to the peer"), dst); err != nil {
			return err
		}
		// Incoming: a crafted datagram from the peer, written to the tun.
		in := rawUDP(t, "10.253.0.2:40000", "10.253.0.1:9999", "from the peer")
		if _, err := tun.Write(rawUDP(t, "10.253.0.2:40000", "10.253.0.1:53", "filtered out")); err != nil {
			return err
		}
		if _, err := tun.Write(in); err != nil {
			return err
		}
		got = <-res
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lt != layers.LinkTypeRaw {
		t.Errorf("link type %v, want raw IP", lt)
	}
	if len(got) != 2 {
		t.Fatalf("captured %d packets, want 2", len(got))
	}
	var seen []string
	for _, c := range got {
		p := gopacket.NewPacket(c.data, layers.LayerTypeIPv4, gopacket.Default)
		u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if u == nil {
			t.Fatalf("not UDP over raw IPv4: %v", p)
		}
		seen = append(seen, string(u.Payload))
	}
	if strings.Join(seen, ",") != "to the peer,from the peer" {
		t.Errorf("payloads %q", seen)
	}
}

// rawUDP builds an IPv4/UDP packet.
func rawUDP(t *testing.T, src, dst, payload string) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
	_ = udp.SetNetworkLayerForChecksum(ip4)
	return serialize(t, ip4, udp, gopacket.Payload(payload))
}

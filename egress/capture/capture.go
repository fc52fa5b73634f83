// Package capture reads packets live from a network interface through an
// AF_PACKET (TPACKET v3) ring, without cgo or libpcap: gopacket's afpacket
// package maps the ring, and the capture filter is compiled here (a small
// documented subset of tcpdump's language, see CompileFilter) to classic
// BPF, attached with SO_ATTACH_FILTER so that the kernel drops unwanted
// packets and truncates kept ones to the snap length.
//
// Opening a capture needs CAP_NET_RAW (root, or `setcap cap_net_raw+ep`).
package capture

import (
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/cordon-vms/cordon/egress"
)

// ErrPermission is returned (wrapped) when the process may not open a
// packet socket.
var ErrPermission = errors.New("capture: needs CAP_NET_RAW (run as root, or `setcap cap_net_raw+ep cordon`)")

// Options configure a live capture.
type Options struct {
	// Filter is a capture filter expression (see CompileFilter), e.g.
	// "net 192.168.50.0/24 and not port 554". It defaults to everything.
	Filter string
	// Snaplen is the most bytes kept of each packet. It defaults to 65535.
	Snaplen int
	// Promiscuous also captures frames not addressed to the interface (a
	// switch mirror port). It defaults to off.
	Promiscuous bool
	// BufferSize is the ring size in bytes. It defaults to 8 MiB.
	BufferSize int
}

// Source is a live capture; it implements egress.PacketSource.
type Source struct {
	iface  string
	lt     layers.LinkType
	tp     *afpacket.TPacket
	vm     *bpf.VM
	since  time.Time // filter attached; earlier packets are filtered here
	settle bool      // a packet after since was seen: the kernel filters all

	mu     sync.Mutex // held while reading the ring, so Close cannot unmap it under us
	closed atomic.Bool
}

var _ egress.PacketSource = (*Source)(nil)

// pollTimeout bounds how long a read blocks before it checks for Close.
const pollTimeout = 100 * time.Millisecond

// Open starts capturing on iface (Ethernet, loopback, or a raw IP interface
// such as tun, WireGuard or an ip tunnel). The
// source is a *Source (for Stats).
func Open(iface string, o Options) (egress.PacketSource, error) {
	s, err := open(iface, o)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func open(iface string, o Options) (*Source, error) {
	if iface == "" {
		return nil, errors.New("capture: an interface name is required")
	}
	if o.Snaplen <= 0 || o.Snaplen > 65535 {
		o.Snaplen = 65535
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 8 << 20
	}
	raw, err := checkLinkType(iface)
	if err != nil {
		return nil, err
	}
	compile, lt := CompileFilter, layers.LinkTypeEthernet
	if raw {
		compile, lt = CompileFilterRaw, layers.LinkTypeRaw
	}
	prog, err := compile(o.Filter, o.Snaplen)
	if err != nil {
		return nil, err
	}
	insns, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("capture: filter %q: %w", o.Filter, err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		return nil, fmt.Errorf("capture: filter %q: %w", o.Filter, err)
	}
	// A frame (header + snaplen) must fit a ring frame; blocks hold 32 frames.
	frame := (o.Snaplen + 128 + 4095) &^ 4095
	block := frame * 32
	blocks := max(o.BufferSize/block, 2)
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(iface),
		afpacket.OptFrameSize(frame),
		afpacket.OptBlockSize(block),
		afpacket.OptNumBlocks(blocks),
		afpacket.OptPollTimeout(pollTimeout),
		afpacket.OptBlockTimeout(10*time.Millisecond),
	)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w: opening a packet socket on %s: %v", ErrPermission, iface, err)
		}
		return nil, fmt.Errorf("capture: open %s: %w", iface, err)
	}
	if err := tp.SetBPF(insns); err != nil {
		tp.Close()
		return nil, fmt.Errorf("capture: %s: attach filter: %w", iface, err)
	}
	s := &Source{iface: iface, tp: tp, vm: vm, since: time.Now(), lt: lt}
	if o.Promiscuous {
		if err := tp.SetPromiscuous(true); err != nil {
			tp.Close()
			return nil, fmt.Errorf("capture: %s: promiscuous mode: %w", iface, err)
		}
	}
	return s, nil
}

// checkLinkType accepts Ethernet and loopback interfaces, whose frames
// start with an Ethernet header, and raw IP interfaces without a link-layer
// header (tun and WireGuard: ARPHRD_NONE; ipip, sit, ip6tnl tunnels).
func checkLinkType(iface string) (raw bool, err error) {
	if strings.ContainsAny(iface, "/\x00") || iface == "." || iface == ".." {
		return false, fmt.Errorf("capture: %q is not an interface name", iface)
	}
	// SIOCGIFHWADDR on a socket of the current network namespace (sysfs
	// shows the namespace it was mounted in).
	ifr, err := unix.NewIfreq(iface)
	if err != nil {
		return false, fmt.Errorf("capture: %q is not an interface name: %w", iface, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("capture: %s: %w", iface, err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return false, fmt.Errorf("capture: no interface %q (see `ip link`)", iface)
		}
		return false, fmt.Errorf("capture: %s: %w", iface, err)
	}
	switch t := ifr.Uint16(); t {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return false, nil
	case unix.ARPHRD_NONE, unix.ARPHRD_TUNNEL, unix.ARPHRD_TUNNEL6, unix.ARPHRD_SIT:
		return true, nil
	default:
		return false, fmt.Errorf("capture: %s: link type %d is not supported (Ethernet, loopback, tun/WireGuard and ip tunnels are)", iface, t)
	}
}

// LinkType is Ethernet, or raw IP for tun, WireGuard and ip tunnel
// interfaces.
func (s *Source) LinkType() layers.LinkType { return s.lt }

// ReadPacketData returns the next packet; the data is valid until the next
// call. It blocks until a packet arrives and returns io.EOF after Close.
func (s *Source) ReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed.Load() {
			return nil, gopacket.CaptureInfo{}, io.EOF
		}
		data, ci, err := s.tp.ZeroCopyReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) {
			continue
		}
		if err != nil {
			if s.closed.Load() {
				return nil, gopacket.CaptureInfo{}, io.EOF
			}
			return nil, ci, fmt.Errorf("capture: %s: %w", s.iface, err)
		}
		if !s.settle {
			// Packets queued between bind and SO_ATTACH_FILTER were not
			// filtered by the kernel: apply the same program here.
			if ci.Timestamp.Before(s.since) {
				n, err := s.vm.Run(data)
				if err != nil || n == 0 {
					continue
				}
				if n < len(data) {
					data = data[:n]
					ci.CaptureLength = n
				}
			} else {
				s.settle = true
			}
		}
		return data, ci, nil
	}
}

// Stats returns the kernel's counters: packets received and dropped (ring
// full) since the capture opened.
func (s *Source) Stats() (received, dropped uint64, err error) {
	_, v3, err := s.tp.SocketStats()
	if err != nil {
		return 0, 0, fmt.Errorf("capture: %s: stats: %w", s.iface, err)
	}
	return uint64(v3.Packets()), uint64(v3.Drops()), nil
}

// Close stops the capture; a blocked ReadPacketData returns io.EOF within
// the poll timeout (100 ms).
func (s *Source) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tp.Close()
	return nil
}

// Metrics returns a collector of the capture's kernel counters:
// cordon_egress_capture_dropped_total, the packets the kernel dropped
// because the capture ring was full.
func (s *Source) Metrics() prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "cordon_egress_capture_dropped_total", Help: "Packets the kernel dropped because the capture ring was full.",
	}, func() float64 {
		_, d, _ := s.Stats()
		return float64(d)
	})
}

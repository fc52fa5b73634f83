package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// trunkNet is where bench trunk runs its two proxies. Without netem, both
// run on loopback. With netem, the bench creates two network namespaces,
// "edge" and "core", and three veth pairs:
//
//	host (bench: cameras, readers) ── 10.213.B+1.0/30 ── edge ns (edge proxy)
//	host                           ── 10.213.B+2.0/30 ── core ns (core proxy)
//	edge ns ── 10.213.B+3.0/30, tc netem on both ends ── core ns: the WAN
//
// so that only the edge-to-core link has the delay and loss. B is a
// block of three subnets no address of this host is in (hostBlock): two
// benches that run at once must not both put 10.213.1.1 on the host, or
// each one's cameras and readers reach the other's proxies. Every name
// carries the bench's pid; close deletes the namespaces (which deletes
// the veths), and namespaces left by a bench that was killed are deleted
// at the next start.
type trunkNet struct {
	netem          string
	edgeNS, coreNS string // "" on loopback
	// cameraHost is the address the cameras listen on (host side, seen
	// from the edge); edgeWAN the edge's address seen from the core;
	// coreHost the core's address seen from the readers.
	cameraHost, edgeWAN, coreHost string
	wanPeer                       string   // the core's end of the WAN link
	hostLinks                     []string // this end of the veth pairs to the namespaces
	how                           string   // how the link is impaired
	wan                           *wanLink // the bench's own link, when tc netem is missing
}

const trunkNSPrefix = "cordon-bench-"

// openTrunkNet sets up the network: loopback when netem is "".
func openTrunkNet(ctx context.Context, netem string) (*trunkNet, error) {
	if netem == "" {
		return &trunkNet{cameraHost: "127.0.0.1", edgeWAN: "127.0.0.1", coreHost: "127.0.0.1"}, nil
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench trunk: --netem creates network namespaces and needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("bench trunk: --netem needs ip (iproute2): %w", err)
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return nil, fmt.Errorf("bench trunk: --netem needs tc (iproute2): %w", err)
	}
	removeStaleNS(ctx)
	pid := strconv.Itoa(os.Getpid())
	b, err := hostBlock(ctx, os.Getpid())
	if err != nil {
		return nil, err
	}
	sub := func(i, host int) string { return fmt.Sprintf("10.213.%d.%d", b+i, host) }
	n := &trunkNet{netem: netem, edgeNS: trunkNSPrefix + "edge-" + pid, coreNS: trunkNSPrefix + "core-" + pid,
		cameraHost: sub(1, 1), edgeWAN: sub(3, 1), coreHost: sub(2, 2), wanPeer: sub(3, 2)}
	// Interface names are at most 15 bytes: a role and the pid.
	he, eh, hc, ch, ec, ce := "cbhe"+pid, "cbeh"+pid, "cbhc"+pid, "cbch"+pid, "cbec"+pid, "cbce"+pid
	n.hostLinks = []string{he, hc}
	im, err := parseNetem(netem)
	if err != nil {
		return nil, err
	}
	base := [][]string{
		{"ip", "netns", "add", n.edgeNS},
		{"ip", "netns", "add", n.coreNS},
		{"ip", "link", "add", he, "type", "veth", "peer", "name", eh, "netns", n.edgeNS},
		{"ip", "link", "add", hc, "type", "veth", "peer", "name", ch, "netns", n.coreNS},
		{"ip", "addr", "add", sub(1, 1) + "/30", "dev", he},
		{"ip", "link", "set", he, "up"},
		{"ip", "addr", "add", sub(2, 1) + "/30", "dev", hc},
		{"ip", "link", "set", hc, "up"},
		{"ip", "-n", n.edgeNS, "addr", "add", sub(1, 2) + "/30", "dev", eh},
		{"ip", "-n", n.coreNS, "addr", "add", sub(2, 2) + "/30", "dev", ch},
		{"ip", "-n", n.edgeNS, "link", "set", "lo", "up"},
		{"ip", "-n", n.edgeNS, "link", "set", eh, "up"},
		{"ip", "-n", n.coreNS, "link", "set", "lo", "up"},
		{"ip", "-n", n.coreNS, "link", "set", ch, "up"},
	}
	if err := run(ctx, base); err != nil {
		n.close()
		return nil, err
	}
	netemArgs := strings.Fields(netem)
	wan := [][]string{
		{"ip", "-n", n.edgeNS, "link", "add", ec, "type", "veth", "peer", "name", ce, "netns", n.coreNS},
		{"ip", "-n", n.edgeNS, "addr", "add", n.edgeWAN + "/30", "dev", ec},
		{"ip", "-n", n.coreNS, "addr", "add", n.wanPeer + "/30", "dev", ce},
		{"ip", "-n", n.edgeNS, "link", "set", ec, "up"},
		{"ip", "-n", n.coreNS, "link", "set", ce, "up"},
		append([]string{"tc", "-n", n.edgeNS, "qdisc", "add", "dev", ec, "root", "netem"}, netemArgs...),
		append([]string{"tc", "-n", n.coreNS, "qdisc", "add", "dev", ce, "root", "netem"}, netemArgs...),
	}
	err = run(ctx, wan)
	if err == nil {
		n.how = "tc netem on a veth pair"
		return n, nil
	}
	if !strings.Contains(err.Error(), "qdisc kind is unknown") {
		n.close()
		return nil, err
	}
	// This kernel has no sch_netem: the bench forwards the link itself.
	_ = exec.CommandContext(ctx, "ip", "-n", n.edgeNS, "link", "del", ec).Run()
	if err := n.openWAN(ctx, pid, im); err != nil {
		n.close()
		return nil, err
	}
	n.how = "the kernel has no sch_netem: delay and loss emulated by the bench between two TUN devices"
	return n, nil
}

// openWAN joins the namespaces with a TUN device in each, forwarded by
// a wanLink with impairment im.
func (n *trunkNet) openWAN(ctx context.Context, pid string, im impairment) error {
	te, tc := "cbwe"+pid, "cbwc"+pid
	a, err := openTun(te)
	if err != nil {
		return err
	}
	b, err := openTun(tc)
	if err != nil {
		a.Close()
		return err
	}
	n.wan = &wanLink{a: a, b: b, im: im}
	n.wan.start()
	return run(ctx, [][]string{
		{"ip", "link", "set", te, "netns", n.edgeNS},
		{"ip", "link", "set", tc, "netns", n.coreNS},
		{"ip", "-n", n.edgeNS, "addr", "add", n.edgeWAN, "peer", n.wanPeer, "dev", te},
		{"ip", "-n", n.coreNS, "addr", "add", n.wanPeer, "peer", n.edgeWAN, "dev", tc},
		{"ip", "-n", n.edgeNS, "link", "set", te, "up"},
		{"ip", "-n", n.coreNS, "link", "set", tc, "up"},
	})
}

// hostBlock returns B, a multiple of 3 below 240, such that no address
// of this host is in 10.213.B+1.x, 10.213.B+2.x or 10.213.B+3.x, starting
// the search from the pid (two benches starting at once are unlikely to pick
// the same).
func hostBlock(ctx context.Context, pid int) (int, error) {
	out, err := exec.CommandContext(ctx, "ip", "-o", "-4", "addr").Output()
	if err != nil {
		return 0, fmt.Errorf("bench trunk: ip addr: %w", err)
	}
	return freeBlock(string(out), pid)
}

// freeBlock is hostBlock on the output of `ip -o -4 addr`.
func freeBlock(addrs string, pid int) (int, error) {
	const blocks = 80
	for i := range blocks {
		b := 3 * ((pid + i) % blocks)
		used := false
		for j := 1; j <= 3 && !used; j++ {
			used = strings.Contains(addrs, fmt.Sprintf(" 10.213.%d.", b+j))
		}
		if !used {
			return b, nil
		}
	}
	return 0, errors.New("bench trunk: every 10.213.x.0/24 block is in use on this host (other benches running?)")
}

// run runs each command in turn.
func run(ctx context.Context, steps [][]string) error {
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("bench trunk: %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// close deletes the namespaces (and with them the veths). It runs with
// its own context: it must also run after the bench was interrupted.
func (n *trunkNet) close() {
	if n.wan != nil {
		n.wan.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Deleting one end of a veth pair deletes both; a namespace whose
	// last reference goes away late would otherwise keep them.
	for _, l := range n.hostLinks {
		_ = exec.CommandContext(ctx, "ip", "link", "del", l).Run()
	}
	for _, ns := range []string{n.edgeNS, n.coreNS} {
		if ns != "" {
			_ = exec.CommandContext(ctx, "ip", "netns", "del", ns).Run()
		}
	}
}

// command returns the command that runs argv in namespace ns ("": here).
func (n *trunkNet) command(ctx context.Context, ns string, argv ...string) *exec.Cmd {
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// removeStaleNS deletes the namespaces, and this end of the veth pairs,
// of bench runs whose process is gone.
func removeStaleNS(ctx context.Context) {
	if out, err := exec.CommandContext(ctx, "ip", "-o", "link").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if !strings.HasPrefix(name, "cbhe") && !strings.HasPrefix(name, "cbhc") {
				continue
			}
			if pid, err := strconv.Atoi(name[4:]); err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) != nil {
				_ = exec.CommandContext(ctx, "ip", "link", "del", name).Run()
			}
		}
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], trunkNSPrefix) {
			continue
		}
		i := strings.LastIndexByte(f[0], '-')
		pid, err := strconv.Atoi(f[0][i+1:])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // a bench still running
		}
		_ = exec.CommandContext(ctx, "ip", "netns", "del", f[0]).Run()
	}
}

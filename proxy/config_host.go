package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// A listener is one reader-side address of a configuration, parsed.
type listener struct {
	key  string     // "listen.rtsp"
	val  string     // as written
	ip   netip.Addr // invalid: every interface
	port int
	udp  bool
}

// every reports whether the listener takes every interface.
func (l listener) every() bool { return !l.ip.IsValid() || l.ip.IsUnspecified() }

// overlaps reports whether two listeners of one protocol would want the same socket.
func (l listener) overlaps(o listener) bool {
	return l.udp == o.udp && l.port != 0 && l.port == o.port && (l.every() || o.every() || l.ip == o.ip)
}

// parseListen parses an IP:port listen address. The message names key and
// says what to write (example), and offHint is appended to say that "off"
// is allowed.
func parseListen(key, v, example, offHint string) (listener, string) {
	l := listener{key: key, val: v}
	h, p, err := net.SplitHostPort(v)
	if err != nil {
		return l, fmt.Sprintf("%s %q: not an address; write IP:port, e.g. %q%s", key, v, example, offHint)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return l, fmt.Sprintf("%s %q: port %q is not a port number (1-65535)", key, v, p)
	}
	l.port = n
	if h != "" {
		a, err := netip.ParseAddr(h)
		if err != nil || a.Zone() != "" {
			return l, fmt.Sprintf("%s %q: %q is not an IP address; write an address of this host, e.g. %q", key, v, h, example)
		}
		l.ip = a.Unmap()
	}
	return l, ""
}

// checkListeners checks the listen section and returns the listeners that
// parse (those written in the file, not the defaults).
func (c *Config) checkListeners(ps *problems) []listener {
	var ls []listener
	parse := func(key, v, example, offHint string, udp bool) (listener, bool) {
		l, msg := parseListen(key, v, example, offHint)
		l.udp = udp
		if msg != "" {
			ps.add(key, "%s", msg)
			return l, false
		}
		return l, true
	}
	L := c.Listen
	if L.RTSP == "" {
		ps.add("listen.rtsp", `listen.rtsp: required: the address recorders connect to on the core network, e.g. "10.0.0.5:8554"`)
	} else if l, ok := parse("listen.rtsp", L.RTSP, "10.0.0.5:8554", "", false); ok {
		ls = append(ls, l)
	}
	if L.RTSPS != "" {
		if l, ok := parse("listen.rtsps", L.RTSPS, "10.0.0.5:8322", "", false); ok {
			ls = append(ls, l)
		}
	}
	if L.Admin != "" && L.Admin != "off" {
		if l, ok := parse("listen.admin", L.Admin, "127.0.0.1:9554", `, or "off"`, false); ok {
			ls = append(ls, l)
		}
	}
	ls = append(ls, c.checkUDPListeners(ps, parse)...)
	if c.Trunk.Listen != "" {
		if l, ok := parse("trunk.listen", c.Trunk.Listen, "203.0.113.10:7443", "", true); ok {
			ls = append(ls, l)
		}
	}
	for i, l := range ls {
		for _, o := range ls[:i] {
			if l.overlaps(o) {
				ps.add(l.key, "%s %q uses the port of %s %q; give each listener its own port", l.key, l.val, o.key, o.val)
				break
			}
		}
	}
	return ls
}

// checkUDPListeners checks listen.udp_rtp and listen.udp_rtcp.
func (c *Config) checkUDPListeners(ps *problems, parse func(key, v, example, offHint string, udp bool) (listener, bool)) []listener {
	var out []listener
	L := c.Listen
	switch {
	case L.UDPRTP == "off":
		if L.UDPRTCP != "" && L.UDPRTCP != "off" {
			ps.add("listen.udp_rtcp", `listen.udp_rtp is "off" but listen.udp_rtcp is %q; remove listen.udp_rtcp`, L.UDPRTCP)
		}
	case L.UDPRTCP == "off":
		ps.add("listen.udp_rtcp", `listen.udp_rtcp is "off" but listen.udp_rtp is not; set listen.udp_rtp: "off" to serve TCP only (udp_rtcp follows it)`)
	case L.UDPRTP == "" && L.UDPRTCP != "":
		ps.add("listen.udp_rtcp", "listen.udp_rtcp is set without listen.udp_rtp; set listen.udp_rtp (udp_rtcp defaults to its port + 1)")
	case L.UDPRTP != "":
		rtp, ok := parse("listen.udp_rtp", L.UDPRTP, "10.0.0.5:8000", `, or "off" to serve TCP only`, true)
		if !ok {
			break
		}
		if rtp.port == 0 || rtp.port%2 != 0 || rtp.port == 65535 {
			ps.add("listen.udp_rtp", "listen.udp_rtp %q: the RTP port must be even and not 0 (RTCP uses the next one; readers are told both)", L.UDPRTP)
			break
		}
		out = append(out, rtp)
		if L.UDPRTCP == "" {
			break
		}
		if rtcp, ok := parse("listen.udp_rtcp", L.UDPRTCP, "10.0.0.5:8001", "", true); ok {
			if rtcp.port != rtp.port+1 {
				ps.add("listen.udp_rtcp", "listen.udp_rtcp %q: the RTCP port must be listen.udp_rtp's port + 1 (%d)", L.UDPRTCP, rtp.port+1)
			} else {
				out = append(out, rtcp)
			}
		}
	}
	return out
}

// checkHost checks the configuration against this host: problems go to
// ps, warnings to ws.
func (c *Config) checkHost(h *host, ls []listener, bind netip.Addr, ps, ws *problems) {
	for _, l := range ls {
		if !l.every() && h.iface(l.ip) == "" {
			ps.add(l.key, "%s %q: %s is not an address of this host (it has %s); use the core-network interface's address",
				l.key, l.val, l.ip, h.addrList())
		}
	}
	bindIf := ""
	if bind.IsValid() {
		if bindIf = h.iface(bind); bindIf == "" {
			ps.add("camera_side.bind", "camera_side.bind %s is not an address of this host (it has %s); use the camera-network interface's address",
				bind, h.addrList())
		}
	}
	if c.TLS.Cert != "" && c.TLS.Key != "" {
		cert, cerr := os.ReadFile(c.TLS.Cert)
		if cerr != nil {
			ps.add("tls.cert", "tls.cert %q: %v", c.TLS.Cert, pathErr(cerr))
		}
		key, kerr := os.ReadFile(c.TLS.Key)
		if kerr != nil {
			ps.add("tls.key", "tls.key %q: %v", c.TLS.Key, pathErr(kerr))
		}
		if cerr == nil && kerr == nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				ps.add("tls.cert", "tls.cert/tls.key: %v", err)
			}
		}
	}
	c.checkTrunkFiles(ps)
	c.checkAdminTLSFiles(ps)
	if bindIf == "" {
		return
	}
	for _, l := range ls {
		switch {
		case l.every():
			ws.add(l.key, "%s %q listens on every interface, %s (camera_side.bind %s) included, so cameras could reach it; listen on the core-network interface's address instead",
				l.key, l.val, bindIf, bind)
		case h.iface(l.ip) == bindIf:
			ws.add(l.key, "%s %q and camera_side.bind %s are on the same interface (%s): the proxy would join the camera and core networks on one leg; put %s on the core-network interface",
				l.key, l.val, bind, bindIf, l.key)
		}
	}
}

// pathErr drops the path from a file error (the message quotes it already).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// host is this host's network interfaces and their addresses.
type host struct{ ifaces []hostIface }

type hostIface struct {
	name     string
	loopback bool
	addrs    []netip.Prefix
}

// loadHost lists this host's interfaces (net.Interfaces and their Addrs).
func loadHost() (*host, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	h := &host{}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		hi := hostIface{name: ifc.Name, loopback: ifc.Flags&net.FlagLoopback != 0}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			hi.addrs = append(hi.addrs, netip.PrefixFrom(ip.Unmap(), ones))
		}
		h.ifaces = append(h.ifaces, hi)
	}
	return h, nil
}

// iface returns the name of the interface ip belongs to, or "" when ip is
// not this host's. An address is an interface's when it is one of its
// addresses, or, on a loopback interface, inside one of its prefixes (Linux
// answers for all of 127.0.0.0/8 on lo).
func (h *host) iface(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, ifc := range h.ifaces {
		for _, p := range ifc.addrs {
			if p.Addr() == ip || (ifc.loopback && p.Contains(ip)) {
				return ifc.name
			}
		}
	}
	return ""
}

// addrList lists the host's addresses for a message (at most 8).
func (h *host) addrList() string {
	var s []string
	for _, ifc := range h.ifaces {
		for _, p := range ifc.addrs {
			if p.Addr().IsLinkLocalUnicast() {
				continue
			}
			s = append(s, p.Addr().String())
		}
	}
	if len(s) == 0 {
		return "no address"
	}
	if len(s) > 8 {
		s = append(s[:8], "…")
	}
	return strings.Join(s, ", ")
}

// ListenError is a reader-side listener that could not be bound. Its
// message names the configuration key to change and how.
type ListenError struct {
	Key  string // "listen.rtsp", "listen.udp_rtp", ...
	Addr string // the address as configured
	Err  error
}

func (e *ListenError) Error() string {
	var hint string
	switch e.Key {
	case "listen.admin":
		hint = `, or "off" to disable it`
	case "listen.udp_rtp":
		hint = `, or "off" to serve TCP only`
	}
	head := fmt.Sprintf("%s %q: ", e.Key, e.Addr)
	switch {
	case errors.Is(e.Err, syscall.EADDRINUSE):
		set := fmt.Sprintf("set %s to another port", e.Key)
		switch e.Key {
		case "listen.udp_rtp":
			set = "set listen.udp_rtp to another even port"
		case "listen.udp_rtcp":
			set, hint = "set listen.udp_rtp to another even port (and listen.udp_rtcp to the next one, or remove it)", `, or listen.udp_rtp to "off" to serve TCP only`
		}
		return head + "address already in use — another program (or another cordon) holds it; " + set + hint
	case errors.Is(e.Err, syscall.EACCES):
		return head + "permission denied — ports below 1024 need root or CAP_NET_BIND_SERVICE; set " + e.Key + " to a port above 1023" + hint
	case errors.Is(e.Err, syscall.EADDRNOTAVAIL):
		return head + "not an address of this host; use the address of the core-network interface" + hint
	}
	return head + e.Err.Error()
}

func (e *ListenError) Unwrap() error { return e.Err }

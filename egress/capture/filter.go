package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
)

// Filter limits.
const (
	// MaxFilterLen bounds a filter expression's length in bytes.
	MaxFilterLen = 1024
	// maxInstructions is the kernel's BPF_MAXINSNS.
	maxInstructions = 4096
)

// FilterError is a filter expression that does not parse; Pos is the byte
// offset of the offending token.
type FilterError struct {
	Expr string
	Pos  int
	Msg  string
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("capture: filter %q: at offset %d: %s", e.Expr, e.Pos, e.Msg)
}

// ErrFilterTooComplex is returned when a filter compiles to a program the
// kernel cannot take (too many instructions or a jump over 255 of them).
var ErrFilterTooComplex = errors.New("capture: filter too complex")

// CompileFilter compiles a capture filter for Ethernet frames into classic
// BPF that accepts a packet by returning snaplen (the kernel truncates to
// that) and drops it by returning 0. The language is a subset of
// tcpdump's (pcap-filter(7)):
//
//	primitive  = [src|dst] host ADDR         IPv4 or IPv6 address
//	           | [src|dst] net CIDR          e.g. 192.168.50.0/24, 2001:db8::/32
//	           | [src|dst] port N            TCP, UDP or SCTP port (IPv4 unfragmented or first fragment; IPv6 without extension headers)
//	           | [src|dst] portrange N-M
//	           | ip | ip6 | arp | tcp | udp | sctp | icmp | icmp6 | proto N
//	           | (tcp|udp|sctp) [src|dst] port N    the protocol and the port
//	expr       = primitive | not expr | ! expr | expr and expr | expr && expr
//	           | expr or expr | expr || expr | ( expr )
//
// "and" binds tighter than "or"; "not" tighter than both. As in tcpdump,
// IPv4 host and net also match ARP/RARP addresses. An 802.1Q tag the kernel
// stripped into metadata (VLAN receive offload) is invisible to the filter;
// a tag left in the frame makes IP primitives fail (tcpdump without "vlan"). Host names are
// not resolved. An empty expression accepts every packet.
//
// Limits: MaxFilterLen bytes, 64 primitives, and classic BPF's 255-
// instruction reach of a conditional jump (about 30 IPv4 hosts or 10 IPv6
// nets or'ed together); longer filters fail with ErrFilterTooComplex.
func CompileFilter(expr string, snaplen int) ([]bpf.Instruction, error) {
	return compileFilter(expr, snaplen, ethernetLink)
}

// CompileFilterRaw is CompileFilter for raw IP packets (no link-layer
// header: tun, WireGuard and ipip interfaces, LINKTYPE_RAW captures); arp
// matches nothing there.
func CompileFilterRaw(expr string, snaplen int) ([]bpf.Instruction, error) {
	return compileFilter(expr, snaplen, rawLink)
}

func compileFilter(expr string, snaplen int, lk *linkLayer) ([]bpf.Instruction, error) {
	if len(expr) > MaxFilterLen {
		return nil, &FilterError{Expr: expr[:32] + "…", Pos: MaxFilterLen, Msg: fmt.Sprintf("longer than %d bytes", MaxFilterLen)}
	}
	if snaplen <= 0 {
		snaplen = 65535
	}
	var root node = constNode(true)
	if strings.TrimSpace(expr) != "" {
		p := &parser{lk: lk, expr: expr, toks: tokenize(expr)}
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.i < len(p.toks) {
			return nil, p.errf("unexpected %q", p.toks[p.i].s)
		}
		root = n
	}
	var g codegen
	accept, reject := g.label(), g.label()
	g.compile(root, accept, reject)
	g.bind(accept)
	g.emit(bpf.RetConstant{Val: uint32(snaplen)})
	g.bind(reject)
	g.emit(bpf.RetConstant{Val: 0})
	return g.resolve()
}

// ---- AST ----

type node interface{}

type (
	andNode   struct{ a, b node }
	orNode    struct{ a, b node }
	notNode   struct{ a node }
	constNode bool
	// testNode loads a value into A and compares it.
	testNode struct {
		loads []bpf.Instruction
		cond  bpf.JumpTest
		val   uint32
	}
)

func and(ns ...node) node {
	n := ns[0]
	for _, m := range ns[1:] {
		n = andNode{n, m}
	}
	return n
}

func or(ns ...node) node {
	n := ns[0]
	for _, m := range ns[1:] {
		n = orNode{n, m}
	}
	return n
}

func load(off, size uint32) []bpf.Instruction {
	return []bpf.Instruction{bpf.LoadAbsolute{Off: off, Size: int(size)}}
}

func eq(loads []bpf.Instruction, v uint32) node { return testNode{loads, bpf.JumpEqual, v} }

// linkLayer says where the network header starts and how to tell IPv4,
// IPv6 and ARP apart: by the EtherType of an Ethernet frame, or by the IP
// version nibble of a raw IP packet (tun, WireGuard, ipip interfaces).
type linkLayer struct {
	l3                  uint32
	ip4, ip6, arp, rarp node
}

// Ethernet frame offsets.
const offEtherType = 12

var (
	ethernetLink = &linkLayer{
		l3:   14,
		ip4:  eq(load(offEtherType, 2), 0x0800),
		ip6:  eq(load(offEtherType, 2), 0x86dd),
		arp:  eq(load(offEtherType, 2), 0x0806),
		rarp: eq(load(offEtherType, 2), 0x8035),
	}
	rawLink = &linkLayer{
		l3:   0,
		ip4:  eq([]bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0}}, 0x40),
		ip6:  eq([]bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0}}, 0x60),
		arp:  constNode(false),
		rarp: constNode(false),
	}
)

func (lk *linkLayer) proto4(p uint8) node { return and(lk.ip4, eq(load(lk.l3+9, 1), uint32(p))) }
func (lk *linkLayer) proto6(p uint8) node { return and(lk.ip6, eq(load(lk.l3+6, 1), uint32(p))) }

type dir int

const (
	dirEither dir = iota
	dirSrc
	dirDst
)

func either(d dir, src, dst func() node) node {
	switch d {
	case dirSrc:
		return src()
	case dirDst:
		return dst()
	}
	return or(src(), dst())
}

// netMatch matches an address prefix in the given direction.
func (lk *linkLayer) netMatch(p netip.Prefix, d dir) node {
	l3 := lk.l3
	p = p.Masked()
	a := p.Addr().AsSlice()
	if p.Addr().Is4() {
		m := func(off uint32) func() node {
			return func() node { return maskedWords(off, a, p.Bits()) }
		}
		// As in tcpdump, IPv4 host and net also match ARP and RARP
		// sender (src) and target (dst) protocol addresses.
		return or(
			and(lk.ip4, either(d, m(l3+12), m(l3+16))),
			and(or(lk.arp, lk.rarp), either(d, m(l3+14), m(l3+24))),
		)
	}
	m := func(off uint32) func() node {
		return func() node { return maskedWords(off, a, p.Bits()) }
	}
	return and(lk.ip6, either(d, m(l3+8), m(l3+24)))
}

// maskedWords compares the first bits of the address at off with addr, a
// 32-bit word at a time.
func maskedWords(off uint32, addr []byte, bits int) node {
	var tests []node
	for w := 0; w*32 < bits; w++ {
		v := uint32(addr[4*w])<<24 | uint32(addr[4*w+1])<<16 | uint32(addr[4*w+2])<<8 | uint32(addr[4*w+3])
		n := min(bits-w*32, 32)
		mask := ^uint32(0) << (32 - n)
		loads := load(off+uint32(4*w), 4)
		if mask != ^uint32(0) {
			loads = append(loads, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
		}
		tests = append(tests, eq(loads, v&mask))
	}
	if len(tests) == 0 {
		return constNode(true)
	}
	return and(tests...)
}

// portMatch matches a TCP/UDP/SCTP port (or range) in the given direction,
// for protocols in protos.
func (lk *linkLayer) portMatch(lo, hi uint16, d dir, protos []uint8) node {
	l3 := lk.l3
	cmp := func(loads []bpf.Instruction) node {
		if lo == hi {
			return eq(loads, uint32(lo))
		}
		return and(testNode{loads, bpf.JumpGreaterOrEqual, uint32(lo)}, testNode{loads, bpf.JumpLessOrEqual, uint32(hi)})
	}
	var p4, p6 []node
	for _, p := range protos {
		p4 = append(p4, eq(load(l3+9, 1), uint32(p)))
		p6 = append(p6, eq(load(l3+6, 1), uint32(p)))
	}
	// IPv4: unfragmented or first fragment; X = IHL*4 for the L4 offset.
	notFrag := testNode{load(l3+6, 2), bpf.JumpBitsNotSet, 0x1fff}
	l4v4 := func(off uint32) func() node {
		return func() node {
			return cmp([]bpf.Instruction{bpf.LoadMemShift{Off: l3}, bpf.LoadIndirect{Off: l3 + off, Size: 2}})
		}
	}
	l4v6 := func(off uint32) func() node {
		return func() node { return cmp(load(l3+40+off, 2)) }
	}
	return or(
		and(lk.ip4, or(p4...), notFrag, either(d, l4v4(0), l4v4(2))),
		and(lk.ip6, or(p6...), either(d, l4v6(0), l4v6(2))),
	)
}

// ---- parser ----

type token struct {
	s   string
	pos int
}

func tokenize(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '!':
			toks = append(toks, token{s[i : i+1], i})
			i++
		case c == '&' || c == '|':
			j := i + 1
			if j < len(s) && s[j] == c {
				j++
			}
			toks = append(toks, token{s[i:j], i})
			i = j
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()!&|", rune(s[j])) {
				j++
			}
			toks = append(toks, token{s[i:j], i})
			i = j
		}
	}
	return toks
}

type parser struct {
	lk    *linkLayer
	expr  string
	toks  []token
	i     int
	prims int
	depth int
}

func (p *parser) errf(format string, args ...any) error {
	pos := len(p.expr)
	if p.i < len(p.toks) {
		pos = p.toks[p.i].pos
	}
	return &FilterError{Expr: p.expr, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i].s)
	}
	return ""
}

func (p *parser) next() string {
	s := p.peek()
	p.i++
	return s
}

func (p *parser) parseOr() (node, error) {
	n, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.peek() == "or" || p.peek() == "||" {
		p.i++
		m, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		n = orNode{n, m}
	}
	return n, nil
}

func (p *parser) parseAnd() (node, error) {
	n, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for p.peek() == "and" || p.peek() == "&&" {
		p.i++
		m, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		n = andNode{n, m}
	}
	return n, nil
}

func (p *parser) parseNot() (node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 64 {
		return nil, p.errf("nested too deeply")
	}
	switch p.peek() {
	case "not", "!":
		p.i++
		n, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case "(":
		p.i++
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, p.errf("missing )")
		}
		p.i++
		return n, nil
	case "":
		return nil, p.errf("expression ends early")
	}
	return p.parsePrimitive()
}

var l4Protos = map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132}

func (p *parser) parsePrimitive() (node, error) {
	p.prims++
	if p.prims > 64 {
		return nil, p.errf("more than 64 primitives")
	}
	start := p.i
	kw := p.next()
	switch kw {
	case "ip":
		return p.lk.ip4, nil
	case "ip6":
		return p.lk.ip6, nil
	case "arp":
		return p.lk.arp, nil
	case "icmp":
		return p.lk.proto4(1), nil
	case "icmp6":
		return p.lk.proto6(58), nil
	case "tcp", "udp", "sctp":
		pr := l4Protos[kw]
		switch p.peek() {
		case "port", "portrange", "src", "dst":
			return p.parseDirected([]uint8{pr})
		}
		return or(p.lk.proto4(pr), p.lk.proto6(pr)), nil
	case "proto":
		v := p.next()
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			p.i--
			return nil, p.errf("proto wants a protocol number 0-255, not %q", v)
		}
		return or(p.lk.proto4(uint8(n)), p.lk.proto6(uint8(n))), nil
	}
	p.i = start
	return p.parseDirected([]uint8{6, 17, 132})
}

// parseDirected parses [src|dst] (host|net|port|portrange) VALUE.
func (p *parser) parseDirected(protos []uint8) (node, error) {
	d := dirEither
	switch p.peek() {
	case "src":
		d = dirSrc
		p.i++
	case "dst":
		d = dirDst
		p.i++
	}
	kw := p.next()
	if p.i >= len(p.toks) && kw != "" {
		p.i--
		return nil, p.errf("%q needs a value", kw)
	}
	val := p.peek()
	switch kw {
	case "host":
		a, err := netip.ParseAddr(val)
		if err != nil {
			return nil, p.errf("host wants an IP address (names are not resolved), not %q", val)
		}
		p.i++
		a = a.Unmap()
		return p.lk.netMatch(netip.PrefixFrom(a, a.BitLen()), d), nil
	case "net":
		pf, err := netip.ParsePrefix(val)
		if err != nil {
			return nil, p.errf("net wants a CIDR prefix like 192.168.50.0/24, not %q", val)
		}
		p.i++
		return p.lk.netMatch(pf, d), nil
	case "port":
		n, err := strconv.ParseUint(val, 10, 16)
		if err != nil {
			return nil, p.errf("port wants a number 0-65535, not %q", val)
		}
		p.i++
		return p.lk.portMatch(uint16(n), uint16(n), d, protos), nil
	case "portrange":
		a, b, ok := strings.Cut(val, "-")
		lo, err1 := strconv.ParseUint(a, 10, 16)
		hi, err2 := strconv.ParseUint(b, 10, 16)
		if !ok || err1 != nil || err2 != nil || lo > hi {
			return nil, p.errf("portrange wants LOW-HIGH, not %q", val)
		}
		p.i++
		return p.lk.portMatch(uint16(lo), uint16(hi), d, protos), nil
	}
	p.i--
	if kw == "" {
		return nil, p.errf("expression ends early")
	}
	return nil, p.errf("unknown primitive %q (want host, net, port, portrange, ip, ip6, arp, tcp, udp, sctp, icmp, icmp6, proto)", kw)
}

// ---- code generation ----

type label int

type item struct {
	ins    bpf.Instruction // when not a jump
	jump   bool
	always bool // unconditional jump to t
	cond   bpf.JumpTest
	val    uint32
	t, f   label
}

type codegen struct {
	items  []item
	labels []int // label -> item index
}

func (g *codegen) label() label {
	g.labels = append(g.labels, -1)
	return label(len(g.labels) - 1)
}

func (g *codegen) bind(l label) { g.labels[l] = len(g.items) }

func (g *codegen) emit(ins bpf.Instruction) { g.items = append(g.items, item{ins: ins}) }

func (g *codegen) compile(n node, t, f label) {
	switch n := n.(type) {
	case constNode:
		target := f
		if n {
			target = t
		}
		g.items = append(g.items, item{jump: true, always: true, t: target})
	case testNode:
		for _, ins := range n.loads {
			g.emit(ins)
		}
		g.items = append(g.items, item{jump: true, cond: n.cond, val: n.val, t: t, f: f})
	case andNode:
		mid := g.label()
		g.compile(n.a, mid, f)
		g.bind(mid)
		g.compile(n.b, t, f)
	case orNode:
		mid := g.label()
		g.compile(n.a, t, mid)
		g.bind(mid)
		g.compile(n.b, t, f)
	case notNode:
		g.compile(n.a, f, t)
	default:
		panic(fmt.Sprintf("capture: filter: unknown node %T", n))
	}
}

func (g *codegen) resolve() ([]bpf.Instruction, error) {
	if len(g.items) > maxInstructions {
		return nil, fmt.Errorf("%w: %d instructions (the kernel takes %d)", ErrFilterTooComplex, len(g.items), maxInstructions)
	}
	out := make([]bpf.Instruction, len(g.items))
	for i, it := range g.items {
		if !it.jump {
			out[i] = it.ins
			continue
		}
		skip := func(l label) (int, error) {
			s := g.labels[l] - (i + 1)
			if s < 0 {
				return 0, fmt.Errorf("capture: filter: internal error: backward jump")
			}
			return s, nil
		}
		st, err := skip(it.t)
		if err != nil {
			return nil, err
		}
		if it.always {
			out[i] = bpf.Jump{Skip: uint32(st)}
			continue
		}
		sf, err := skip(it.f)
		if err != nil {
			return nil, err
		}
		if st > 255 || sf > 255 {
			return nil, fmt.Errorf("%w: a jump spans %d instructions (at most 255)", ErrFilterTooComplex, max(st, sf))
		}
		out[i] = bpf.JumpIf{Cond: it.cond, Val: it.val, SkipTrue: uint8(st), SkipFalse: uint8(sf)}
	}
	return out, nil
}

package egress

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cordon-vms/cordon/egress/dnsparse"
	"github.com/cordon-vms/cordon/internal/watchlist"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Bounds on per-camera detection state (beyond them the oldest-by-chance
// entry is dropped and counted in the state-evictions metric).
const (
	maxBeaconEvents = 64
	maxStateEntries = 1 << 16
	maxPending      = 1 << 14
	maxInspect      = 4 // camera payload packets per flow of another protocol inspected
)

// Config configures an Engine.
type Config struct {
	// Policy is required (see LoadPolicy). NewEngine validates it and
	// fills its zero values with the documented defaults (on a copy).
	Policy *Policy
	// Watchlist is the vendor-cloud list. It defaults to watchlist.Default().
	Watchlist *watchlist.List
	// Sink receives the alerts. Required.
	Sink AlertSink
	// Baseline enables new-destination (see LoadBaseline). Nil disables it.
	Baseline *Baseline
	// Logger is tagged with component=egress. It defaults to discarding.
	Logger *slog.Logger
}

// Engine decodes packets and flow records, keeps a bounded flow table and
// raises aggregated alerts. HandlePacket and HandleFlow may be called from
// several goroutines. Time is the packets' time (pcap timestamps, or capture
// time for live traffic); Advance moves it forward when no packets arrive.
type Engine struct {
	log  *slog.Logger
	p    *Policy
	wl   *watchlist.List
	sink AlertSink
	base *Baseline

	mu     sync.Mutex
	dec    *decoder
	pkt    packet
	query  dnsparse.Question // the DNS query of pkt, when it is one
	now    int64             // engine clock, Unix ns
	nextHK int64
	flows  *flowTable
	agg    map[aggKey]*pending
	// aggNext is at most the earliest end of the pending alerts in agg:
	// before it, flush has none to emit and does not look.
	aggNext int64
	// maxPending bounds agg (maxPending; tests lower it).
	maxPending int
	outbox     []Alert    // emitted, not yet handed to the sink (see unlockAndDeliver)
	urgent     []*pending // created since the last delivery: high ones are sent at once (sendUrgent)
	names      map[netip.Addr]string
	nameBuf    [dnsparse.MaxNameLen]byte
	// cur is the flow whose packet (or record) the detectors are looking
	// at: the alerts they raise carry its 5-tuple.
	cur *flow

	dnsWatch []dnsWatcher // detectors that read DNS queries over TCP
	// quiet holds, per alert key, the end of its suppression period
	// (Thresholds.Suppress).
	quiet map[aggKey]int64
	// warnedLT are the link types not decoded that were logged (once each).
	warnedLT map[layers.LinkType]bool

	// The detectors' state, one per entry of Detectors, and those that
	// look at new flows and at what cameras send, in Detectors' order.
	detectors []any
	opened    []flowOpener
	sent      []sendWatcher

	sendMu sync.Mutex // serialises deliveries to the sink, in emission order

	camNets   prefixSet
	exclude   prefixSet
	broadcast []netip.Addr
	core      []netip.Prefix
	allow     []allowRule
	mgmt      [1024]uint64 // bitset of lateral ports

	m Metrics
}

type allowRule struct {
	host  netip.Prefix
	proto uint8
	port  uint16
}

// NewEngine checks cfg and returns an engine.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Policy == nil {
		return nil, errors.New("egress: Config.Policy is required")
	}
	if cfg.Sink == nil {
		return nil, errors.New("egress: Config.Sink is required")
	}
	if err := cfg.Policy.Validate(""); err != nil {
		return nil, fmt.Errorf("egress: policy: %w", err)
	}
	p := *cfg.Policy
	p.Defaults()
	e := &Engine{
		log:        cfg.Logger,
		p:          &p,
		wl:         cfg.Watchlist,
		sink:       cfg.Sink,
		base:       cfg.Baseline,
		warnedLT:   map[layers.LinkType]bool{},
		flows:      newFlowTable(p.Flows.Max),
		agg:        map[aggKey]*pending{},
		maxPending: maxPending,
		quiet:      map[aggKey]int64{},
		names:      map[netip.Addr]string{},
	}
	e.dec = newDecoder(&e.m, p.Decode.VXLANPorts)
	if e.base != nil { // destinations not learned count as state evictions
		e.m.StateEvictions.Add(e.base.dropped.Load())
		e.base.dests.evictions = &e.m.StateEvictions
	}
	e.m.Alerts = make([]atomic.Uint64, len(Detectors))
	for _, d := range Detectors {
		st := d.new(e)
		e.detectors = append(e.detectors, st)
		if o, ok := st.(flowOpener); ok {
			e.opened = append(e.opened, o)
		}
		if w, ok := st.(sendWatcher); ok {
			e.sent = append(e.sent, w)
		}
		if w, ok := st.(dnsWatcher); ok {
			e.dnsWatch = append(e.dnsWatch, w)
		}
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "egress")
	if e.wl == nil {
		e.wl = watchlist.Default()
	}
	for _, n := range p.Cameras.Networks {
		e.camNets.add(n.Prefix)
		if n.Addr().Is4() && n.Bits() < 31 {
			e.broadcast = append(e.broadcast, lastAddr(n.Prefix))
		}
	}
	for _, n := range p.Cameras.Exclude {
		e.exclude.add(n.Prefix)
	}
	for _, n := range p.Lateral.Core {
		e.core = append(e.core, n.Prefix)
	}
	for _, r := range p.Allow {
		e.allow = append(e.allow, allowRule{host: r.Host.Prefix, proto: r.Proto.number(), port: r.Port})
	}
	for _, port := range p.Lateral.Ports {
		e.mgmt[port/64] |= 1 << (port % 64)
	}
	for _, c := range p.Cameras.Names {
		e.names[c.Addr.Addr] = c.Name
	}
	return e, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Metrics returns the engine's counters (safe to read concurrently).
func (e *Engine) Metrics() *Metrics { return &e.m }

// HandlePacket decodes one link-layer packet of type lt captured at ci.Timestamp.
// data is not retained. Alerts it completes are delivered to the sink with
// ctx before it returns.
func (e *Engine) HandlePacket(ctx context.Context, data []byte, ci gopacket.CaptureInfo, lt layers.LinkType) {
	e.mu.Lock()
	defer e.unlockAndDeliver(ctx)
	var c packetCounts
	e.handlePacket(data, ci.Timestamp.UnixNano(), lt, &c)
	c.flush(&e.m)
}

// packetCounts are the packet counters of Metrics counted under the lock
// and added to them at once when it is released (runMapped handles many
// packets per hold of the lock: one atomic addition each per batch).
type packetCounts struct{ packets, decoded, bytes uint64 }

func (c *packetCounts) flush(m *Metrics) {
	m.Packets.Add(c.packets)
	m.Decoded.Add(c.decoded)
	m.Bytes.Add(c.bytes)
	*c = packetCounts{}
}

// handlePacket is HandlePacket with the lock held, counting in c.
func (e *Engine) handlePacket(data []byte, ts int64, lt layers.LinkType, c *packetCounts) {
	c.packets++
	e.tick(ts)
	p := &e.pkt
	r := e.dec.decode(data, lt, ts, p)
	if e.dec.tunneled {
		// The tunnel itself, when a camera is one of its ends.
		e.dec.tunneled = false
		if o := &e.dec.outer; e.isCamera(o.src) || e.isCamera(o.dst) {
			e.handle(o, ts)
		}
	}
	if r != decoded {
		if r == linkControl {
			e.m.LinkControl.Add(1)
			return
		}
		e.m.countUndecoded(r, lt)
		if r == dropLinkType && !e.warnedLT[lt] {
			e.warnedLT[lt] = true
			e.log.Warn("link type not decoded: its packets are counted, not analysed", "link_type", linkTypeName(lt))
		}
		return
	}
	c.decoded++
	c.bytes += p.ipLen
	e.handle(p, ts)
}

// HandleFlow accounts one unidirectional flow record (NetFlow v5/v9, IPFIX).
// Records carry no payload, so DNS, SNI and payload signatures are not seen.
// Alerts it completes are delivered to the sink with ctx before it returns.
func (e *Engine) HandleFlow(ctx context.Context, r FlowRecord) {
	e.mu.Lock()
	defer e.unlockAndDeliver(ctx)
	e.m.FlowRecords.Add(1)
	start, end := r.Start.UnixNano(), r.End.UnixNano()
	if end < start {
		end = start
	}
	e.tick(end)
	p := &e.pkt
	*p = packet{
		src: r.Key.Src.Addr().Unmap(), dst: r.Key.Dst.Addr().Unmap(),
		sport: r.Key.Src.Port(), dport: r.Key.Dst.Port(),
		proto: r.Key.Proto, flags: r.TCPFlags, ipLen: r.Bytes, fromRecord: true,
	}
	e.handleRecord(p, start, end, r.Packets)
}

// Advance moves the engine clock to now (wall time, for live inputs without
// traffic) so aggregation windows close and idle flows expire.
func (e *Engine) Advance(ctx context.Context, now time.Time) {
	e.mu.Lock()
	defer e.unlockAndDeliver(ctx)
	e.tick(now.UnixNano())
}

// Run reads src until it ends (io.EOF: nil) or ctx is done, then returns.
// It does not close src or the engine. The packets of a source that
// implements PacketLinkTyper (pcapng) are decoded by their own interface's
// link type. A source that ends without one packet decoded, although it
// had packets, is an error (NothingDecodedError) that says why.
func (e *Engine) Run(ctx context.Context, src PacketSource) (err error) {
	fs, mapped := src.(*fileSource)
	mapped = mapped && fs.pr != nil
	if mapped {
		defer catchFault(&err, fs)
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	}
	lt := src.LinkType()
	plt, perPacket := src.(PacketLinkTyper)
	batched := mapped && !perPacket
	var read uint64
	decoded0, control0 := e.m.Decoded.Load(), e.m.LinkControl.Load()
	for i := 0; ; i++ {
		if i&1023 == 0 && ctx.Err() != nil {
			return nil
		}
		var data []byte
		var ci gopacket.CaptureInfo
		if batched {
			var n uint64
			n, err = e.runBatch(ctx, fs, lt)
			read += n
		} else {
			data, ci, err = src.ReadPacketData()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return e.ended(src, read, e.m.Decoded.Load()-decoded0, e.m.LinkControl.Load()-control0)
			}
			if err := readError(ctx, err); err != errRetry {
				return err
			}
			continue
		}
		if batched {
			continue
		}
		read++
		if perPacket {
			lt = plt.PacketLinkType(ci)
		}
		e.HandlePacket(ctx, data, ci, lt)
	}
}

// ended is Run's answer for a source that ended after read packets, of
// which decoded were decoded to IP and control were link-layer control
// frames: a NothingDecodedError when it had packets and none was either;
// a capture of a quiet site (control frames, no IP) is no error but is
// noted.
func (e *Engine) ended(src PacketSource, read, decoded, control uint64) error {
	switch {
	case read == 0 || decoded > 0:
		return nil
	case control > 0:
		attrs := []any{"packets", read, "link_control", control}
		if n := read - control; n > 0 {
			attrs = append(attrs, "not_decoded", n)
		}
		e.log.Warn("the capture held no IP traffic: link-layer control frames (ARP, LLDP, STP, ...), no flow to analyse", attrs...)
		return nil
	}
	nd := &NothingDecodedError{Packets: read, Reasons: e.m.Undecoded()}
	if n, ok := src.(interface{ sourceName() string }); ok {
		nd.File = n.sourceName()
	}
	return nd
}

// runBatch is how Run reads a file mapped into memory (whose reads never
// wait for a sender): up to runBatchLen packets with the lock held once,
// the alerts they complete delivered after, the same alerts in the same
// order as one HandlePacket each would deliver (high-severity ones are
// taken as they are after the packet that raised them). It returns how
// many it read and the error that stopped it, if any.
func (e *Engine) runBatch(ctx context.Context, fs *fileSource, lt layers.LinkType) (n uint64, err error) {
	var c packetCounts
	e.mu.Lock()
	defer e.unlockAndDeliver(ctx)
	defer c.flush(&e.m)
	for n < runBatchLen {
		data, ts, err := fs.readMapped()
		if err != nil {
			return n, err
		}
		n++
		e.handlePacket(data, ts, lt, &c)
		if len(e.urgent) > 0 {
			e.sendUrgent() // as HandlePacket would: as they are after this packet
		}
	}
	return n, nil
}

// runBatchLen is how many packets of a mapped file Run handles per hold
// of the engine's lock.
const runBatchLen = 64

// errRetry is readError's answer for a read that timed out: read again.
var errRetry = errors.New("retry")

// readError is what Run returns for a read error other than io.EOF: nil
// when ctx is done, errRetry for a time-out.
func readError(ctx context.Context, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errRetry
	}
	if ctx.Err() != nil {
		return nil
	}
	var te *TruncatedError
	var re *ReadError
	if errors.As(err, &te) || errors.As(err, &re) {
		return err // it names the file and the offset
	}
	return fmt.Errorf("egress: reading packets: %w", err)
}

// catchFault turns the fault of reading a mapped capture file that was
// truncated while it was read into Run's error; other panics go on.
func catchFault(err *error, fs *fileSource) {
	r := recover()
	if r == nil {
		return
	}
	if re, ok := r.(runtime.Error); ok {
		if _, fault := re.(interface{ Addr() uintptr }); fault {
			*err = fmt.Errorf("egress: %s: the file shrank while it was read (after %d packets): %w", fs.name, fs.packets, re)
			return
		}
	}
	panic(r)
}

// NothingDecodedError is Run's error for a capture with packets of which
// none could be decoded: a link type cordon does not read, no IP at all,
// or only malformed packets.
type NothingDecodedError struct {
	File    string // the capture file, when there is one
	Packets uint64
	Reasons []Undecoded // by reason and link type
}

func (e *NothingDecodedError) Error() string {
	var b strings.Builder
	b.WriteString("egress: ")
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	fmt.Fprintf(&b, "none of the %d packets could be decoded:", e.Packets)
	for i, r := range e.Reasons {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %d %s (link type %s)", r.Packets, r.Reason, linkTypeName(r.LinkType))
	}
	return b.String()
}

// Close emits every pending alert, delivering them with ctx, and saves the
// baseline.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	defer e.unlockAndDeliver(ctx)
	e.flows.each(e.dnsEnd)
	e.flush(true)
	if e.base != nil {
		if err := e.base.Save(); err != nil {
			return err
		}
	}
	return nil
}

// tick advances the clock and runs housekeeping once per second of it.
func (e *Engine) tick(ts int64) {
	if ts > e.now {
		e.now = ts
	}
	if e.now < e.nextHK {
		return
	}
	e.nextHK = e.now + int64(time.Second)
	e.flush(false)
	e.expireQuiet()
	e.dec.frags.expire(e.now)
	idle := e.now - int64(e.p.Flows.Idle)
	for f := e.flows.oldest(); f != nil && f.last < idle; f = e.flows.oldest() {
		e.flows.remove(f)
		e.m.FlowsExpired.Add(1)
		e.dnsEnd(f)
	}
	e.m.FlowsActive.Store(uint64(e.flows.len()))
	if e.base != nil {
		if err := e.base.maybeSave(e.now); err != nil {
			e.log.Warn("saving the baseline failed", "error", err)
		}
	}
}

func (e *Engine) isCamera(a netip.Addr) bool {
	return e.camNets.contains(a) && !e.exclude.contains(a)
}

// prefixSet is a list of prefixes, the IPv4 ones as masked 32-bit values:
// contains is asked of every packet's addresses.
type prefixSet struct {
	v4 []prefix4
	v6 []netip.Prefix
}

type prefix4 struct{ net, mask uint32 }

func (s *prefixSet) add(p netip.Prefix) {
	if !p.Addr().Is4() {
		s.v6 = append(s.v6, p)
		return
	}
	b := p.Masked().Addr().As4()
	mask := ^uint32(0)
	if p.Bits() < 32 {
		mask = ^(mask >> p.Bits())
	}
	s.v4 = append(s.v4, prefix4{net: binary.BigEndian.Uint32(b[:]), mask: mask})
}

// contains is netip.Prefix.Contains of any of the prefixes (an IPv4
// address is not in an IPv6 prefix, nor the reverse).
func (s *prefixSet) contains(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:])
		for _, n := range s.v4 {
			if v&n.mask == n.net {
				return true
			}
		}
		return false
	}
	for _, n := range s.v6 {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func (e *Engine) isLocal(a netip.Addr) bool {
	if a.IsMulticast() || a.IsLinkLocalMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || !a.IsValid() || a.IsUnspecified() {
		return true
	}
	for _, b := range e.broadcast {
		if a == b {
			return true
		}
	}
	return false
}

func (e *Engine) allowed(peer netip.Addr, proto uint8, port uint16) bool {
	for _, r := range e.allow {
		if r.host.Contains(peer) && (r.proto == 0 || r.proto == proto) && (r.port == 0 || r.port == port) {
			return true
		}
	}
	return false
}

func (e *Engine) inCore(a netip.Addr) bool {
	for _, n := range e.core {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func (e *Engine) isMgmt(port uint16) bool { return e.mgmt[port/64]&(1<<(port%64)) != 0 }

func (e *Engine) cameraName(a netip.Addr) string {
	if n, ok := e.names[a]; ok {
		return n
	}
	return a.String()
}

// lookup finds p's flow: its canonical key and the flow, nil if it is not
// in the table yet. ok is false, and p counted as ignored, when neither end
// is a camera.
func (e *Engine) lookup(p *packet) (key FlowKey, f *flow, ok bool) {
	if !e.isCamera(p.src) && !e.isCamera(p.dst) {
		e.m.Ignored.Add(1)
		return key, nil, false
	}
	key = canonical(p.proto, netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport))
	return key, e.flows.get(key), true
}

// dir is 0 for a packet from the flow's initiator, 1 for one from its
// responder.
func (f *flow) dir(p *packet) int {
	if netip.AddrPortFrom(p.src, p.sport) != f.init {
		return 1
	}
	return 0
}

// handle accounts one decoded packet.
func (e *Engine) handle(p *packet, ts int64) {
	key, f, ok := e.lookup(p)
	if !ok {
		return
	}
	fresh := f == nil
	if fresh {
		srcInit, query := initiatorIsSrc(p), e.solicited(p)
		if query != "" {
			srcInit = false // the camera's multicast query asked for it
		}
		f = e.newFlow(key, p, ts, srcInit, query)
	}
	dir := f.dir(p)
	f.pkts[dir]++
	f.bytes[dir] += p.ipLen
	if ts > f.last {
		f.last = ts
	}
	if p.proto == protoTCP && f.synOnly && (dir == 1 || p.flags&tcpSYN == 0) {
		f.synOnly = false
	}
	if p.src == f.cam && (dir == 0) == f.outbound {
		e.cameraSent(f, p, ts, fresh)
	}
}

// handleRecord accounts one flow record.
func (e *Engine) handleRecord(p *packet, start, end int64, pkts uint64) {
	key, f, ok := e.lookup(p)
	if !ok {
		return
	}
	fresh := f == nil
	if fresh {
		// Records carry no SYN order: the lower port is the service.
		srcInit := !(p.sport < p.dport)
		f = e.newFlow(key, p, start, srcInit, "")
		f.synOnly = false
	}
	dir := f.dir(p)
	f.pkts[dir] += pkts
	f.bytes[dir] += p.ipLen
	if end > f.last {
		f.last = end
	}
	if p.src == f.cam && (dir == 0) == f.outbound {
		e.cameraSent(f, p, start, fresh)
		// A record spans start..end: the camera was last heard at its end,
		// so records exported every active timeout of one long flow are
		// not separate contacts (beacon).
		if end > f.lastCamOut {
			f.lastCamOut = end
		}
	}
}

// Multicast discovery: a camera's query to a group on a port is answered
// by unicast datagrams from that port.
var discoveryGroups = []struct {
	port  uint16
	group netip.Addr
	query string
}{
	{1900, netip.MustParseAddr("239.255.255.250"), "SSDP M-SEARCH"},
	{1900, netip.MustParseAddr("ff02::c"), "SSDP M-SEARCH"},
	{5353, netip.MustParseAddr("224.0.0.251"), "mDNS query"},
	{5353, netip.MustParseAddr("ff02::fb"), "mDNS query"},
	{3702, netip.MustParseAddr("239.255.255.250"), "WS-Discovery probe"},
	{3702, netip.MustParseAddr("ff02::c"), "WS-Discovery probe"},
}

// solicited names the camera's multicast discovery query that the first
// datagram of a flow answers (a unicast reply from the discovery port to
// the port the camera queried from, while its query flow is in the table),
// or "".
func (e *Engine) solicited(p *packet) string {
	if p.proto != protoUDP || !e.isCamera(p.dst) || e.isCamera(p.src) {
		return ""
	}
	for _, g := range discoveryGroups {
		if g.port != p.sport || g.group.Is4() != p.dst.Is4() {
			continue
		}
		k := canonical(protoUDP, netip.AddrPortFrom(p.dst, p.dport), netip.AddrPortFrom(g.group, g.port))
		if e.flows.peek(k) != nil {
			return g.query
		}
	}
	return ""
}

// initiatorIsSrc guesses whether the sender of the first packet seen of a
// flow opened it: a SYN says so, a SYN-ACK says the opposite; otherwise a
// packet from a well-known port to a high port is a reply.
func initiatorIsSrc(p *packet) bool {
	switch {
	case p.proto == protoTCP && p.flags&tcpSYN != 0:
		return p.flags&tcpACK == 0
	case isICMP(p.proto):
		return !(p.icmpType == 0 || p.icmpType == 129) // echo replies answer the other side
	}
	return !(p.sport < 1024 && p.dport >= 1024)
}

// newFlow creates and classifies a flow and raises the flow-level alerts.
func (e *Engine) newFlow(key FlowKey, p *packet, ts int64, srcInit bool, solicited string) *flow {
	f := &flow{key: key, first: ts, last: ts, proto: p.proto, solicited: solicited}
	f.init, f.resp = netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport)
	if !srcInit {
		f.init, f.resp = f.resp, f.init
	}
	if isICMP(p.proto) && !p.fromRecord {
		f.icmpType, f.icmpCode, f.icmpSeen, f.icmpRev = p.icmpType, p.icmpCode, true, !srcInit
	}
	f.synOnly = p.proto == protoTCP && p.flags&tcpSYN != 0 && p.flags&tcpACK == 0
	initCam := e.isCamera(f.init.Addr())
	f.outbound = initCam
	if initCam {
		f.cam, f.peer = f.init.Addr(), f.resp.Addr()
	} else {
		f.cam, f.peer = f.resp.Addr(), f.init.Addr()
	}
	f.port = f.resp.Port()
	f.local = e.isLocal(f.peer)
	f.allowed = e.allowed(f.peer, f.proto, f.port)
	if ev := e.flows.insert(f); ev != nil {
		e.m.FlowEvictions.Add(1)
		e.dnsEnd(ev)
	}
	e.m.Flows.Add(1)

	f.lateral = (e.isCamera(f.peer) || e.inCore(f.peer)) && e.isMgmt(f.port) && !isICMP(f.proto)
	e.cur = f
	for _, d := range e.opened {
		d.flowOpened(f, p, ts)
	}
	e.cur = nil
	if f.watchable() {
		f.lastCamOut = ts
	}
	return f
}

// cameraSent handles a packet (or record) the camera of f sent in its own
// direction of the flow; fresh says it opened the flow (newFlow accounted it).
// A DNS query is parsed once here for the detectors that read it.
func (e *Engine) cameraSent(f *flow, p *packet, ts int64, fresh bool) {
	if !f.outbound {
		return // a camera's answers on flows it did not open (RTSP pulled by a recorder)
	}
	p.dns, p.dnsName = nil, ""
	if p.dport == 53 && len(p.payload) > 0 && f.proto == protoUDP {
		if p.dns = e.parseQuery(p.payload); p.dns != nil {
			p.dnsName = string(p.dns.Name)
		}
	}
	e.cur = f
	for _, d := range e.sent {
		d.cameraSent(f, p, ts, fresh)
	}
	if f.proto == protoTCP && f.port == 53 && !p.fromRecord {
		e.dnsOverTCP(f, p, ts)
	}
	e.cur = nil
	if f.watchable() && ts > f.lastCamOut {
		f.lastCamOut = ts
	}
}

// dnsOverTCP reads the DNS queries the camera sends on a TCP connection
// to port 53 from its stream (dnsStream) and hands each to the detectors
// that read them.
func (e *Engine) dnsOverTCP(f *flow, p *packet, ts int64) {
	syn := p.flags&tcpSYN != 0
	if f.dns == nil {
		if len(p.payload) == 0 && !syn {
			return
		}
		f.dns = &dnsStream{}
	}
	skipped := f.dns.add(p.seq, syn, p.flags&(tcpFIN|tcpRST) != 0, p.payload, func(msg []byte) { e.dnsMessage(f, msg, ts) })
	e.m.DNSTCPSkipped.Add(skipped)
}

// dnsMessage hands a DNS-over-TCP message's query to the detectors that
// read queries.
func (e *Engine) dnsMessage(f *flow, msg []byte, ts int64) {
	q := e.parseQuery(msg)
	if q == nil {
		return
	}
	name := string(q.Name)
	for _, d := range e.dnsWatch {
		d.dnsQuery(f, q, name, ts)
	}
}

// dnsEnd reads what a flow's DNS-over-TCP stream still holds ahead of a
// gap when the flow goes (expired, evicted to make room, or the capture
// ended): each gap is counted as a skipped message and the queries held
// after it are read, as when the hold fills.
func (e *Engine) dnsEnd(f *flow) {
	if f.dns == nil || len(f.dns.held) == 0 {
		return
	}
	e.m.DNSTCPSkipped.Add(f.dns.lose(func(msg []byte) { e.dnsMessage(f, msg, f.last) }))
}

// parseQuery returns the standard query msg holds, or nil.
func (e *Engine) parseQuery(msg []byte) *dnsparse.Question {
	q, err := dnsparse.Parse(msg, e.nameBuf[:])
	if err != nil || q.Response || q.Opcode != 0 || len(q.Name) == 0 {
		return nil
	}
	e.query = q
	return &e.query
}

// evictOne drops an arbitrary entry (Go randomises map iteration order).
func evictOne[K comparable, V any](m map[K]V) {
	for k := range m {
		delete(m, k)
		return
	}
}

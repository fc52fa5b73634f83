package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cordon-vms/cordon/internal/watchlist"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Alert kinds.
const (
	KindUnexpectedDestination = "unexpected-destination"
	KindVendorCloud           = "vendor-cloud"
	KindDNSTunnel             = "dns-tunnel"
	KindBeacon                = "beacon"
	KindVolume                = "volume"
	KindLateral               = "lateral"
	KindNewDestination        = "new-destination"
)

// Kinds lists the alert kinds in documentation order.
var Kinds = []string{KindUnexpectedDestination, KindVendorCloud, KindDNSTunnel, KindBeacon, KindVolume, KindLateral, KindNewDestination}

type kind uint8

const (
	kUnexpected kind = iota
	kVendor
	kTunnel
	kBeacon
	kVolume
	kLateral
	kNewDest
	numKinds
)

var kindSeverity = [numKinds]string{"medium", "high", "high", "medium", "high", "high", "low"}

// Bounds on per-camera detection state (beyond them the oldest-by-chance
// entry is dropped and counted in the state-evictions metric).
const (
	maxBeaconEvents = 64
	maxStateEntries = 1 << 16
	maxPending      = 1 << 14
	maxTLSBuffer    = 16 << 10
	maxInspect      = 4 // camera payload packets per flow inspected for SNI/signatures
)

// Config configures an Engine.
type Config struct {
	// Policy is required (see LoadPolicy); its zero thresholds take defaults.
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

	mu      sync.Mutex
	ctx     context.Context
	dec     *decoder
	pkt     packet
	now     int64 // engine clock, Unix ns
	nextHK  int64
	flows   *flowTable
	agg     map[aggKey]*pending
	dns     map[dnsKey]*dnsWindow
	beacons map[beaconKey]*beaconState
	volume  map[netip.Addr]*volumeWindow
	names   map[netip.Addr]string
	nameBuf [256]byte

	camNets   []netip.Prefix
	exclude   []netip.Prefix
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
	p := *cfg.Policy
	p.Defaults()
	e := &Engine{
		log:     cfg.Logger,
		p:       &p,
		wl:      cfg.Watchlist,
		sink:    cfg.Sink,
		base:    cfg.Baseline,
		ctx:     context.Background(),
		dec:     newDecoder(),
		flows:   newFlowTable(p.Flows.Max),
		agg:     map[aggKey]*pending{},
		dns:     map[dnsKey]*dnsWindow{},
		beacons: map[beaconKey]*beaconState{},
		volume:  map[netip.Addr]*volumeWindow{},
		names:   map[netip.Addr]string{},
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "egress")
	if e.wl == nil {
		e.wl = watchlist.Default()
	}
	for _, n := range p.Cameras.Networks {
		e.camNets = append(e.camNets, n.Prefix)
		if n.Addr().Is4() && n.Bits() < 31 {
			e.broadcast = append(e.broadcast, lastAddr(n.Prefix))
		}
	}
	for _, n := range p.Cameras.Exclude {
		e.exclude = append(e.exclude, n.Prefix)
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
// data is not retained.
func (e *Engine) HandlePacket(data []byte, ci gopacket.CaptureInfo, lt layers.LinkType) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m.Packets.Add(1)
	ts := ci.Timestamp.UnixNano()
	e.tick(ts)
	p := &e.pkt
	if err := e.dec.decode(data, lt, p); err != nil {
		switch {
		case errors.Is(err, errNotIP), errors.Is(err, errLinkType):
			e.m.NonIP.Add(1)
		case errors.Is(err, errNotSupported):
			e.m.Fragments.Add(1)
		default:
			e.m.DecodeErrors.Add(1)
		}
		return
	}
	e.m.Bytes.Add(p.ipLen)
	e.handle(p, ts)
}

// HandleFlow accounts one unidirectional flow record (NetFlow v5/v9, IPFIX).
// Records carry no payload, so DNS, SNI and payload signatures are not seen.
func (e *Engine) HandleFlow(r FlowRecord) {
	e.mu.Lock()
	defer e.mu.Unlock()
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
func (e *Engine) Advance(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tick(now.UnixNano())
}

// Run reads src until it ends (io.EOF: nil) or ctx is done, then returns.
// It does not close src or the engine.
func (e *Engine) Run(ctx context.Context, src PacketSource) error {
	e.mu.Lock()
	e.ctx = ctx
	e.mu.Unlock()
	lt := src.LinkType()
	for i := 0; ; i++ {
		if i&1023 == 0 && ctx.Err() != nil {
			return nil
		}
		data, ci, err := src.ReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("egress: reading packets: %w", err)
		}
		e.HandlePacket(data, ci, lt)
	}
}

// Close emits every pending alert and saves the baseline.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
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
	idle := e.now - int64(e.p.Flows.Idle)
	for f := e.flows.oldest(); f != nil && f.last < idle; f = e.flows.oldest() {
		e.flows.remove(f)
		e.m.FlowsExpired.Add(1)
	}
	e.m.FlowsActive.Store(uint64(e.flows.len()))
	if e.base != nil {
		if err := e.base.maybeSave(e.now); err != nil {
			e.log.Warn("saving the baseline failed", "err", err)
		}
	}
}

func (e *Engine) isCamera(a netip.Addr) bool {
	in := false
	for _, n := range e.camNets {
		if n.Contains(a) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, n := range e.exclude {
		if n.Contains(a) {
			return false
		}
	}
	return true
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
		f = e.newFlow(key, p, ts, initiatorIsSrc(p))
	}
	dir := f.dir(p)
	f.pkts[dir]++
	f.bytes[dir] += p.ipLen
	if ts > f.last {
		f.last = ts
	}
	if p.proto == 6 && f.synOnly && (dir == 1 || p.flags&tcpSYN == 0) {
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
		f = e.newFlow(key, p, start, srcInit)
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

// initiatorIsSrc guesses whether the sender of the first packet seen of a
// flow opened it: a SYN says so, a SYN-ACK says the opposite; otherwise a
// packet from a well-known port to a high port is a reply.
func initiatorIsSrc(p *packet) bool {
	switch {
	case p.proto == 6 && p.flags&tcpSYN != 0:
		return p.flags&tcpACK == 0
	case p.proto == 1 || p.proto == 58:
		return !(p.icmpType == 0 || p.icmpType == 129) // echo replies answer the other side
	}
	return !(p.sport < 1024 && p.dport >= 1024)
}

// newFlow creates and classifies a flow and raises the flow-level alerts.
func (e *Engine) newFlow(key FlowKey, p *packet, ts int64, srcInit bool) *flow {
	f := &flow{key: key, first: ts, last: ts, proto: p.proto}
	f.init, f.resp = netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport)
	if !srcInit {
		f.init, f.resp = f.resp, f.init
	}
	f.synOnly = p.proto == 6 && p.flags&tcpSYN != 0 && p.flags&tcpACK == 0
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
	}
	e.m.Flows.Add(1)

	if !f.outbound {
		if !f.allowed && !f.local {
			e.raiseUnexpected(f, ts, 0, "inbound connection from %s to camera port %s/%d: the peer is not in the allow list")
		}
		return f
	}
	// Watch-list address and port signatures.
	if en, ok := e.wl.MatchAddr(f.peer); ok {
		f.watched = true
		e.raiseVendor(f, ts, "", fmt.Sprintf("destination %s is on the watch-list (%s: %s)", f.peer, en.Vendor, en.Note), aggKey{dst: f.peer})
	} else if en, ok := e.wl.MatchTraffic(protoName(f.proto), f.port, nil); ok {
		f.watched = true
		e.raiseVendor(f, ts, "", fmt.Sprintf("%s port %d matches the watch-list (%s: %s)", protoName(f.proto), f.port, en.Vendor, en.Note), aggKey{dst: f.peer, port: f.port})
	}
	if f.allowed || f.local {
		return f
	}
	peerCam := e.isCamera(f.peer)
	if (peerCam || e.inCore(f.peer)) && e.isMgmt(f.port) && f.proto != 1 && f.proto != 58 {
		what := "core host"
		if peerCam {
			what = "camera"
		}
		e.raise(aggKey{cam: f.cam, kind: kLateral, dst: f.peer, port: f.port}, ts, p.ipLen, 1, func(a *Alert) {
			a.Proto, a.Port = protoName(f.proto), f.port
			a.Detail = fmt.Sprintf("camera %s opened %s/%d (a management port) on %s %s", f.cam, protoName(f.proto), f.port, what, f.peer)
		})
	} else {
		f.agg = e.raiseUnexpected(f, ts, p.ipLen, "")
	}
	if e.base != nil {
		isNew, learning := e.base.seen(baseKey{cam: f.cam, dst: f.peer, proto: f.proto, port: f.port}, ts)
		if isNew && !learning {
			e.raise(aggKey{cam: f.cam, kind: kNewDest, dst: f.peer, port: f.port}, ts, 0, 1, func(a *Alert) {
				a.Proto, a.Port = protoName(f.proto), f.port
				a.Detail = fmt.Sprintf("first contact of camera %s with %s %s/%d: not in the learned baseline", f.cam, f.peer, protoName(f.proto), f.port)
			})
		}
	}
	e.beaconEvent(f, ts)
	f.lastCamOut = ts
	return f
}

// cameraSent handles a packet (or record) the camera of f sent in its own
// direction of the flow; fresh says it opened the flow (newFlow accounted it).
func (e *Engine) cameraSent(f *flow, p *packet, ts int64, fresh bool) {
	if p.dport == 53 && len(p.payload) > 0 && f.outbound {
		e.inspectDNS(f, p, ts)
	}
	if f.outbound && len(p.payload) > 0 && !f.inspDone {
		e.inspectPayload(f, p, ts)
	}
	if !f.outbound || f.allowed || f.local {
		return
	}
	gap := ts - f.lastCamOut
	if !fresh {
		if gap >= int64(e.p.Thresholds.Beacon.MinInterval)/2 && !(f.proto == 6 && f.synOnly) && f.lastCamOut != 0 {
			e.beaconEvent(f, ts)
		}
		if f.agg != nil && !f.agg.emitted {
			f.agg.a.Bytes += p.ipLen
			if t := time.Unix(0, ts).UTC(); t.After(f.agg.a.LastSeen) {
				f.agg.a.LastSeen = t
			}
		} else if f.agg != nil {
			f.agg = e.raiseUnexpected(f, ts, p.ipLen, "")
		}
	}
	if ts > f.lastCamOut {
		f.lastCamOut = ts
	}
	e.volumeAdd(f, p, ts)
}

func (e *Engine) raiseUnexpected(f *flow, ts int64, bytes uint64, inboundFormat string) *pending {
	return e.raise(aggKey{cam: f.cam, kind: kUnexpected, dst: f.peer}, ts, bytes, 1, func(a *Alert) {
		a.Proto, a.Port = protoName(f.proto), f.port
		switch {
		case inboundFormat != "":
			a.Severity = "low"
			a.Detail = fmt.Sprintf(inboundFormat, f.peer, protoName(f.proto), f.port)
		case publicResolvers[f.peer] != "" && (f.port == 53 || f.port == 853):
			a.Severity = "high"
			a.Detail = fmt.Sprintf("camera %s uses the public DNS resolver %s (%s) on %s/%d instead of the allowed resolver: hard-coded in its firmware?", f.cam, f.peer, publicResolvers[f.peer], protoName(f.proto), f.port)
		default:
			a.Detail = fmt.Sprintf("camera %s contacted %s on %s/%d, which no allow rule permits", f.cam, f.peer, protoName(f.proto), f.port)
		}
	})
}

func (e *Engine) raiseVendor(f *flow, ts int64, domain, detail string, k aggKey) {
	k.cam, k.kind = f.cam, kVendor
	e.raise(k, ts, 0, 1, func(a *Alert) {
		a.Proto, a.Port, a.Domain = protoName(f.proto), f.port, domain
		if a.Dst == "" {
			a.Dst = f.peer.String()
		}
		a.Detail = detail
	})
}

// publicResolvers are well-known public DNS resolvers that camera firmware
// hard-codes (XMEye: 114.114.114.114 and 8.8.8.8).
var publicResolvers = func() map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for addr, name := range map[string]string{
		"8.8.8.8": "Google", "8.8.4.4": "Google", "2001:4860:4860::8888": "Google", "2001:4860:4860::8844": "Google",
		"1.1.1.1": "Cloudflare", "1.0.0.1": "Cloudflare", "2606:4700:4700::1111": "Cloudflare",
		"9.9.9.9": "Quad9", "149.112.112.112": "Quad9",
		"208.67.222.222": "OpenDNS", "208.67.220.220": "OpenDNS",
		"114.114.114.114": "114DNS", "114.114.115.115": "114DNS",
		"223.5.5.5": "AliDNS", "223.6.6.6": "AliDNS", "119.29.29.29": "DNSPod", "180.76.76.76": "Baidu",
	} {
		m[netip.MustParseAddr(addr)] = name
	}
	return m
}()

package proxy

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/quic-go/quic-go"

	"github.com/prometheus/client_golang/prometheus"
)

// The per-camera side of trunks: what each end counts per camera, the
// edge's per-core bandwidth cap, and how they show in /v1/trunks and the
// metrics.

// trunkEdgeCamera counts one camera sent to one core (over every stream
// the core opened for it).
type trunkEdgeCamera struct {
	name      string
	transport atomic.Value // TrunkTransport of the latest stream
	active    atomic.Int64 // streams playing it now

	bytes, packets atomic.Uint64
	// GOPs dropped (skips to the next keyframe) because the camera's
	// queue was full (the trunk could not keep up) or because the trunk
	// was over its max_bitrate.
	gopsCongestion, gopsCap atomic.Uint64
	datagrams, sent         atomic.Uint64 // datagrams and packets sent as datagrams
	datagramErrors          atomic.Uint64
	// fec is the FEC of the latest stream (a TrunkFEC); fecRepair the
	// repair datagrams sent (counted in datagrams too).
	fec       atomic.Value
	fecRepair atomic.Uint64
}

// trunkPeerMedia is the per-camera state of one connected core.
type trunkPeerMedia struct {
	capOnce sync.Once
	limit   atomic.Pointer[trunkLimiter]

	mu     sync.Mutex
	cams   map[string]*trunkEdgeCamera
	nextID uint32
}

// camera returns camera name's counters, creating them.
func (m *trunkPeerMedia) camera(name string) *trunkEdgeCamera {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cams == nil {
		m.cams = map[string]*trunkEdgeCamera{}
	}
	c := m.cams[name]
	if c == nil {
		if len(m.cams) >= maxTrunkCameras*2 {
			return &trunkEdgeCamera{name: name} // counted, not listed (the edge lists its own cameras only)
		}
		c = &trunkEdgeCamera{name: name}
		m.cams[name] = c
	}
	return c
}

// datagramID is a new datagram id on this connection.
func (m *trunkPeerMedia) datagramID() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	if m.nextID == 0 {
		m.nextID = 1
	}
	return m.nextID
}

// limiter returns the connection's limiter: the edge's cap (edgeBPS) and
// the one the core asked in its first play request, the lower of them.
func (m *trunkPeerMedia) limiter(edgeBPS, coreBPS int64, log *slog.Logger) *trunkLimiter {
	m.capOnce.Do(func() {
		bps := trunkCap(edgeBPS, coreBPS)
		if l := newTrunkLimiter(bps, log); l != nil {
			m.limit.Store(l)
			log.Info("trunk max_bitrate applies to this core", "max_bitrate", Bitrate(bps))
		}
	})
	return m.limit.Load()
}

// trunkCoreCamera counts one camera received through a trunk (the core end).
type trunkCoreCamera struct {
	name      string
	transport atomic.Value // TrunkTransport

	bytes, packets atomic.Uint64
	// Datagram cameras: datagrams received, packets lost (gaps in seq),
	// late or duplicate, malformed, skips to the next keyframe after a
	// loss, and the edge's count of packets sent.
	datagrams, lost, late, malformed, keyWaits, edgeSent atomic.Uint64
	// overflow: datagrams dropped because the camera's queue was full.
	overflow atomic.Uint64
	// FEC (trunk_fec.go): the camera's (a TrunkFEC, off when the edge
	// sends none); groups rebuilt, data datagrams rebuilt in them, groups
	// given up (a hole no repair could fill, or lost whole) and probes.
	fec                                                   atomic.Value
	fecRecovered, fecRebuilt, fecUnrecoverable, fecProbes atomic.Uint64
}

// trunkCoreMedia is the per-camera state of a trunkCore.
type trunkCoreMedia struct {
	mu   sync.Mutex
	cams map[string]*trunkCoreCamera
}

func (m *trunkCoreMedia) camera(name string, tr TrunkTransport) *trunkCoreCamera {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cams == nil {
		m.cams = map[string]*trunkCoreCamera{}
	}
	c := m.cams[name]
	if c == nil {
		c = &trunkCoreCamera{name: name}
		m.cams[name] = c
	}
	c.transport.Store(tr)
	return c
}

// TrunkCameraStatus is one camera of a trunk in /v1/trunks: on an edge,
// as sent to one core; on a core, as received.
type TrunkCameraStatus struct {
	Name      string         `json:"name"`
	Transport TrunkTransport `json:"transport,omitempty"`
	Bytes     uint64         `json:"bytes"`
	Packets   uint64         `json:"packets"`
	// Edge: streams of this camera the core has open now; GOPs dropped
	// because the trunk could not keep up, or because it was over its
	// max_bitrate; datagrams sent and those that could not be.
	Active         int64  `json:"active,omitempty"`
	GOPsCongestion uint64 `json:"gops_dropped_congestion,omitempty"`
	GOPsCap        uint64 `json:"gops_dropped_cap,omitempty"`
	DatagramErrors uint64 `json:"datagram_errors,omitempty"`
	// Both: datagrams sent (edge) or received (core).
	Datagrams uint64 `json:"datagrams,omitempty"`
	// Core, datagram cameras: packets lost, late, malformed, the skips to
	// the next keyframe they caused, and the edge's count of packets sent.
	Lost      uint64 `json:"datagram_packets_lost,omitempty"`
	Late      uint64 `json:"datagram_packets_late,omitempty"`
	Malformed uint64 `json:"datagram_malformed,omitempty"`
	KeyWaits  uint64 `json:"keyframe_waits,omitempty"`
	Overflow  uint64 `json:"datagram_overflow,omitempty"`
	EdgeSent  uint64 `json:"edge_sent,omitempty"`
	// Datagram cameras: the FEC ("20+4": data+parity per group, or
	// "off"); the edge's repair datagrams sent; at the core, groups
	// rebuilt, data datagrams rebuilt and groups that could not be.
	FEC              string `json:"fec,omitempty"`
	FECRepair        uint64 `json:"fec_repair_datagrams,omitempty"`
	FECRecovered     uint64 `json:"fec_groups_recovered,omitempty"`
	FECRebuilt       uint64 `json:"fec_datagrams_rebuilt,omitempty"`
	FECUnrecoverable uint64 `json:"fec_groups_unrecoverable,omitempty"`
}

// fecOf is the FEC a camera's counters hold, for /v1/trunks.
func fecOf(tr TrunkTransport, v *atomic.Value) string {
	f, ok := v.Load().(TrunkFEC)
	if tr != TrunkDatagram || !ok {
		return ""
	}
	return f.String()
}

func transportOf(v *atomic.Value) TrunkTransport {
	t, _ := v.Load().(TrunkTransport)
	return t
}

// status lists the core's cameras sorted by name.
func (m *trunkPeerMedia) status() []TrunkCameraStatus {
	return sortedStatus(&m.mu, &m.cams, func(c *trunkEdgeCamera) TrunkCameraStatus {
		return TrunkCameraStatus{
			Name: c.name, Transport: transportOf(&c.transport), Bytes: c.bytes.Load(), Packets: c.packets.Load(),
			Active: c.active.Load(), GOPsCongestion: c.gopsCongestion.Load(), GOPsCap: c.gopsCap.Load(),
			Datagrams: c.datagrams.Load(), DatagramErrors: c.datagramErrors.Load(),
			FEC: fecOf(transportOf(&c.transport), &c.fec), FECRepair: c.fecRepair.Load(),
		}
	})
}

func (m *trunkCoreMedia) status() []TrunkCameraStatus {
	return sortedStatus(&m.mu, &m.cams, func(c *trunkCoreCamera) TrunkCameraStatus {
		return TrunkCameraStatus{
			Name: c.name, Transport: transportOf(&c.transport), Bytes: c.bytes.Load(), Packets: c.packets.Load(),
			Datagrams: c.datagrams.Load(), Lost: c.lost.Load(), Late: c.late.Load(), Malformed: c.malformed.Load(),
			KeyWaits: c.keyWaits.Load(), EdgeSent: c.edgeSent.Load(), Overflow: c.overflow.Load(),
			FEC: fecOf(transportOf(&c.transport), &c.fec), FECRecovered: c.fecRecovered.Load(),
			FECRebuilt: c.fecRebuilt.Load(), FECUnrecoverable: c.fecUnrecoverable.Load(),
		}
	})
}

// sortedStatus is the status of each of *cams, sorted by name. The map
// (set lazily) is read under mu.
func sortedStatus[C any](mu *sync.Mutex, cams *map[string]C, status func(C) TrunkCameraStatus) []TrunkCameraStatus {
	mu.Lock()
	defer mu.Unlock()
	out := make([]TrunkCameraStatus, 0, len(*cams))
	for _, c := range *cams {
		out = append(out, status(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

var (
	descTrunkCamBytes  = prometheus.NewDesc("cordon_trunk_camera_bytes_total", "Media bytes of one camera received through the trunk (datagram headers included).", []string{"trunk", "camera", "transport"}, nil)
	descTrunkDgLost    = prometheus.NewDesc("cordon_trunk_datagram_packets_lost_total", "Packets of a datagram camera lost on the trunk (gaps in the edge's numbering); each loss makes readers skip to the next keyframe.", []string{"trunk", "camera"}, nil)
	descTrunkKeyWaits  = prometheus.NewDesc("cordon_trunk_keyframe_waits_total", "Skips to the next keyframe caused by lost datagrams.", []string{"trunk", "camera"}, nil)
	descTrunkFECRec    = prometheus.NewDesc("cordon_trunk_fec_groups_recovered_total", "Groups of a datagram camera whose lost datagrams the core rebuilt from repair datagrams (FEC).", []string{"trunk", "camera"}, nil)
	descTrunkFECBuilt  = prometheus.NewDesc("cordon_trunk_fec_datagrams_rebuilt_total", "Lost datagrams of a datagram camera the core rebuilt from repair datagrams (FEC).", []string{"trunk", "camera"}, nil)
	descTrunkFECLost   = prometheus.NewDesc("cordon_trunk_fec_groups_unrecoverable_total", "Groups of a datagram camera with FEC that lost more datagrams than their repair could rebuild (or were lost whole).", []string{"trunk", "camera"}, nil)
	descEdgeFECRepair  = prometheus.NewDesc("cordon_trunk_edge_fec_repair_datagrams_total", "Repair (FEC) datagrams of one camera sent to one core.", []string{"core", "camera"}, nil)
	descTrunkDgUnknown = prometheus.NewDesc("cordon_trunk_datagrams_unknown_total", "Datagrams that belong to no current camera, or malformed.", []string{"trunk"}, nil)
	descTrunkQUICLost  = prometheus.NewDesc("cordon_trunk_quic_packets_lost", "QUIC packets declared lost on the trunk's current connections (quic-go's statistics; retransmitted for streams).", []string{"trunk"}, nil)
	descTrunkQUICBytes = prometheus.NewDesc("cordon_trunk_quic_bytes_received", "QUIC bytes received on the trunk's current connections.", []string{"trunk"}, nil)

	descEdgeCamBytes = prometheus.NewDesc("cordon_trunk_edge_camera_bytes_total", "Media bytes of one camera sent to one core.", []string{"core", "camera"}, nil)
	descEdgeGOPs     = prometheus.NewDesc("cordon_trunk_edge_gops_dropped_total", "Whole GOPs a camera dropped towards one core (skipped to the next keyframe): the trunk could not keep up (congestion) or was over max_bitrate (cap).", []string{"core", "camera", "reason"}, nil)
	descEdgeDgrams   = prometheus.NewDesc("cordon_trunk_edge_datagrams_total", "Datagrams of one camera sent to one core.", []string{"core", "camera"}, nil)
	descEdgeConns    = prometheus.NewDesc("cordon_trunk_edge_connections", "QUIC connections of this core to the edge (its trunk's connections).", []string{"core"}, nil)
	descEdgeCameras  = prometheus.NewDesc("cordon_trunk_edge_cameras", "Cameras one core is reading through the trunk now.", []string{"core"}, nil)
	descEdgeCapOver  = prometheus.NewDesc("cordon_trunk_edge_cap_over", "1 while the trunk to this core is over its max_bitrate (cameras drop GOPs).", []string{"core"}, nil)
	descEdgeCapEps   = prometheus.NewDesc("cordon_trunk_edge_cap_episodes_total", "Times the trunk to this core went over its max_bitrate.", []string{"core"}, nil)
	descEdgeCapBPS   = prometheus.NewDesc("cordon_trunk_edge_max_bitrate", "The max_bitrate applied to this core's trunk, in bits per second (0: none).", []string{"core"}, nil)
	descEdgeRTT      = prometheus.NewDesc("cordon_trunk_edge_rtt_seconds", "Smoothed RTT of this core's (oldest) QUIC connection.", []string{"core"}, nil)
	descEdgeLost     = prometheus.NewDesc("cordon_trunk_edge_quic_packets_lost", "QUIC packets declared lost on this core's current connections.", []string{"core"}, nil)
	descEdgeSent     = prometheus.NewDesc("cordon_trunk_edge_quic_bytes_sent", "QUIC bytes sent on this core's current connections (retransmissions included).", []string{"core"}, nil)
)

var trunkMediaDescs = []*prometheus.Desc{descTrunkCamBytes, descTrunkDgLost, descTrunkKeyWaits, descTrunkFECRec, descTrunkFECBuilt, descTrunkFECLost, descEdgeFECRepair, descTrunkDgUnknown, descTrunkQUICLost, descTrunkQUICBytes,
	descEdgeCamBytes, descEdgeGOPs, descEdgeDgrams, descEdgeConns, descEdgeCameras, descEdgeCapOver, descEdgeCapEps, descEdgeCapBPS, descEdgeRTT, descEdgeLost, descEdgeSent}

// collectTrunkMedia exports the per-camera and QUIC metrics of st.
func collectTrunkMedia(ch chan<- prometheus.Metric, st TrunksStatus) {
	for _, t := range st.Trunks {
		ch <- prometheus.MustNewConstMetric(descTrunkDgUnknown, prometheus.CounterValue, float64(t.DatagramsUnknown), t.Name)
		ch <- prometheus.MustNewConstMetric(descTrunkQUICLost, prometheus.GaugeValue, float64(t.PacketsLost), t.Name)
		ch <- prometheus.MustNewConstMetric(descTrunkQUICBytes, prometheus.GaugeValue, float64(t.BytesReceived), t.Name)
		for _, c := range t.CameraStats {
			ch <- prometheus.MustNewConstMetric(descTrunkCamBytes, prometheus.CounterValue, float64(c.Bytes), t.Name, c.Name, string(c.Transport))
			if c.Transport == TrunkDatagram {
				ch <- prometheus.MustNewConstMetric(descTrunkDgLost, prometheus.CounterValue, float64(c.Lost), t.Name, c.Name)
				ch <- prometheus.MustNewConstMetric(descTrunkKeyWaits, prometheus.CounterValue, float64(c.KeyWaits), t.Name, c.Name)
				if c.FEC != "" && c.FEC != "off" {
					ch <- prometheus.MustNewConstMetric(descTrunkFECRec, prometheus.CounterValue, float64(c.FECRecovered), t.Name, c.Name)
					ch <- prometheus.MustNewConstMetric(descTrunkFECBuilt, prometheus.CounterValue, float64(c.FECRebuilt), t.Name, c.Name)
					ch <- prometheus.MustNewConstMetric(descTrunkFECLost, prometheus.CounterValue, float64(c.FECUnrecoverable), t.Name, c.Name)
				}
			}
		}
	}
	if st.Edge == nil {
		return
	}
	for _, core := range st.Edge.Cores {
		fp := core.Fingerprint
		over := 0.0
		if core.CapOver {
			over = 1
		}
		ch <- prometheus.MustNewConstMetric(descEdgeConns, prometheus.GaugeValue, float64(core.Connections), fp)
		ch <- prometheus.MustNewConstMetric(descEdgeCameras, prometheus.GaugeValue, float64(core.Cameras), fp)
		ch <- prometheus.MustNewConstMetric(descEdgeCapOver, prometheus.GaugeValue, over, fp)
		ch <- prometheus.MustNewConstMetric(descEdgeCapEps, prometheus.CounterValue, float64(core.CapEpisodes), fp)
		ch <- prometheus.MustNewConstMetric(descEdgeCapBPS, prometheus.GaugeValue, float64(core.MaxBitrate), fp)
		ch <- prometheus.MustNewConstMetric(descEdgeRTT, prometheus.GaugeValue, core.RTT.Seconds(), fp)
		ch <- prometheus.MustNewConstMetric(descEdgeLost, prometheus.GaugeValue, float64(core.PacketsLost), fp)
		ch <- prometheus.MustNewConstMetric(descEdgeSent, prometheus.GaugeValue, float64(core.BytesSent), fp)
		for _, c := range core.CameraStats {
			ch <- prometheus.MustNewConstMetric(descEdgeCamBytes, prometheus.CounterValue, float64(c.Bytes), fp, c.Name)
			ch <- prometheus.MustNewConstMetric(descEdgeGOPs, prometheus.CounterValue, float64(c.GOPsCongestion), fp, c.Name, "congestion")
			ch <- prometheus.MustNewConstMetric(descEdgeGOPs, prometheus.CounterValue, float64(c.GOPsCap), fp, c.Name, "cap")
			ch <- prometheus.MustNewConstMetric(descEdgeDgrams, prometheus.CounterValue, float64(c.Datagrams), fp, c.Name)
			if c.FEC != "" && c.FEC != "off" {
				ch <- prometheus.MustNewConstMetric(descEdgeFECRepair, prometheus.CounterValue, float64(c.FECRepair), fp, c.Name)
			}
		}
	}
}

// refuse is write's answer to a packet the output cannot take: the stream
// skips the reader to the next keyframe. Each refusal is one GOP dropped
// (counted by reason): the rest of the GOP under way, or, when the
// output was already skipping, the whole GOP that keyframe starts (while
// skipping, the stream writes nothing but keyframes).
func (o *trunkOutput) refuse(why error) (bool, uint64, error) {
	o.skipping = true
	if why == errTrunkCap {
		o.cam.gopsCap.Add(1)
	} else {
		o.cam.gopsCongestion.Add(1)
	}
	return true, 1, why
}

// trunkWriter is what trunkOutput.run writes to: the camera's QUIC stream,
// or a trunkDatagramWriter.
type trunkWriter interface {
	Write([]byte) (int, error)
	SetWriteDeadline(time.Time) error
}

// mediaFor sets out's counters and cap for a play request, and returns
// the answer to fill in and what run writes to.
func (e *trunkEdge) mediaFor(out *trunkOutput, conn *quic.Conn, st *quic.Stream, peer *trunkPeer, req trunkRequest, log *slog.Logger) (trunkAnswer, trunkWriter) {
	out.cam = peer.media.camera(req.Camera)
	out.limit = peer.media.limiter(e.maxBitrate, req.MaxBitrate, log)
	if req.Transport != string(TrunkDatagram) || !conn.ConnectionState().SupportsDatagrams.Remote {
		out.cam.transport.Store(TrunkStream)
		out.ages = req.Ages
		return trunkAnswer{}, st
	}
	out.cam.transport.Store(TrunkDatagram)
	id := peer.media.datagramID()
	var sender datagramSender = conn
	if drop := e.p.testDatagramLoss; drop != nil {
		sender = lossySender{conn, drop}
	}
	w := &trunkDatagramWriter{conn: sender, id: id, cam: out.cam}
	ans := trunkAnswer{Datagram: id}
	fec := TrunkFEC{Off: true}
	if req.FEC != nil {
		// What the core asked, within the bounds (the core checks
		// them; an edge does not trust a core to either).
		f := TrunkFEC{Data: req.FEC.Data, Parity: req.FEC.Parity}
		if f.check() == nil {
			fec = f
			w.fec = &fecEncoder{f: f}
			ans.FEC = &trunkFECWire{Data: f.Data, Parity: f.Parity}
		} else {
			log.Warn("core asked for an FEC out of bounds; the camera's datagrams carry no repair", "camera", req.Camera, "data", req.FEC.Data, "parity", req.FEC.Parity)
		}
	}
	out.cam.fec.Store(fec)
	return ans, w
}

// datagramSender sends one datagram (a *quic.Conn).
type datagramSender interface{ SendDatagram([]byte) error }

// lossySender is a datagramSender that loses what drop says (tests).
type lossySender struct {
	datagramSender
	drop func([]byte) bool
}

func (l lossySender) SendDatagram(b []byte) error {
	if l.drop(b) {
		return nil
	}
	return l.datagramSender.SendDatagram(b)
}

// maxTrunkBatch bounds the frames run writes at once.
const maxTrunkBatch = 64 << 10

// gather takes frame f off the queue with the frames queued behind it
// (up to maxTrunkBatch bytes), so that run writes them at once: one
// write per burst rather than per access unit. It returns the bytes to
// write, the packets they hold and their RTP bytes; the bytes are valid
// until the next gather.
func (o *trunkOutput) gather(f trunkFrame) ([]byte, uint64, uint64) {
	o.queued.Add(-int64(len(f.b)))
	o.headAt.Store(f.at)
	packets, payload := f.packets, f.payload
	if len(o.q) == 0 {
		o.hold(f)
		return f.b, packets, payload
	}
	buf := append(o.buf[:0], f.b...)
	f.release()
	for len(buf) < maxTrunkBatch {
		select {
		case nf := <-o.q:
			o.headAt.Store(nf.at)
			o.queued.Add(-int64(len(nf.b)))
			buf = append(buf, nf.b...)
			packets += nf.packets
			payload += nf.payload
			nf.release()
			continue
		default:
		}
		break
	}
	o.buf = buf
	o.hold(trunkFrame{})
	return buf, packets, payload
}

// hold keeps f's buffer until the next gather (run writes it), and
// releases the one it held.
func (o *trunkOutput) hold(f trunkFrame) {
	o.held.release()
	o.held = f
}

// trunkFrame is queued packet frames (one packet, or a video access
// unit's packets) and when they were queued.
type trunkFrame struct {
	b       []byte // the frames (a trunkFramePool buffer, or nil)
	pool    *[]byte
	packets uint64
	payload uint64 // RTP bytes
	at      int64  // unix ns
	ts      uint32 // the RTP timestamp of the access unit
}

// trunkFramePool holds the buffers of queued frames.
var trunkFramePool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// appendPacket appends packet pkt (n bytes marshalled) of media i as a
// frame: an aged frame when age is positive (whole microseconds).
func (f *trunkFrame) appendPacket(i int, pkt *rtp.Packet, n int, age time.Duration) error {
	if f.pool == nil {
		f.pool = trunkFramePool.Get().(*[]byte)
		f.b = (*f.pool)[:0]
	}
	off, head := len(f.b), 6
	var b []byte
	if us := age.Microseconds(); us > 0 {
		head = 10
		b = appendFrameHeader(slices.Grow(f.b, head+n), framePacketAged, 5+n)
		b = append(b, byte(i))
		b = binary.BigEndian.AppendUint32(b, uint32(min(us, math.MaxUint32)))
	} else {
		b = appendFrameHeader(slices.Grow(f.b, head+n), framePacket, 1+n)
		b = append(b, byte(i))
	}
	b = b[:off+head+n]
	if _, err := pkt.MarshalTo(b[off+head:]); err != nil {
		f.b = b[:off]
		return err
	}
	f.b = b
	f.packets++
	f.payload += uint64(n)
	return nil
}

// minTrunkAge is the age from which the edge sends a packet as aged
// (framePacketAged): the GOP cache's replays, not live packets.
const minTrunkAge = 20 * time.Millisecond

// ageOf is how long ago packet stamp ntp was live, when the core asked
// for ages and it is at least minTrunkAge; 0 otherwise.
func (o *trunkOutput) ageOf(ntp time.Time) time.Duration {
	if !o.ages || ntp.IsZero() {
		return 0
	}
	if age := time.Since(ntp); age >= minTrunkAge {
		return age
	}
	return 0
}

// release returns f's buffer to the pool.
func (f *trunkFrame) release() {
	if f.pool != nil && cap(f.b) <= 256<<10 {
		*f.pool = f.b[:0]
		trunkFramePool.Put(f.pool)
	}
	f.pool, f.b = nil, nil
}

// maxTrunkLag is how far behind a camera's trunk stream may fall before
// the camera drops GOPs instead of queuing more: a trunk that cannot keep
// up shows as skipped GOPs within this, never as seconds of queued video
// (limits.reader_queue_bytes, sized for recorders on a LAN, would hold
// several seconds of a camera).
const maxTrunkLag = 500 * time.Millisecond

// errTrunkLag is a packet refused because the trunk is too far behind.
var errTrunkLag = errors.New("trunk is more than maxTrunkLag behind")

// lagging reports whether frames have waited in the queue for longer
// than maxTrunkLag (measured on the last frame run took: the frames
// behind it are younger). An empty queue is never behind.
func (o *trunkOutput) lagging() bool {
	if len(o.q) == 0 {
		o.headAt.Store(time.Now().UnixNano()) // the next frame is the head
		return false
	}
	return time.Now().UnixNano()-o.headAt.Load() > int64(maxTrunkLag)
}

package proxy

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"golang.org/x/net/ipv4"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// Batched output to UDP readers.
//
// gortsplib writes each packet of a UDP reader with one sendto, from the
// session's writer goroutine, on the server's RTP socket. udpBatch writes a
// reader's packets with sendmmsg instead, many datagrams per system call,
// on that very socket (the proxy opens it for gortsplib through
// Server.ListenPacket and keeps it, see udpSockets and
// docs/upstream/gortsplib-udp-sockets.md), so that the reader still gets
// them from the server port its SETUP answer named. What is batched is what
// is ready: a live frame's packets (sent when the frame ends, as over TCP),
// or whatever part of a cached GOP its pacing (reader_udp.go) has made due.
//
// gortsplib's RTCP sender reports come from the packets it writes; these
// packets bypass it, so udpBatch sends the reports itself on the server's
// RTCP socket, every srInterval per media at the end of a frame, stating
// the frame's own wall-clock time (timeline.go), and reads the reader's
// receiver reports for reported_lost_packets.

// udpBatchMax is the most datagrams one sendmmsg carries.
const udpBatchMax = 64

// udpMaxPacket is the largest RTP packet sent over UDP: gortsplib's
// default Server.MaxPacketSize (the proxy does not change it), which the
// per-packet path enforces too.
const udpMaxPacket = 1472

// udpFirstSR is how long after its first packet a media gets its first
// RTCP sender report.
const udpFirstSR = 100 * time.Millisecond

// udpBatchCalls counts the sendmmsg calls of every batched UDP reader
// (BenchmarkFanOutUDP reports packets per call).
var udpBatchCalls atomic.Uint64

var errUDPTooBig = errors.New("proxy: RTP packet larger than a UDP datagram")

// udpSockets are the server's RTP and RTCP sockets, as the proxy opened them
// for gortsplib (Server.ListenPacket).
type udpSockets struct {
	rtp, rtcp *net.UDPConn
	rtpB      *ipv4.PacketConn // rtp, for WriteBatch (sendmmsg works on IPv6 sockets too)
}

// udpMedia is one media a UDP reader set up: its SSRC and where its RTP and
// RTCP go, and what its sender reports count.
type udpMedia struct {
	m         *description.Media
	ssrc      uint32
	rtp, rtcp *net.UDPAddr
	sr        srState
	lost      atomic.Uint64 // the reader's last cumulative lost count
}

// udpBatch collects a UDP reader's packets and sends them with sendmmsg.
// Only one goroutine uses it at a time (udpOutput sees to it).
type udpBatch struct {
	socks   *udpSockets
	medias  []*udpMedia
	r       *reader
	timeout time.Duration

	msgs  []ipv4.Message // msgs[:n] are ready to go
	bufs  [][]byte
	n     int
	srs   []udpSR // sender reports to send once msgs are
	ts    uint32  // the timestamp of the video frame in msgs
	hasTS bool
}

type udpSR struct {
	raw  []byte
	addr *net.UDPAddr
}

// newUDPBatch returns the batched output of a reader that set up medias
// over UDP from ip, with these client ports and SSRCs; ok is false when
// one of its medias lacks either (gortsplib puts an SSRC in the SETUP
// answer only for a single-format media): the per-packet path serves it.
func newUDPBatch(socks *udpSockets, r *reader, ip net.IP, zone string, medias []*description.Media,
	ports map[*description.Media][2]int, ssrcs map[*description.Media]uint32, timeout time.Duration) (*udpBatch, bool) {
	if socks == nil || socks.rtpB == nil || len(medias) == 0 {
		return nil, false
	}
	b := &udpBatch{socks: socks, r: r, timeout: timeout}
	for _, m := range medias {
		p, okp := ports[m]
		s, oks := ssrcs[m]
		if !okp || !oks {
			return nil, false
		}
		b.medias = append(b.medias, &udpMedia{m: m, ssrc: s,
			rtp:  &net.UDPAddr{IP: ip, Zone: zone, Port: p[0]},
			rtcp: &net.UDPAddr{IP: ip, Zone: zone, Port: p[1]}})
	}
	b.msgs = make([]ipv4.Message, udpBatchMax)
	b.bufs = make([][]byte, udpBatchMax)
	for i := range b.msgs {
		b.bufs[i] = make([]byte, udpMaxPacket)
		b.msgs[i].Buffers = [][]byte{nil}
	}
	return b, true
}

func (b *udpBatch) media(m *description.Media) *udpMedia {
	for _, um := range b.medias {
		if um.m == m {
			return um
		}
	}
	return nil
}

// full reports whether no more packet fits before a flush.
func (b *udpBatch) full() bool { return b.n == len(b.msgs) }

// frameEnds reports whether pkt of t starts a new video frame while
// another one's packets wait (they go first).
func (b *udpBatch) frameEnds(t *rebuild.Track, pkt *rtp.Packet) bool {
	return b.n > 0 && b.hasTS && isVideo(t) && pkt.Timestamp != b.ts
}

func isVideo(t *rebuild.Track) bool { return t.Media().Type == description.MediaTypeVideo }

// add marshals pkt, with the reader's SSRC, as the next datagram (the
// caller flushes first when full). An RTCP sender report is due at the end
// of a frame (or after audio) once srInterval has passed for the media.
func (b *udpBatch) add(t *rebuild.Track, pkt *rtp.Packet, ntp time.Time) error {
	um := b.media(t.Media())
	if um == nil {
		return nil // the reader did not set this media up
	}
	cp := *pkt
	cp.SSRC = um.ssrc
	size := cp.MarshalSize()
	if size > udpMaxPacket {
		return errUDPTooBig
	}
	buf := b.bufs[b.n][:size]
	if _, err := cp.MarshalTo(buf); err != nil {
		return err
	}
	b.msgs[b.n].Buffers[0], b.msgs[b.n].Addr = buf, um.rtp
	b.n++
	video := isVideo(t)
	if video {
		b.ts, b.hasTS = pkt.Timestamp, true
	}
	um.sr.packets++
	um.sr.octets += uint32(len(pkt.Payload))
	if !video || pkt.Marker {
		now := time.Now()
		if um.sr.last.IsZero() {
			// Not with the first frame: the reader learns the SSRC from
			// the first RTP packet it processes, and a report that wins
			// the race to it (another socket) is ignored.
			um.sr.last = now.Add(udpFirstSR - srInterval)
		}
		if now.Sub(um.sr.last) >= srInterval {
			um.sr.last = now
			sr := rtcp.SenderReport{SSRC: um.ssrc, NTPTime: ntpTime(ntp), RTPTime: pkt.Timestamp,
				PacketCount: um.sr.packets, OctetCount: um.sr.octets}
			if raw, err := sr.Marshal(); err == nil {
				b.srs = append(b.srs, udpSR{raw, um.rtcp})
			}
		}
	}
	return nil
}

// flush sends what add collected, then the sender reports due. With
// dontWait (the stream's goroutine, under its lock) a socket that cannot
// take more now makes the rest dropped with full set; otherwise it waits
// up to the write timeout. A datagram the kernel refuses is dropped (err
// says why) and the rest still go. Sent packets are counted in the reader.
func (b *udpBatch) flush(dontWait bool) (dropped uint64, full bool, err error) {
	msgs := b.msgs[:b.n]
	b.n, b.hasTS = 0, false
	flags := 0
	if dontWait {
		flags = syscall.MSG_DONTWAIT
	}
	if len(msgs) > 0 {
		b.socks.rtp.SetWriteDeadline(time.Now().Add(b.timeout))
	}
	for len(msgs) > 0 {
		n, werr := b.socks.rtpB.WriteBatch(msgs, flags)
		udpBatchCalls.Add(1)
		n = min(max(n, 0), len(msgs))
		var bytes uint64
		for _, m := range msgs[:n] {
			bytes += uint64(len(m.Buffers[0]))
		}
		b.r.packets.Add(uint64(n))
		b.r.bytes.Add(bytes)
		msgs = msgs[n:]
		switch {
		case werr == nil && n > 0:
			continue
		case werr == nil:
			werr = errors.New("proxy: sendmmsg sent nothing")
		case errors.Is(werr, syscall.EAGAIN):
			dropped += uint64(len(msgs))
			full, err = true, werr
			msgs = nil
			continue
		}
		if len(msgs) > 0 {
			dropped++
			msgs = msgs[1:]
		}
		err = werr
	}
	b.sendReports()
	return dropped, full, err
}

// sendReports writes the sender reports due, from the server's RTCP port.
func (b *udpBatch) sendReports() {
	if len(b.srs) == 0 {
		return
	}
	b.socks.rtcp.SetWriteDeadline(time.Now().Add(b.timeout))
	for _, sr := range b.srs {
		b.socks.rtcp.WriteTo(sr.raw, sr.addr) //nolint:errcheck // a lost report is replaced srInterval later
	}
	clear(b.srs)
	b.srs = b.srs[:0]
}

// watchReports reads the reader's RTCP receiver reports: the cumulative
// lost count of each of its medias (gortsplib's own count needs packets
// written through it). It must be called before the session plays.
func (b *udpBatch) watchReports(ss *gortsplib.ServerSession) {
	ss.OnPacketRTCPAny(func(m *description.Media, pkt rtcp.Packet) {
		rr, ok := pkt.(*rtcp.ReceiverReport)
		um := b.media(m)
		if !ok || um == nil {
			return
		}
		for _, rep := range rr.Reports {
			if rep.SSRC == um.ssrc {
				um.lost.Store(uint64(rep.TotalLost))
			}
		}
	})
}

// reportedLost sums what the reader said it lost (a negative count, from
// duplicates, counts as 0; see reportedLost in server_session.go).
func (b *udpBatch) reportedLost() uint64 {
	var n uint64
	for _, um := range b.medias {
		if l := um.lost.Load(); l < 0x800000 {
			n += l
		}
	}
	return n
}

package proxy

import (
	"net"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
)

// readerSession is one RTSP reader's gortsplib session (its user data): the
// camera it reads, the reader-facing stream it set up on, and what each of
// its SETUPs was granted. It is the one place that knows what a reader
// asked for, and it builds the reader's output at PLAY.
//
// gortsplib tells which medias a session set up (ServerSession.Medias, in
// SETUP order) and its transport, but not the interleaved channel of each
// media, which frame-batched output must write on: that is only in the
// Transport header of the SETUP answer, read here in OnResponse, where
// the media just set up is the last of Medias. (The SSRC is in the same
// header.) Likewise gortsplib says nothing when the PLAY answer is out, which
// frame-batched media must follow: the batch writer waits for the
// connection's next write after OnPlay (trackedConn.armPlay), which is that
// answer, because gortsplib writes nothing else on the connection in
// between (for TCP, its own writer starts after the answer).
type readerSession struct {
	ss     *gortsplib.ServerSession
	cam    *camera
	stream *gortsplib.ServerStream
	r      *reader

	// The interleaved channel and SSRC of each media set up over TCP
	// (conn goroutine, before PLAY).
	chans map[*description.Media]uint8
	ssrcs map[*description.Media]uint32
	// The client ports of each media set up over UDP.
	ports map[*description.Media][2]int

	// Where the reader starts on each of its medias (in Medias order),
	// set in OnPlay for the answer's RTP-Info (conn goroutine).
	starts []rtpStart
}

func newReaderSession(ss *gortsplib.ServerSession, cam *camera, st *gortsplib.ServerStream, user, remote string) *readerSession {
	rs := &readerSession{
		ss: ss, cam: cam, stream: st,
		r:     &reader{user: user, remote: remote, since: time.Now(), close: ss.Close},
		chans: map[*description.Media]uint8{},
		ssrcs: map[*description.Media]uint32{},
		ports: map[*description.Media][2]int{},
	}
	return rs
}

// setupAnswered records the interleaved channel and SSRC of the media a
// successful TCP SETUP answer (res) granted.
func (rs *readerSession) setupAnswered(res *base.Response) {
	if res.StatusCode != base.StatusOK {
		return
	}
	var tr headers.Transport
	if tr.Unmarshal(res.Header["Transport"]) != nil {
		return
	}
	tcp := tr.Protocol == headers.TransportProtocolTCP && tr.InterleavedIDs != nil
	udp := tr.Protocol == headers.TransportProtocolUDP && tr.ClientPorts != nil &&
		(tr.Delivery == nil || *tr.Delivery == headers.TransportDeliveryUnicast)
	ms := rs.ss.Medias()
	if len(ms) == 0 || !tcp && !udp {
		return
	}
	m := ms[len(ms)-1]
	if tcp {
		rs.chans[m] = uint8(tr.InterleavedIDs[0])
	} else {
		rs.ports[m] = *tr.ClientPorts
	}
	if tr.SSRC != nil {
		rs.ssrcs[m] = *tr.SSRC
	}
}

// output builds the reader's output at PLAY: frame-batched for a plain-TCP
// reader whose every media has its channel, gortsplib's per-packet path
// otherwise.
func (rs *readerSession) output(conn *gortsplib.ServerConn, p *Proxy, udp *udpSockets) output {
	r := rs.r
	r.reportedLost = func() uint64 { return reportedLost(rs.ss) }
	if rs.ss.Transport().Protocol == gortsplib.ProtocolUDP {
		o := newUDPOutput(rs.ss, r, rs.cam, p.udpQueue)
		if !p.batching {
			return o
		}
		// Where gortsplib sends: the client ports, at the address of the
		// connection that set the session up (this one).
		ra, ok := conn.NetConn().RemoteAddr().(*net.TCPAddr)
		if !ok {
			return o
		}
		if b, ok := newUDPBatch(udp, r, ra.IP, ra.Zone, rs.ss.Medias(), rs.ports, rs.ssrcs, p.writeTmo); ok {
			o.b = b
			b.watchReports(rs.ss)
			r.reportedLost = b.reportedLost
		}
		return o
	}
	// (SAVP over RTSPS: gortsplib encrypts each packet with SRTP itself.)
	tc, ok := batchConnOf(conn.NetConn())
	if tr := rs.ss.Transport(); !ok || !p.batching || tr.Protocol != gortsplib.ProtocolTCP ||
		tr.Profile != headers.TransportProfileAVP || len(rs.chans) != len(rs.ss.Medias()) {
		return &packetOutput{ss: rs.ss, r: r}
	}
	w := newBatchWriter(tc, p.writeTmo, p.readerQueue, p.outBudget, &r.packets, &r.bytes, func(err error) {
		p.log.Debug("reader write failed; closing its session", "remote", r.remote, "error", err)
		r.close()
	})
	w.delay = func(d time.Duration) { p.frameDelay.Observe(d.Seconds()) }
	w.remote = r.remote
	return newBatchOutput(rs.ss, w, rs.chans, rs.ssrcs)
}

// reportedLost sums the packets a reader said, in its RTCP receiver
// reports, it did not receive (RFC 3550 cumulative lost, per track; a
// negative count, from duplicates, counts as 0).
func reportedLost(ss *gortsplib.ServerSession) uint64 {
	var n uint64
	for _, m := range ss.Stats().Medias {
		for _, f := range m.Formats {
			if l := f.OutboundRTPPacketsReportedLost; l < 0x800000 {
				n += l
			}
		}
	}
	return n
}

// playAnswered completes the RTP-Info header of a successful PLAY answer
// (res): gortsplib writes only each track's URL, because the proxy writes
// to sessions and not through the ServerStream it would take them from.
// Each entry gets the sequence number and RTP time of the reader's first
// packet of that track (stream.rtpInfo), which players use to start their
// clocks and to know which packets belong to this PLAY.
func (rs *readerSession) playAnswered(res *base.Response) {
	if res.StatusCode != base.StatusOK || rs.starts == nil {
		return
	}
	var ri headers.RTPInfo
	if ri.Unmarshal(res.Header["RTP-Info"]) != nil || len(ri) != len(rs.starts) {
		return
	}
	for i, e := range ri {
		if st := rs.starts[i]; st.ok {
			e.SequenceNumber, e.Timestamp = &st.seq, &st.ts
		}
	}
	res.Header["RTP-Info"] = ri.Marshal()
	rs.starts = nil
}

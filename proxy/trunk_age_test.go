package proxy

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// stampOutput records the RTP time and the wall-clock stamp of each
// packet a stream writes to it.
type stampOutput struct {
	mu  sync.Mutex
	got []stampedPacket
}

type stampedPacket struct {
	ts  uint32
	ntp time.Time
}

func (o *stampOutput) playing() bool { return true }
func (o *stampOutput) batched() bool { return false }

func (o *stampOutput) stop() {}
func (o *stampOutput) write(_ *rebuild.Track, pkt *rtp.Packet, _, ntp time.Time) (bool, uint64, error) {
	o.mu.Lock()
	o.got = append(o.got, stampedPacket{pkt.Timestamp, ntp})
	o.mu.Unlock()
	return false, 0, nil
}

// spread is how far apart the packets' stamps put the first packet's RTP
// time (0 when every stamp is on one line: no jump back or forth).
func (o *stampOutput) spread() (time.Duration, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lo, hi time.Time
	for i, p := range o.got {
		base := p.ntp.Add(-time.Duration(int64(int32(p.ts-o.got[0].ts)) * int64(time.Second) / 90000))
		if i == 0 || base.Before(lo) {
			lo = base
		}
		if i == 0 || base.After(hi) {
			hi = base
		}
	}
	return hi.Sub(lo), len(o.got)
}

// TestTrunkAges: a core reader that is there when the edge replays its
// GOP cache (a burst of packets up to a second old) gets stamps on one
// line with the live packets that follow, when the packets carry their
// age (the edge's aged frames); without ages, the burst's packets are all
// stamped "now" and the line then jumps back by the GOP's age.
func TestTrunkAges(t *testing.T) {
	edgeK, coreK := newTrunkKeys(t, "edge"), newTrunkKeys(t, "core")
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: goodSPS, PPS: goodPPS}
	sdp, err := (&description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ready := map[string]chan struct{}{"aged": make(chan struct{}), "plain": make(chan struct{})}
	addr := startFakeEdge(t, edgeK, coreK.fp, []string{"aged", "plain"}, func(name string, st *quic.Stream) {
		writeJSONFrame(st, trunkAnswer{SDP: string(sdp)})
		<-ready[name]
		enc, err := forma.CreateEncoder()
		if err != nil {
			return
		}
		idr := append([]byte{0x65, 0x88, 0x84}, make([]byte, 200)...)
		const burst, step = 25, 40 * time.Millisecond
		for k := range 2 * burst {
			pkts, err := enc.Encode([][]byte{goodSPS, goodPPS, idr}) // (every access unit a keyframe)
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				pkt.Timestamp = 1000 + uint32(k)*3600
				f, _ := packetFrame(0, pkt)
				if age := time.Duration(burst-k) * step; k < burst && name == "aged" {
					b, _ := pkt.Marshal()
					f = append(appendFrameHeader(nil, framePacketAged, 5+len(b)), 0)
					f = append(binary.BigEndian.AppendUint32(f, uint32(age.Microseconds())), b...)
				}
				if _, err := st.Write(f); err != nil {
					return
				}
			}
			if k >= burst {
				time.Sleep(step) // (live)
			}
		}
		time.Sleep(time.Second)
	})
	clog, _ := newLog(t)
	ccfg := coreConfig(addr, coreK, edgeK.fp, "aged", "plain")
	ccfg.Trunks[0].AlwaysOn = true
	core := startProxy(t, ccfg, clog)
	spread := map[string]time.Duration{}
	for _, name := range []string{"aged", "plain"} {
		waitFor(t, name+" up", 10*time.Second, func() bool { return cameraState(core, "site-a/"+name) == stateUp })
		c := core.camera("site-a/" + name)
		sst, err := c.streamFor(core.servers[0], 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		out := &stampOutput{}
		r := &reader{user: "test", out: out, close: func() {}}
		if err := c.addReader(r, sst); err != nil {
			t.Fatal(err)
		}
		close(ready[name])
		waitFor(t, name+": the burst and the live packets", 10*time.Second, func() bool { _, n := out.spread(); return n >= 50 })
		var n int
		spread[name], n = out.spread()
		t.Logf("%s: %d packets, their stamps place the first one within %s", name, n, spread[name].Round(time.Millisecond))
	}
	if spread["aged"] > 150*time.Millisecond {
		t.Errorf("with ages, the stamps moved by %s; want one line", spread["aged"])
	}
	if spread["plain"] < 500*time.Millisecond {
		t.Errorf("without ages, the stamps moved by only %s: the test does not show the jump it guards against", spread["plain"])
	}
}

// TestTrunkAgedFrame: the edge writes a replayed packet (older than
// minTrunkAge, to a core that asked for ages) as an aged frame, which
// the core reads back with its age; a live one as a plain packet frame.
func TestTrunkAgedFrame(t *testing.T) {
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 9}, Payload: []byte{1, 2, 3}}
	o := &trunkOutput{ages: true}
	now := time.Now()
	if a := o.ageOf(now.Add(-1500 * time.Millisecond)); a < 1500*time.Millisecond || a > 2500*time.Millisecond {
		t.Errorf("age of a packet live 1.5 s ago: %s", a)
	}
	if a := o.ageOf(now); a != 0 {
		t.Errorf("age of a live packet: %s", a)
	}
	if a := (&trunkOutput{}).ageOf(now.Add(-time.Second)); a != 0 {
		t.Errorf("age sent to a core that did not ask: %s", a)
	}
	var f trunkFrame
	for _, age := range []time.Duration{1500 * time.Millisecond, 0, time.Hour} {
		if err := f.appendPacket(0, pkt, pkt.MarshalSize(), age); err != nil {
			t.Fatal(err)
		}
	}
	if f.packets != 3 || f.payload != 3*uint64(pkt.MarshalSize()) || f.b[0] != framePacketAged || f.b[10+15] != framePacket {
		t.Fatalf("frames: %d packets, %d bytes of RTP, types %q %q", f.packets, f.payload, f.b[0], f.b[25])
	}
	r := bytes.NewReader(f.b)
	for i, want := range []time.Duration{1500 * time.Millisecond, 0, 0} { // (an hour is beyond maxTrunkAge: live)
		_, got, age, _, err := readAgedPacket(r, 1)
		if err != nil || age != want || got.SequenceNumber != 7 || !bytes.Equal(got.Payload, pkt.Payload) {
			t.Errorf("frame %d: age %s, %+v, %v", i, age, got, err)
		}
	}
	f.release()
}

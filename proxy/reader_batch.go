package proxy

import (
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// batchOutput is the frame-batched path to a plain-TCP reader (see
// batch_writer.go): packets are framed on the reader's interleaved
// channels, with the SSRCs its SETUP answers gave, one write per frame.
type batchOutput struct {
	ss     *gortsplib.ServerSession
	w      *batchWriter
	medias []batchMedia // the medias the reader set up (a few at most)
}

// batchMedia is one media a batched reader set up: its interleaved RTP
// channel and the SSRC its SETUP answer gave.
type batchMedia struct {
	m    *description.Media
	ch   uint8
	ssrc uint32
}

func newBatchOutput(ss *gortsplib.ServerSession, w *batchWriter, chans map[*description.Media]uint8, ssrcs map[*description.Media]uint32) *batchOutput {
	o := &batchOutput{ss: ss, w: w}
	for m, ch := range chans {
		o.medias = append(o.medias, batchMedia{m: m, ch: ch, ssrc: ssrcs[m]})
	}
	return o
}

// media returns what the reader set up for m.
func (o *batchOutput) media(m *description.Media) (batchMedia, bool) {
	for _, bm := range o.medias {
		if bm.m == m {
			return bm, true
		}
	}
	return batchMedia{}, false
}

var _ output = (*batchOutput)(nil)

func (o *batchOutput) playing() bool { return o.ss.State() == gortsplib.ServerSessionStatePlay }

func (o *batchOutput) write(t *rebuild.Track, pkt *rtp.Packet, arrival, ntp time.Time) (bool, uint64, error) {
	m := t.Media()
	bm, ok := o.media(m)
	if !ok {
		return false, 0, nil // the reader did not set this media up
	}
	video := m.Type == description.MediaTypeVideo
	o.w.arrival = arrival
	ok, dropped, err := o.w.add(pkt, bm.ch, bm.ssrc, ntp, video, !video || pkt.Marker)
	switch {
	case err != nil:
		return false, 0, err
	case !ok:
		return true, dropped, errQueueFull
	}
	return false, 0, nil
}

func (o *batchOutput) stop() { o.w.stop() }

func (o *batchOutput) batched() bool { return true }

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
	ss    *gortsplib.ServerSession
	w     *batchWriter
	chans map[*description.Media]uint8
	ssrcs map[*description.Media]uint32
}

var _ output = (*batchOutput)(nil)

func (o *batchOutput) playing() bool { return o.ss.State() == gortsplib.ServerSessionStatePlay }

func (o *batchOutput) write(t *rebuild.Track, pkt *rtp.Packet, arrival, ntp time.Time) (bool, uint64, error) {
	m := t.Media()
	ch, ok := o.chans[m]
	if !ok {
		return false, 0, nil // the reader did not set this media up
	}
	video := m.Type == description.MediaTypeVideo
	o.w.arrival = arrival
	ok, dropped, err := o.w.add(pkt, ch, o.ssrcs[m], ntp, video, !video || pkt.Marker)
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

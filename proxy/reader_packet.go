package proxy

import (
	"errors"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/rebuild"
)

// packetOutput is gortsplib's per-packet path to a reader (UDP, RTSPS,
// tunnelled, or with per_packet_writes): each packet goes through the
// session's write queue, one write system call each.
type packetOutput struct {
	ss *gortsplib.ServerSession
	r  *reader
}

var _ output = (*packetOutput)(nil)

func (o *packetOutput) playing() bool { return o.ss.State() == gortsplib.ServerSessionStatePlay }

func (o *packetOutput) write(t *rebuild.Track, pkt *rtp.Packet, _, ntp time.Time) (bool, uint64, error) {
	// gortsplib's sender reports extrapolate from the last packet's NTP
	// time: this packet's own keeps them on the track's line even when it
	// is replayed from the GOP cache (timeline.go).
	if err := o.ss.WritePacketRTPWithNTP(t.Media(), pkt, ntp); err != nil {
		var full liberrors.ErrServerWriteQueueFull
		return errors.As(err, &full), 1, err
	}
	o.r.packets.Add(1)
	o.r.bytes.Add(uint64(pkt.MarshalSize()))
	return false, 0, nil
}

func (o *packetOutput) stop() {}

func (o *packetOutput) batched() bool { return false }

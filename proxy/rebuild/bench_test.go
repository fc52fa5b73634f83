//go:build linux

package rebuild

import (
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// benchStream is the SEI fixture as a mode-1 camera sends it (gortsplib's
// packetizer, 1450-byte payloads, with a header extension on every packet),
// and its payload bytes.
func benchStream(b *testing.B) (*description.Session, []*rtp.Packet, int, int) {
	aus := fixtureAUs(b)
	enc := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1}
	if err := enc.Init(); err != nil {
		b.Fatal(err)
	}
	var pkts []*rtp.Packet
	size := 0
	for i, au := range aus {
		ps, err := enc.Encode(au)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range ps {
			p.Timestamp = uint32(i * 3600)
			_ = p.Header.SetExtension(1, []byte{1, 2, 3, 4})
			size += len(p.Payload)
		}
		pkts = append(pkts, ps...)
	}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}}}
	return desc, pkts, size, len(aus)
}

// streamRunner pushes the stream through a fresh track in the given mode.
type streamRunner struct {
	tr   *Track
	pkts []*rtp.Packet
	in   []rtp.Packet
	size int
	naus int
	loop int
}

func newStreamRunner(b *testing.B, mode Mode) *streamRunner {
	desc, pkts, size, naus := benchStream(b)
	return newRunner(b, mode, desc, pkts, size, naus)
}

func newRunner(b *testing.B, mode Mode, desc *description.Session, pkts []*rtp.Packet, size, naus int) *streamRunner {
	plan, err := NewPlan(desc, Config{Mode: mode}, &Counters{})
	if err != nil {
		b.Fatal(err)
	}
	return &streamRunner{tr: plan.Tracks[0], pkts: pkts, in: make([]rtp.Packet, len(pkts)), size: size, naus: naus}
}

// cameraStream is a 2 s GOP at 25 fps as camsim sends it at about
// 2.5 Mbit/s: the parameter sets of camsim's 720p clip, a 145 kB IDR slice
// (about 100 packets), then 49 P-frames of a 4 kB slice padded to 10 kB
// with a filler NAL unit. Slices are random bytes with emulation
// prevention (entropy-coded data looks random); packetized by gortsplib's
// encoders like camsim's.
func cameraStream(b *testing.B, codec videoCodec) (*description.Session, []*rtp.Packet, int, int) {
	params := clipParams(b, codec)
	rng := rand.New(rand.NewPCG(1, 2))
	nal := func(hdr []byte, size int) []byte { return randomNAL(rng, hdr, size) }
	var idrHdr, pHdr, fillerHdr []byte
	if codec == codecH265 {
		idrHdr, pHdr, fillerHdr = []byte{19 << 1, 1}, []byte{1 << 1, 1}, []byte{38 << 1, 1}
	} else {
		idrHdr, pHdr, fillerHdr = []byte{0x65}, []byte{0x41}, []byte{12}
	}
	var aus [][][]byte
	aus = append(aus, append(params[:len(params):len(params)], nal(idrHdr, 145_000)))
	for range 49 {
		slice := nal(pHdr, 4000)
		fill := make([]byte, 10_000-len(slice))
		copy(fill, fillerHdr)
		for i := len(fillerHdr); i < len(fill)-1; i++ {
			fill[i] = 0xff
		}
		fill[len(fill)-1] = 0x80
		aus = append(aus, [][]byte{slice, fill})
	}
	var encode func([][]byte) ([]*rtp.Packet, error)
	var f format.Format
	if codec == codecH265 {
		e := &rtph265.Encoder{PayloadType: 96}
		if err := e.Init(); err != nil {
			b.Fatal(err)
		}
		encode, f = e.Encode, &format.H265{PayloadTyp: 96}
	} else {
		e := &rtph264.Encoder{PayloadType: 96, PacketizationMode: 1}
		if err := e.Init(); err != nil {
			b.Fatal(err)
		}
		encode, f = e.Encode, &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	}
	var pkts []*rtp.Packet
	size := 0
	for i, au := range aus {
		ps, err := encode(au)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range ps {
			p.Timestamp = uint32(i * 3600)
			size += len(p.Payload)
		}
		pkts = append(pkts, ps...)
	}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{f}}}}
	return desc, pkts, size, len(aus)
}

// run pushes the whole stream once (timestamps continue from the last
// loop); sink gets every output packet.
func (r *streamRunner) run(b *testing.B, sink func(*rtp.Packet)) {
	off := uint32(r.loop * r.naus * 3600)
	r.loop++
	for j, p := range r.pkts {
		r.in[j] = *p
		r.in[j].Timestamp += off
		out, _, err := r.tr.Process(&r.in[j])
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range out {
			sink(o)
		}
	}
}

func discard(*rtp.Packet) {}

// udpSink writes every packet to a loopback UDP socket nobody reads (the
// kernel drops what overflows): one syscall per packet per reader, as the
// proxy's reader-facing side does.
func udpSink(b *testing.B) func(*rtp.Packet) {
	rx, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rx.Close() })
	tx, err := net.Dial("udp", rx.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close() })
	buf := make([]byte, 1500)
	return func(p *rtp.Packet) {
		n, err := p.MarshalTo(buf)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = tx.Write(buf[:n])
	}
}

// BenchmarkProcess measures each mode alone (Process only) and with one
// loopback UDP write per output packet (a proxy with one reader). Compare
// with benchstat, or run BenchmarkRebuildVsPassthrough for the ratios.
func BenchmarkProcess(b *testing.B) {
	for _, mode := range []Mode{ModePassthrough, ModeRebuild} {
		for _, udp := range []bool{false, true} {
			name := string(mode)
			if udp {
				name += "+udp"
			}
			b.Run(name, func(b *testing.B) {
				r := newStreamRunner(b, mode)
				sink := discard
				if udp {
					sink = udpSink(b)
				}
				b.ReportAllocs()
				b.SetBytes(int64(r.size))
				b.ResetTimer()
				for range b.N {
					r.run(b, sink)
				}
			})
		}
	}
}

// BenchmarkRebuildVsPassthrough reports, from one run, the CPU seconds per
// camera GB of each mode and the rebuild/passthrough ratios, Process alone
// and with a loopback UDP write per output packet. Each iteration streams
// the fixture 100 times through each of the four set-ups, interleaved so
// machine noise hits all of them alike. Time is the process's CPU time
// (user+system, all threads: garbage collection included), not wall time,
// so other load on the machine does not count.
func BenchmarkRebuildVsPassthrough(b *testing.B) {
	type setup struct {
		r    *streamRunner
		sink func(*rtp.Packet)
		d    time.Duration
	}
	var ss [4]setup
	for i, mode := range []Mode{ModePassthrough, ModeRebuild, ModePassthrough, ModeRebuild} {
		ss[i] = setup{r: newStreamRunner(b, mode), sink: discard}
		if i >= 2 {
			ss[i].sink = udpSink(b)
		}
	}
	const loops = 100
	b.ResetTimer()
	for range b.N {
		for l := 0; l < loops; l++ {
			for i := range ss {
				start := testutil.CPUTime(b)
				ss[i].r.run(b, ss[i].sink)
				ss[i].d += testutil.CPUTime(b) - start
			}
		}
	}
	gb := float64(ss[0].r.size) * loops * float64(b.N) / 1e9
	perGB := func(i int) float64 { return ss[i].d.Seconds() / gb }
	b.ReportMetric(perGB(0), "passthrough-s/GB")
	b.ReportMetric(perGB(1), "rebuild-s/GB")
	b.ReportMetric(perGB(1)/perGB(0), "ratio-process")
	b.ReportMetric(perGB(2), "passthrough+udp-s/GB")
	b.ReportMetric(perGB(3), "rebuild+udp-s/GB")
	b.ReportMetric(perGB(3)/perGB(2), "ratio+udp")
}

// BenchmarkCameraVsPassthrough is BenchmarkRebuildVsPassthrough (Process
// alone) on cameraStream, H.264 and H.265: CPU seconds per camera GB of
// each mode, interleaved, and their ratio.
func BenchmarkCameraVsPassthrough(b *testing.B) {
	for _, codec := range []videoCodec{codecH264, codecH265} {
		name := "h264"
		if codec == codecH265 {
			name = "h265"
		}
		b.Run(name, func(b *testing.B) {
			desc, pkts, size, naus := cameraStream(b, codec)
			rs := [2]*streamRunner{newRunner(b, ModePassthrough, desc, pkts, size, naus),
				newRunner(b, ModeRebuild, desc, pkts, size, naus)}
			var d [2]time.Duration
			const loops = 50 // per measurement: well above the CPU clock's tick
			b.ResetTimer()
			for range b.N {
				for i, r := range rs {
					start := testutil.CPUTime(b)
					for l := 0; l < loops; l++ {
						r.run(b, discard)
					}
					d[i] += testutil.CPUTime(b) - start
				}
			}
			gb := float64(size) * loops * float64(b.N) / 1e9
			b.ReportMetric(d[0].Seconds()/gb, "passthrough-s/GB")
			b.ReportMetric(d[1].Seconds()/gb, "rebuild-s/GB")
			b.ReportMetric(d[1].Seconds()/d[0].Seconds(), "ratio-process")
		})
	}
}

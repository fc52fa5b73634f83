package proxy

import (
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/cordon-vms/cordon/proxy/camsim"
	"github.com/cordon-vms/cordon/proxy/rebuild"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fanOutCPU streams one camsim camera (rate bit/s, passthrough) to readers
// TCP readers for d and returns the process CPU time per GB delivered to
// readers. Camsim and the readers run in the same process: their cost is in
// both modes alike, so ratios understate the proxy's own difference.
func fanOutCPU(b *testing.B, perPacket bool, readers, rate int, d time.Duration) (cpuPerGB float64, gb float64) {
	sim := &camsim.Server{Addr: "127.0.0.1:0", Cameras: []camsim.Camera{{Name: "c", FPS: 25, Width: 1280, Height: 720, Bitrate: rate}}}
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	cfg := testConfig(Camera{Name: "c", URL: MustParseSecretURL(sim.URL("c")), Mode: Mode(rebuild.ModePassthrough)})
	cfg.PerPacketWrites = perPacket
	p, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var rs []*gortsplib.Client
	for range readers {
		var r *rtspReader
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err = dialReaderB(readerURL(p, "c"))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			b.Fatal(err)
		}
		rs = append(rs, r.cl)
	}
	defer func() {
		for _, c := range rs {
			c.Close()
		}
	}()
	sent := func() uint64 {
		var n uint64
		for _, r := range p.Status()[0].Readers {
			n += r.BytesOut
		}
		return n
	}
	time.Sleep(500 * time.Millisecond)
	c0, s0 := cpuTime(), sent()
	time.Sleep(d)
	c1, s1 := cpuTime(), sent()
	gb = float64(s1-s0) / 1e9
	return (c1 - c0).Seconds() / gb, gb
}

func dialReaderB(url string) (*rtspReader, error) {
	return dialReaderNoCleanup(url, gortsplib.ProtocolTCP)
}

// BenchmarkFanOutTCP compares frame-batched output with gortsplib's
// per-packet writes in the same run: 1 camera at 8 Mbit/s, 20 TCP readers.
//
//	go test ./proxy -run '^$' -bench FanOutTCP -benchtime 1x
func BenchmarkFanOutTCP(b *testing.B) {
	const readers, rate, d = 20, 8_000_000, 4 * time.Second
	for range b.N {
		base, gb0 := fanOutCPU(b, true, readers, rate, d)
		batched, gb1 := fanOutCPU(b, false, readers, rate, d)
		b.ReportMetric(base, "cpu-s/GB-per-packet")
		b.ReportMetric(batched, "cpu-s/GB-batched")
		b.ReportMetric(batched/base, "ratio")
		b.Logf("per-packet: %.3f cpu-s/GB over %.3f GB; batched: %.3f cpu-s/GB over %.3f GB; ratio %.2f",
			base, gb0, batched, gb1, batched/base)
	}
}

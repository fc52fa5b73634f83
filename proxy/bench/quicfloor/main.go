// Command quicfloor measures the CPU floor of the trunk's transport library
// (quic-go) against TCP and TLS over TCP, independently of cordon's trunk
// code (docs/trunk.md, "The quic-go floor").
//
// A sender process and a receiver process move camera-like traffic over
// loopback: --flows flows, each writing a frame of --rate/8/--fps bytes
// --fps times a second (phases spread over the period), or as fast as they
// can with --rate 0 (bulk). Each process measures its own CPU time
// (getrusage: user+system, every thread) and context switches over the
// same --duration window, after --warmup; CPU is per GB the receiver got.
// The systems run one after the other, alternated --rounds times, and each
// round's figures are also given as ratios to tcp and tls of that round.
//
// Systems (a base, then variants joined with '+'):
//
//	tcp      a TCP connection per flow
//	tls      TLS 1.3 over a TCP connection per flow (AES-128-GCM, as QUIC)
//	quic     one QUIC connection, a stream per flow
//	quicn    a QUIC connection per flow, one stream each
//	dgram    one QUIC connection, each frame in DATAGRAM frames
//	dgramn   a QUIC connection per flow, DATAGRAM frames
//
//	+gro     the receiver's UDP socket reads with UDP_GRO (internal/udpgro)
//	+nogso   QUIC_GO_DISABLE_GSO=1 at both ends
//	+p1      GOMAXPROCS=1 at both ends; +sp1, +rp1: the sender or receiver only
//	+sysmon  GODEBUG=schedtrace=2147483647 at both ends (keeps the runtime's
//	         sysmon out of its deep sleep; for information, not a setting)
//	+gc400   GOGC=400 at both ends
//	+win     16 MB stream and 24 MB connection windows from the start
//	+mtu     InitialPacketSize 1452 and no path MTU discovery
//
// Example:
//
//	go run ./proxy/bench/quicfloor --systems tcp,tls,quic,quicn,dgram --rounds 3
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

type options struct {
	systems  string
	flows    int
	rate     int64
	fps      int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	minGot   float64

	// child
	role  string
	sys   string
	addr  string
	start int64
	stop  int64
}

func main() {
	var o options
	flag.StringVar(&o.systems, "systems", "tcp,tls,quic,quicn,dgram", "comma-separated systems (see the package doc)")
	flag.IntVar(&o.flows, "flows", 20, "flows (cameras)")
	flag.Int64Var(&o.rate, "rate", 2_000_000, "bits/s per flow; 0 writes as fast as possible (bulk)")
	flag.IntVar(&o.fps, "fps", 25, "frames per second per flow (a frame is rate/8/fps bytes; 10 kB in bulk)")
	flag.DurationVar(&o.duration, "duration", 6*time.Second, "measured window per run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "time before the window")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds, each running every system once")
	flag.Float64Var(&o.minGot, "min-got", 0.97, "share of the offered bytes a paced run must get to count (a starved run's CPU per GB is lower)")
	flag.StringVar(&o.role, "role", "", "internal: send or recv")
	flag.StringVar(&o.sys, "sys", "", "internal: the child's system")
	flag.StringVar(&o.addr, "addr", "", "internal: the receiver's address")
	flag.Int64Var(&o.start, "start", 0, "internal: window start, unix ns")
	flag.Int64Var(&o.stop, "stop", 0, "internal: window end, unix ns")
	flag.Parse()
	var err error
	switch o.role {
	case "":
		err = runParent(o)
	case "recv":
		err = runRecv(o)
	case "send":
		err = runSend(o)
	default:
		err = fmt.Errorf("unknown role %q", o.role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quicfloor:", err)
		os.Exit(1)
	}
}

// frameSize is the bytes each flow writes per frame.
func (o options) frameSize() int {
	if o.rate <= 0 || o.fps <= 0 {
		return 10_000
	}
	return int(o.rate / 8 / int64(o.fps))
}

package main

import (
	"testing"
	"time"
)

// TestSystemsMoveBytes runs each base system's sender and receiver in this
// process for a moment and checks that both flows' frames arrive, with no
// datagram missing.
func TestSystemsMoveBytes(t *testing.T) {
	for _, name := range []string{"tcp", "tls", "quic", "quicn", "dgram", "dgramn", "quic+gro"} {
		t.Run(name, func(t *testing.T) {
			s, err := parseSystem(name)
			if err != nil {
				t.Fatal(err)
			}
			o := options{flows: 2, rate: 2_000_000, fps: 25}
			var sent, got counters
			addr, err := serve(s, o, &sent, func(flow int, w frameWriter) { go runFlow(o, flow, w, &sent) })
			if err != nil {
				t.Fatal(err)
			}
			ro := o
			ro.addr = addr
			if err := receive(s, ro, &got); err != nil {
				t.Fatal(err)
			}
			want := int64(4 * o.flows * o.frameSize())
			deadline := time.Now().Add(20 * time.Second)
			for got.bytes.Load() < want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := got.bytes.Load(); n < want {
				t.Fatalf("received %d bytes in 20 s, want %d (sent %d)", n, want, sent.bytes.Load())
			}
			if n := got.lost.Load(); n != 0 {
				t.Fatalf("%d datagrams missing on loopback", n)
			}
		})
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/cordon-vms/cordon/internal/udpgro"
)

type usage struct {
	cpu         time.Duration
	vcsw, ivcsw int64
}

// endResult is what a child reports of its window.
type endResult struct {
	CPU   time.Duration `json:"cpu_ns"`
	Bytes int64         `json:"bytes"` // written (sender) or read (receiver)
	Vcsw  int64         `json:"vcsw"`
	Ivcsw int64         `json:"ivcsw"`
	Lost  int64         `json:"lost,omitempty"` // datagrams missing at the receiver
	GRO   udpgro.Stats  `json:"gro"`
	// QUIC packets received and sent, all connections
	PktIn  int64 `json:"pkt_in"`
	PktOut int64 `json:"pkt_out"`
}

// counters are a child's running totals.
type counters struct {
	bytes, lost atomic.Int64
	gro         []*udpgro.Conn

	mu    sync.Mutex
	conns []*quic.Conn
}

func (c *counters) addConn(conn *quic.Conn) {
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
}

// packets returns the QUIC packets received and sent so far.
func (c *counters) packets() (in, out int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		s := conn.ConnectionStats()
		in += int64(s.PacketsReceived)
		out += int64(s.PacketsSent)
	}
	return in, out
}

// measure waits for the window and returns the usage and bytes over it.
func measure(o options, c *counters) endResult {
	time.Sleep(time.Until(time.Unix(0, o.start)))
	u0, b0, l0, g0 := getUsage(), c.bytes.Load(), c.lost.Load(), c.groStats()
	i0, o0 := c.packets()
	time.Sleep(time.Until(time.Unix(0, o.stop)))
	u1, b1, l1, g1 := getUsage(), c.bytes.Load(), c.lost.Load(), c.groStats()
	i1, o1 := c.packets()
	return endResult{PktIn: i1 - i0, PktOut: o1 - o0,
		CPU: u1.cpu - u0.cpu, Bytes: b1 - b0, Vcsw: u1.vcsw - u0.vcsw, Ivcsw: u1.ivcsw - u0.ivcsw, Lost: l1 - l0,
		GRO: udpgro.Stats{Reads: g1.Reads - g0.Reads, Segments: g1.Segments - g0.Segments, Truncated: g1.Truncated - g0.Truncated},
	}
}

func (c *counters) groStats() udpgro.Stats {
	var s udpgro.Stats
	for _, g := range c.gro {
		t := g.Stats()
		s.Reads += t.Reads
		s.Segments += t.Segments
		s.Truncated += t.Truncated
	}
	return s
}

// report prints r as the child's last line and ends the process (its
// connections are not closed one by one).
func report(r endResult) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	os.Exit(0)
	return nil
}

// runSend listens, prints its address, and runs a flow on each flow the
// receiver opens.
func runSend(o options) error {
	s, err := parseSystem(o.sys)
	if err != nil {
		return err
	}
	var c counters
	addr, err := serve(s, o, &c, func(flow int, w frameWriter) { go runFlow(o, flow, w, &c) })
	if err != nil {
		return err
	}
	fmt.Println("addr", addr)
	return report(measure(o, &c))
}

// runRecv opens the flows to the sender and reads them.
func runRecv(o options) error {
	s, err := parseSystem(o.sys)
	if err != nil {
		return err
	}
	var c counters
	if err := receive(s, o, &c); err != nil {
		return err
	}
	return report(measure(o, &c))
}

// frameWriter writes one frame of a flow.
type frameWriter func([]byte) error

// runFlow writes the flow's frames: paced at o.fps with its phase spread
// over the period, or back to back with o.rate 0.
func runFlow(o options, flow int, w frameWriter, c *counters) {
	frame := make([]byte, o.frameSize())
	for i := range frame {
		frame[i] = byte(i)
	}
	if o.rate <= 0 {
		for w(frame) == nil {
			c.bytes.Add(int64(len(frame)))
		}
		return
	}
	period := time.Second / time.Duration(o.fps)
	time.Sleep(period * time.Duration(flow%o.flows) / time.Duration(o.flows))
	t := time.NewTicker(period)
	defer t.Stop()
	for w(frame) == nil {
		c.bytes.Add(int64(len(frame)))
		<-t.C
	}
}

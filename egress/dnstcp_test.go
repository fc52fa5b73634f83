package egress

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
)

// dnsTCPPolicy allows DNS over TCP to the site's resolver.
var dnsTCPPolicy = strings.Replace(testPolicy, "{host: 192.168.50.1, proto: udp, port: 53}", "{host: 192.168.50.1, proto: udp, port: 53}\n  - {host: 192.168.50.1, proto: tcp, port: 53}", 1)

// tcpDNS frames DNS queries as DNS over TCP does: a 2-byte length each.
func tcpDNS(names ...string) []byte {
	var b []byte
	for i, n := range names {
		q := pcapgen.DNSQuery(uint16(i+1), n, 1)
		b = binary.BigEndian.AppendUint16(b, uint16(len(q)))
		b = append(b, q...)
	}
	return b
}

// sendSplit sends stream over one connection from camA to the resolver,
// cut at the given offsets.
func sendSplit(w *pcapgen.Writer, port uint16, stream []byte, cuts ...int) {
	k := w.Dial(ap(camA, port), ap(atkGW, 53))
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		if c > prev {
			k.Send(stream[prev:c], 0)
		}
		prev = c
	}
	_ = k.Close()
}

// TestDNSOverTCPEveryQuery: every query of a DNS-over-TCP connection is
// read, however the stream is cut into segments.
func TestDNSOverTCPEveryQuery(t *testing.T) {
	names := []string{"a.secu100.net", "litedev.hik-connect.com", "dev.ezvizlife.com"}
	stream := tcpDNS(names...)
	every := func(n int) []int {
		var c []int
		for i := n; i < len(stream); i += n {
			c = append(c, i)
		}
		return c
	}
	for _, cuts := range [][]int{nil, {1}, {2}, {30}, {len(stream) - 1}, every(7), every(1), every(40)} {
		e, sink := newTestEngine(t, dnsTCPPolicy)
		feed(t, e, func(w *pcapgen.Writer) { sendSplit(w, 41000, stream, cuts...) })
		got := map[string]int{}
		for _, a := range sink.alerts {
			got[a.Domain]++
		}
		for _, n := range names {
			if got[n] != 1 {
				t.Errorf("cuts %v: %d alerts for %s, want 1 (%+v)", cuts, got[n], n, sink.alerts)
			}
		}
		if len(sink.alerts) != len(names) {
			t.Errorf("cuts %v: %d alerts, want %d", cuts, len(sink.alerts), len(names))
		}
	}
}

// TestDNSOverTCPTunnel: queries over TCP feed the DNS-tunnel detector
// like those over UDP.
func TestDNSOverTCPTunnel(t *testing.T) {
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("%016x%016x.data-drop.net", uint64(i)*0x9e3779b97f4a7c15, uint64(i+7)*0xbf58476d1ce4e5b9))
	}
	stream := tcpDNS(names...)
	e, sink := newTestEngine(t, dnsTCPPolicy)
	feed(t, e, func(w *pcapgen.Writer) {
		sendSplit(w, 41000, stream[:len(stream)/2], 100, 333)
		sendSplit(w, 41001, stream[len(stream)/2:], 57)
	})
	n := sink.count(KindDNSTunnel, "data-drop.net")
	if n != 1 {
		t.Errorf("%d dns-tunnel alerts, want 1: %+v", n, sink.alerts)
	}
}

// TestDNSOverTCPBounds: what a connection's DNS reader skips is counted:
// queries past the per-flow bound, a message over the length bound (the
// queries after it are still read), the rest of a stream after a gap.
func TestDNSOverTCPBounds(t *testing.T) {
	t.Run("queries per flow", func(t *testing.T) {
		names := make([]string, maxDNSTCPQueries+5)
		for i := range names {
			names[i] = fmt.Sprintf("q%d.example.com", i)
		}
		names[len(names)-1] = "late.secu100.net" // past the bound: not read
		e, sink := newTestEngine(t, dnsTCPPolicy)
		feed(t, e, func(w *pcapgen.Writer) { sendSplit(w, 41000, tcpDNS(names...)) })
		if n := e.m.DNSTCPSkipped.Load(); n != 5 || len(sink.alerts) != 0 {
			t.Errorf("skipped %d, want 5; alerts %+v", n, sink.alerts)
		}
	})
	t.Run("long message", func(t *testing.T) {
		long := binary.BigEndian.AppendUint16(nil, maxDNSTCPMessage+1)
		long = append(long, make([]byte, maxDNSTCPMessage+1)...)
		long[2] = 0x01 // not 0x16: a length, not a TLS record
		stream := append(long, tcpDNS("after.secu100.net")...)
		e, sink := newTestEngine(t, dnsTCPPolicy)
		feed(t, e, func(w *pcapgen.Writer) { sendSplit(w, 41000, stream, 1000) })
		if n := e.m.DNSTCPSkipped.Load(); n != 1 || len(sink.alerts) != 1 || sink.alerts[0].Domain != "after.secu100.net" {
			t.Errorf("skipped %d, want 1; alerts %+v", n, sink.alerts)
		}
	})
	// Segments of three queries, each its own segment, sent in an order
	// (by index; -1: a FIN), with a junk segment ahead of the stream.
	q := [][]byte{tcpDNS("first.secu100.net"), tcpDNS("second.hik-connect.com"), tcpDNS("third.ezvizlife.com")}
	for range maxDNSTCPHeld { // q[3:]: junk queries after the third
		q = append(q, tcpDNS("junk.dahuap2p.com"))
	}
	for _, c := range []struct {
		name    string
		order   []int
		junk    bool
		alerts  []string
		skipped uint64
	}{
		{"reordered", []int{0, 2, 1, -1}, false, []string{"first.secu100.net", "second.hik-connect.com", "third.ezvizlife.com"}, 0},
		{"junk ahead", []int{0, 1, 2, -1}, true, []string{"first.secu100.net", "second.hik-connect.com", "third.ezvizlife.com"}, 1},
		{"lost", []int{0, 2, -1}, false, []string{"first.secu100.net", "third.ezvizlife.com"}, 1},
		{"lost, hold full", []int{0, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false, []string{"first.secu100.net", "third.ezvizlife.com"}, 1},
		{"lost, capture ends", []int{0, 2}, false, []string{"first.secu100.net", "third.ezvizlife.com"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, dnsTCPPolicy)
			feed(t, e, func(w *pcapgen.Writer) {
				cl, sv := ap(camA, 41000), ap(atkGW, 53)
				_ = w.TCPSegment(cl, sv, pcapgen.SYN, 999, 0, nil, 0)
				seqOf := func(i int) uint32 {
					n := 0
					for _, m := range q[:i] {
						n += len(m)
					}
					return 1000 + uint32(n)
				}
				if c.junk {
					_ = w.TCPSegment(cl, sv, pcapgen.ACK|pcapgen.PSH, 50000, 1, tcpDNS("junk.dahuap2p.com"), 0)
				}
				for _, i := range c.order {
					if i < 0 {
						_ = w.TCPSegment(cl, sv, pcapgen.ACK|pcapgen.FIN, seqOf(3), 1, nil, 0)
						continue
					}
					_ = w.TCPSegment(cl, sv, pcapgen.ACK|pcapgen.PSH, seqOf(i), 1, q[i], 0)
				}
			})
			var got []string
			for _, a := range sink.alerts {
				if a.Domain != "junk.dahuap2p.com" {
					got = append(got, a.Domain)
				}
			}
			slices.Sort(got)
			if n := e.m.DNSTCPSkipped.Load(); n != c.skipped || !slices.Equal(got, c.alerts) {
				t.Errorf("skipped %d, want %d; alerts %v, want %v", n, c.skipped, got, c.alerts)
			}
		})
	}
}

// FuzzDNSStream: a DNS-over-TCP stream cut into segments anywhere, and
// with segments retransmitted, yields the same messages, in the same
// order, as the stream in one segment; nothing is held beyond the bounds.
func FuzzDNSStream(f *testing.F) {
	f.Add(tcpDNS("a.secu100.net", "litedev.hik-connect.com"), uint64(0x0102030405))
	f.Add(tcpDNS("x.example.com"), uint64(1))
	f.Add([]byte{0x00, 0x02, 0xab, 0xcd, 0x10, 0x01}, uint64(0xffff))
	f.Add(append([]byte{0x10, 0x01}, make([]byte, 4200)...), uint64(7))
	f.Fuzz(func(t *testing.T, stream []byte, cuts uint64) {
		// collect feeds segs (swapping each pair when swap: a reordered
		// stream, one segment held at a time) and returns what was read.
		collect := func(segs [][]byte, retransmit, swap bool) (msgs []string, skipped uint64) {
			var s dnsStream
			emit := func(m []byte) { msgs = append(msgs, string(m)) }
			seqs := make([]uint32, len(segs))
			seq := uint32(1000)
			for i, g := range segs {
				seqs[i], seq = seq, seq+uint32(len(g))
			}
			order := make([]int, len(segs))
			for i := range order {
				order[i] = i
				if swap && i%2 == 1 {
					order[i-1], order[i] = i, i-1
				}
			}
			skipped += s.add(999, true, false, nil, emit)
			for _, i := range order {
				skipped += s.add(seqs[i], false, false, segs[i], emit)
				if retransmit {
					skipped += s.add(seqs[i], false, false, segs[i], emit)
				}
				if len(s.buf) > 2+maxDNSTCPMessage || len(s.held) > 1 {
					t.Fatalf("holds %d bytes and %d segments", len(s.buf), len(s.held))
				}
			}
			skipped += s.add(seq, false, true, nil, emit)
			return msgs, skipped
		}
		whole, skipWhole := collect([][]byte{stream}, false, false)
		var segs [][]byte
		for rest, c := stream, cuts; len(rest) > 0; c >>= 4 {
			n := min(int(c&15)+1, len(rest))
			if c == 0 {
				n = len(rest)
			}
			segs, rest = append(segs, rest[:n]), rest[n:]
		}
		split, skipSplit := collect(segs, cuts&1 != 0, cuts&2 != 0)
		if !slices.Equal(whole, split) || skipWhole != skipSplit {
			t.Errorf("whole: %d messages, %d skipped; cut: %d messages, %d skipped", len(whole), skipWhole, len(split), skipSplit)
		}
	})
}

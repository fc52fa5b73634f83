package netflow_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/cordon-vms/cordon/egress"
	"github.com/cordon-vms/cordon/egress/netflow"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// pcapFlows sums the first limit packets of a capture per 5-tuple:
// packets and IP bytes.
func pcapFlows(t *testing.T, path string, limit int) map[egress.FlowKey]egress.FlowRecord {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	m := map[egress.FlowKey]egress.FlowRecord{}
	for i := 0; i < limit; i++ {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.NoCopy)
		var k egress.FlowKey
		var n uint64
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			src, _ := netip.AddrFromSlice(ip.SrcIP)
			dst, _ := netip.AddrFromSlice(ip.DstIP)
			k = egress.FlowKey{Proto: uint8(ip.Protocol), Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0)}
			n = uint64(ip.Length)
		case *layers.IPv6:
			src, _ := netip.AddrFromSlice(ip.SrcIP)
			dst, _ := netip.AddrFromSlice(ip.DstIP)
			k = egress.FlowKey{Proto: uint8(ip.NextHeader), Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0)}
			n = uint64(ip.Length) + 40
		default:
			continue
		}
		switch l4 := p.TransportLayer().(type) {
		case *layers.TCP:
			k.Src, k.Dst = netip.AddrPortFrom(k.Src.Addr(), uint16(l4.SrcPort)), netip.AddrPortFrom(k.Dst.Addr(), uint16(l4.DstPort))
		case *layers.UDP:
			k.Src, k.Dst = netip.AddrPortFrom(k.Src.Addr(), uint16(l4.SrcPort)), netip.AddrPortFrom(k.Dst.Addr(), uint16(l4.DstPort))
		}
		rec := m[k]
		rec.Key = k
		rec.Packets++
		rec.Bytes += n
		m[k] = rec
	}
	return m
}

// runPmacctSFlow has pmacctd read the capture pcap and send it as sFlow to
// a loopback socket, and returns the datagrams it sent.
func runPmacctSFlow(t *testing.T, bin, pcap string) [][]byte {
	t.Helper()
	abs, err := filepath.Abs(pcap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.UDPConn).SetReadBuffer(8 << 20) // pmacct sends the whole capture in a burst
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pmacctd.conf")
	conf := fmt.Sprintf("daemonize: false\npcap_savefile: %s\npcap_savefile_wait: false\nplugins: sfprobe\nsfprobe_receiver: %s\nsfprobe_agentip: 127.0.0.1\nsampling_rate: 1\n", abs, conn.LocalAddr())
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := recordDatagrams(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// pmacctd 1.7.7 sometimes exits 1 when its plugin shuts down first at
	// the end of the file; the datagrams are what is checked.
	if out, err := exec.CommandContext(ctx, bin, "-f", cfg).CombinedOutput(); err != nil && ctx.Err() != nil {
		t.Fatalf("pmacctd: %v\n%s", err, out)
	}
	return stop()
}

// flowSamples counts the flow samples in sFlow datagrams: it walks the
// samples (after the 28-byte header with an IPv4 agent address) and counts
// formats 1 and 3 (flow, expanded flow); counter samples carry no packets.
func flowSamples(dgrams [][]byte) uint64 {
	var samples uint64
	for _, dg := range dgrams {
		for off := 28; off+8 <= len(dg); {
			format, length := binary.BigEndian.Uint32(dg[off:]), int(binary.BigEndian.Uint32(dg[off+4:]))
			if format == 1 || format == 3 {
				samples++
			}
			off += 8 + length
		}
	}
	return samples
}

// TestPmacctSFlow: pmacct's sfprobe turns the planted capture into sFlow v5
// (every packet sampled) and the decoded samples add up to the capture's
// flows, packet for packet and byte for byte.
func TestPmacctSFlow(t *testing.T) {
	bin := testutil.NeedTool(t, "pmacctd")[0]
	pcap := filepath.Join("..", "testdata", "planted.pcap")
	dgrams := runPmacctSFlow(t, bin, pcap)
	if len(dgrams) == 0 {
		t.Fatal("pmacctd sent no sFlow")
	}
	if *update {
		dir := filepath.Join("testdata", "pmacct-sflow")
		os.MkdirAll(dir, 0o755)
		for i, dg := range dgrams[:min(3, len(dgrams))] {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.bin", i)), dg, 0o644)
		}
	}
	var d netflow.Decoder
	got := map[egress.FlowKey]egress.FlowRecord{}
	for i, dg := range dgrams {
		if err := d.Decode(netip.MustParseAddrPort("127.0.0.1:6343"), dg, func(r egress.FlowRecord) { got[r.Key] = merge(got[r.Key], r) }); err != nil {
			t.Errorf("datagram %d: %v", i, err)
		}
	}
	// Every flow sample pmacct sent is decoded.
	samples := flowSamples(dgrams)
	if st := d.Stats(); st.Records+st.SkippedRecords != samples || st.Records == 0 {
		t.Errorf("%d flow samples sent, %d records + %d skipped decoded", samples, st.Records, st.SkippedRecords)
	}
	// The samples add up to the capture's flows exactly. pmacct reads the
	// file in order but drops the last few packets at shutdown (they are
	// still in its plugin's buffer), so compare with the capture's first
	// packets, as many as were sampled.
	if int(samples) < 3300 {
		t.Fatalf("pmacct sampled only %d packets of the capture", samples)
	}
	want := pcapFlows(t, pcap, int(samples))
	for k, w := range want {
		if g := got[k]; g.Packets != w.Packets || g.Bytes != w.Bytes {
			t.Errorf("flow %v: %d packets %d bytes from sFlow, %d/%d in the capture", k, g.Packets, g.Bytes, w.Packets, w.Bytes)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("flow %v from sFlow is not in the capture", k)
		}
	}
	t.Logf("%d sFlow datagrams, %d flows; stats %+v", len(dgrams), len(got), d.Stats())
}

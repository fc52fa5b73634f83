package egress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// linkControlFrames are link-layer control frames of a quiet camera
// network: understood, not IP.
func linkControlFrames() map[string][]byte {
	arp := []byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 192, 168, 50, 10, 192, 168, 50, 10, 0, 0, 0, 0, 0, 0, 192, 168, 50, 1}
	llc := func(p []byte) []byte { // 802.3: a length, then LLC
		b := []byte{0x01, 0x80, 0xc2, 0, 0, 0, 0x02, 0, 192, 168, 50, 10}
		return append(binary.BigEndian.AppendUint16(b, uint16(len(p))), p...)
	}
	return map[string][]byte{
		"ARP":         atkEther(0x0806, arp),
		"ARP in VLAN": atkEther(0x8100, append([]byte{0, 50, 0x08, 0x06}, arp...)),
		"RARP":        atkEther(0x8035, arp),
		"LLDP":        atkEther(0x88cc, []byte{0x02, 0x07, 0x04, 0, 1, 2, 3, 4, 5, 0, 0}),
		"LACP":        atkEther(0x8809, append([]byte{0x01, 0x01}, make([]byte, 108)...)),
		"EAPOL":       atkEther(0x888e, []byte{0x02, 0x01, 0, 0}),
		"STP":         llc(append([]byte{0x42, 0x42, 0x03, 0, 0, 0, 0}, make([]byte, 31)...)),
		"CDP":         llc(append([]byte{0xaa, 0xaa, 0x03, 0, 0, 0x0c, 0x20, 0x00}, make([]byte, 30)...)),
	}
}

func capture(t *testing.T, lt layers.LinkType, frames ...[]byte) PacketSource {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: pcapgen.Start, CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	src, err := openStream("quiet.pcap", io.NopCloser(&b))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestLinkControlOnly: a capture of a quiet site (ARP, LLDP, STP, ...) is
// understood: its frames are counted as link-layer control, not as
// undecoded, and Run ends without error, with one note that the capture
// held no IP traffic. Frames cordon does not recognise still make an
// error.
func TestLinkControlOnly(t *testing.T) {
	var frames [][]byte
	for name, f := range linkControlFrames() {
		frames = append(frames, f)
		e, _ := newTestEngine(t, testPolicy)
		if err := e.Run(context.Background(), capture(t, layers.LinkTypeEthernet, f)); err != nil {
			t.Errorf("%s: Run = %v", name, err)
		}
		if n := e.m.LinkControl.Load(); n != 1 {
			t.Errorf("%s: %d link-control frames, want 1 (undecoded %+v)", name, n, e.m.Undecoded())
		}
	}
	e, _ := newTestEngine(t, testPolicy)
	var logBuf bytes.Buffer
	e.log = slogTo(&logBuf)
	if err := e.Run(context.Background(), capture(t, layers.LinkTypeEthernet, frames...)); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if n := e.m.LinkControl.Load(); n != uint64(len(frames)) || len(e.m.Undecoded()) != 0 || e.m.NonIP.Load() != 0 {
		t.Errorf("link-control %d, want %d; undecoded %+v", n, len(frames), e.m.Undecoded())
	}
	if n := strings.Count(logBuf.String(), "no IP traffic"); n != 1 {
		t.Errorf("want one note that the capture held no IP traffic:\n%s", logBuf.String())
	}
	if s := e.m.Summary(1e9); !strings.Contains(s, "8 link-layer control frames (ARP, LLDP, STP, ...)") {
		t.Errorf("summary %q", s)
	}

	// ARP in a Linux cooked capture v2.
	sll := make([]byte, 20)
	binary.BigEndian.PutUint16(sll[0:], 0x0806)
	binary.BigEndian.PutUint16(sll[8:], 1)
	sll[11] = 6
	e, _ = newTestEngine(t, testPolicy)
	if err := e.Run(context.Background(), capture(t, layers.LinkTypeLinuxSLL2, append(sll, linkControlFrames()["ARP"][14:]...))); err != nil || e.m.LinkControl.Load() != 1 {
		t.Errorf("ARP over SLL2: Run = %v, link-control %d", err, e.m.LinkControl.Load())
	}

	// ARP beside a frame cordon cannot decode: no IP, noted, with the
	// count of the other.
	e, _ = newTestEngine(t, testPolicy)
	logBuf.Reset()
	e.log = slogTo(&logBuf)
	if err := e.Run(context.Background(), capture(t, layers.LinkTypeEthernet, linkControlFrames()["ARP"], atkEther(0x1234, make([]byte, 46)))); err != nil {
		t.Errorf("ARP and a frame not decoded: Run = %v", err)
	}
	if !strings.Contains(logBuf.String(), "no IP traffic") || !strings.Contains(logBuf.String(), "not_decoded=1") {
		t.Errorf("want a note counting the frame not decoded:\n%s", logBuf.String())
	}

	// An EtherType cordon does not know, and 802.3 LLC that is not STP
	// nor Cisco's SNAP, are not understood: nothing decoded is an error.
	e, _ = newTestEngine(t, testPolicy)
	err := e.Run(context.Background(), capture(t, layers.LinkTypeEthernet, atkEther(0x1234, make([]byte, 46)), atkEther(0x0020, append([]byte{0xe0, 0xe0, 0x03}, make([]byte, 29)...))))
	var nd *NothingDecodedError
	if !errors.As(err, &nd) || !strings.Contains(err.Error(), "none of the 2 packets could be decoded: 2 not-ip") || e.m.LinkControl.Load() != 0 {
		t.Errorf("unknown frames: Run = %v, link-control %d", err, e.m.LinkControl.Load())
	}
}

package egress

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TestVXLANPorts: VXLAN is decoded on the IANA port (4789) and on Linux's
// default (8472), only when its header is valid and it carries Ethernet;
// anything else on those ports is an ordinary UDP flow, so a camera
// sending it to an outside host is alerted for that host either way.
func TestVXLANPorts(t *testing.T) {
	out := netip.MustParseAddr("203.0.113.66")
	mirror := netip.MustParseAddr("10.99.0.1")
	inner := atkEther(0x0800, atkIP4(camA, atkGW, 17, 9, 0, false, nil, atkUDP(41009, 53, pcapgen.DNSQuery(9, "vx8472.secu100.net", 1))))
	hdr := []byte{0x08, 0, 0, 0, 0, 0, 50, 0}
	vx := func(src, dst netip.Addr, port uint16, h, in []byte) []byte {
		return atkEther(0x0800, atkIP4(src, dst, 17, 1, 0, false, nil, atkUDP(50000, port, append(append([]byte{}, h...), in...))))
	}
	only4789 := testPolicy + "decode: {vxlan_ports: [4789]}\n"
	for _, c := range []struct {
		name, policy string
		frame        []byte
		domain       string // the inner query seen, or
		dst          string // one alert for this destination (the outer flow)
	}{
		{"mirror on 4789", testPolicy, vx(mirror, mirror.Next(), 4789, hdr, inner), "vx8472.secu100.net", ""},
		{"mirror on 4789, VXLAN-GBP", testPolicy, vx(mirror, mirror.Next(), 4789, []byte{0x88, 0x48, 0x12, 0x34, 0, 0, 50, 0}, inner), "vx8472.secu100.net", ""},
		{"8472 VXLAN-GBP reserved bit set", testPolicy, vx(camA, out, 8472, []byte{0x88, 0x01, 0x12, 0x34, 0, 0, 50, 0}, inner), "", out.String()},
		{"mirror on 8472", testPolicy, vx(mirror, mirror.Next(), 8472, hdr, inner), "vx8472.secu100.net", ""},
		{"camera tunnels to 8472 outside", testPolicy, vx(camA, out, 8472, hdr, inner), "vx8472.secu100.net", out.String()},
		{"8472 flags not 0x08", testPolicy, vx(camA, out, 8472, []byte{0x0c, 0, 0, 0, 0, 0, 50, 0}, inner), "", out.String()},
		{"8472 reserved bits set", testPolicy, vx(camA, out, 8472, []byte{0x08, 0, 0, 0, 0, 0, 50, 1}, inner), "", out.String()},
		{"8472 reserved flag byte set", testPolicy, vx(camA, out, 8472, []byte{0x08, 0, 1, 0, 0, 0, 50, 0}, inner), "", out.String()},
		{"8472 inner not Ethernet", testPolicy, vx(camA, out, 8472, hdr, make([]byte, 40)), "", out.String()},
		{"8472 too short", testPolicy, vx(camA, out, 8472, hdr, inner[:10]), "", out.String()},
		{"8472 not a VXLAN port", only4789, vx(camA, out, 8472, hdr, inner), "", out.String()},
		{"8472 not a VXLAN port, mirror", only4789, vx(mirror, mirror.Next(), 8472, hdr, inner), "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sink := newTestEngine(t, c.policy)
			e.HandlePacket(context.Background(), c.frame, gopacket.CaptureInfo{Timestamp: pcapgen.Start, CaptureLength: len(c.frame), Length: len(c.frame)}, layers.LinkTypeEthernet)
			_ = e.Close(context.Background())
			var domains, dsts int
			for _, a := range sink.alerts {
				switch {
				case c.domain != "" && a.Kind == KindVendorCloud && a.Domain == c.domain:
					domains++
				case c.dst != "" && a.Dst == c.dst && a.Domain == "":
					dsts++
				default:
					t.Errorf("unexpected alert %+v", a)
				}
			}
			if c.domain != "" && domains != 1 {
				t.Errorf("%d alerts for %s, want 1", domains, c.domain)
			}
			if c.dst != "" && dsts != 1 {
				t.Errorf("%d alerts for %s, want 1", dsts, c.dst)
			}
			if n := e.Metrics().Decoded.Load(); n != 1 {
				t.Errorf("decoded %d packets, want 1", n)
			}
		})
	}
}

func TestVXLANPortsPolicy(t *testing.T) {
	_, err := parsePolicy("p.yml", []byte(testPolicy+"decode: {vxlan_ports: [4789, 0]}\n"))
	if err == nil || !strings.Contains(err.Error(), "p.yml:11: decode.vxlan_ports: port 0") {
		t.Errorf("err = %v", err)
	}
	_, err = parsePolicy("p.yml", []byte(testPolicy+"decode: {vxlan: [4789]}\n"))
	if err == nil || !strings.Contains(err.Error(), "vxlan") {
		t.Errorf("unknown key: err = %v", err)
	}
	p, err := parsePolicy("p.yml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	p.Defaults()
	if got := p.Decode.VXLANPorts; len(got) != 2 || got[0] != 4789 || got[1] != 8472 {
		t.Errorf("default vxlan_ports = %v, want [4789 8472]", got)
	}
}

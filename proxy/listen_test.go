package proxy

import (
	"net"
	"testing"
)

// TestListenInUse: a port already in use names the key to change.
func TestListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	cam := Camera{Name: "a", URL: MustParseSecretURL("rtsp://127.0.0.1:1/x"), OnDemand: true}

	udp := withUDP(t, testConfig(cam))
	for _, tc := range []struct {
		name string
		cfg  func() Config
		want string
	}{
		{"rtsp", func() Config { c := testConfig(cam); c.Listen.RTSP = busy; return c },
			`proxy: listen.rtsp "` + busy + `": address already in use — another program (or another cordon) holds it; set listen.rtsp to another port`},
		{"admin", func() Config { c := testConfig(cam); c.Listen.Admin = busy; return c },
			`proxy: listen.admin "` + busy + `": address already in use — another program (or another cordon) holds it; set listen.admin to another port, or "off" to disable it`},
		{"udp_rtp", func() Config { return udp },
			`proxy: listen.udp_rtp "` + udp.Listen.UDPRTP + `": address already in use — another program (or another cordon) holds it; set listen.udp_rtp to another even port, or "off" to serve TCP only`},
		{"udp_rtcp", func() Config { return udp },
			`proxy: listen.udp_rtcp "` + udp.Listen.UDPRTCP + `": address already in use — another program (or another cordon) holds it; set listen.udp_rtp to another even port (and listen.udp_rtcp to the next one, or remove it), or listen.udp_rtp to "off" to serve TCP only`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg()
			switch tc.name {
			case "udp_rtp", "udp_rtcp":
				addr := cfg.Listen.UDPRTP
				if tc.name == "udp_rtcp" {
					addr = cfg.Listen.UDPRTCP
				}
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					t.Skipf("port taken meanwhile: %v", err)
				}
				defer pc.Close()
			}
			log, _ := newLog(t)
			p, err := New(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			err = p.Start()
			if err == nil || err.Error() != tc.want {
				t.Errorf("Start:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

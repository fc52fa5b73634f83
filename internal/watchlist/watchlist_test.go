package watchlist

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	l := Default()
	for name, vendor := range map[string]string{
		"litedev.hik-connect.com":    "Hikvision",
		"LITEDEV.HIK-CONNECT.COM.":   "Hikvision",
		"hik-connect.com":            "Hikvision",
		"iotaccess.easy4ipcloud.com": "Dahua",
		"pub-cfg.secu100.net":        "XiongMai",
		"p2p3.reolink.com":           "Reolink",
	} {
		e, ok := l.MatchDomain(name)
		if !ok || e.Vendor != vendor {
			t.Errorf("MatchDomain(%q) = %+v, %v; want vendor %s", name, e, ok, vendor)
		}
	}
	for _, name := range []string{"example.com", "notreolink.com", "hik-connect.com.evil.net", "com"} {
		if e, ok := l.MatchDomain(name); ok {
			t.Errorf("MatchDomain(%q) matched %+v", name, e)
		}
	}
	if e, ok := l.MatchAddr(netip.MustParseAddr("114.114.114.114")); !ok || e.Vendor != "XiongMai" {
		t.Errorf("MatchAddr resolver: %+v %v", e, ok)
	}
	if e, ok := l.MatchTraffic("udp", 8800, nil, 0); !ok || e.Vendor != "Dahua" {
		t.Errorf("MatchTraffic udp/8800: %+v %v", e, ok)
	}
	// PPPP: 0xF1, a type, and the length of the rest (here 2 bytes; on the
	// wire, 0x120 bytes of which the capture kept 6).
	for _, c := range []struct {
		payload []byte
		size    int
		want    bool
	}{
		{[]byte{0xf1, 0x00, 0x00, 0x00}, 0, true},
		{[]byte{0xf1, 0x42, 0x00, 0x02, 1, 2}, 0, true},
		{[]byte{0xf1, 0xd0, 0x01, 0x1c, 1, 2}, 0x120, true},
		{[]byte{0xf1, 0x00}, 0, false},                   // too short for the header
		{[]byte{0xf1, 0x23, 0x01, 0x00, 0, 1}, 0, false}, // a DNS query with ID 0xF123
		{[]byte{0xf1, 0x00, 0x00, 0x05, 1}, 0, false},    // length is not the rest
	} {
		e, ok := l.MatchTraffic("udp", 40000, c.payload, c.size)
		if ok != c.want || ok && e.Vendor != "PPPP" {
			t.Errorf("MatchTraffic PPPP % x (size %d): %+v %v, want %v", c.payload, c.size, e, ok, c.want)
		}
	}
	if _, ok := l.MatchTraffic("udp", 40000, []byte{0x17}, 0); ok {
		t.Error("MatchTraffic matched an unrelated datagram")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"entries:\n  - {domain: a.com, vendr: x}\n", `unknown key "vendr"`},
		{"entries:\n  - {domain: 'not a domain'}\n", `entry 1: domain "not a domain" is not a valid domain name`},
		{"entries:\n  - {ip: 1.2.3}\n", `ip "1.2.3" is not an IP address`},
		{"entries:\n  - {port: 53}\n", `needs proto tcp or udp`},
		{"entries:\n  - {domain: a.com, ip: 1.2.3.4}\n", `set exactly one of`},
		{"entries:\n  - {proto: udp, payload_prefix: zz}\n", `payload_prefix "zz"`},
		{"entries:\n  - {proto: udp, payload_prefix: f1, framing: cs3}\n", `framing "cs3": want pppp`},
		{"entries:\n  - {proto: tcp, payload_prefix: f1, framing: pppp}\n", `framing pppp applies to a payload_prefix with proto udp`},
		{"entries:\n  - {proto: udp, port: 1, framing: pppp}\n", `framing pppp applies to a payload_prefix with proto udp`},
	} {
		_, err := Parse("w.yml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v; want %q", tc.in, err, tc.want)
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	in := []Entry{
		{Proto: "udp", Port: 8800, Vendor: "Dahua"},
		{Domain: "hik-connect.com", Vendor: "Hikvision", Note: "found in /usr/bin/davinci"},
		{IP: "203.0.113.7"},
	}
	var buf bytes.Buffer
	if err := Write(&buf, "written by a test", in); err != nil {
		t.Fatal(err)
	}
	l, err := Parse("out.yml", buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if len(l.Entries) != 3 || l.Entries[0].Domain != "hik-connect.com" || l.Entries[2].Port != 8800 {
		t.Fatalf("round trip: %+v", l.Entries)
	}
	if _, ok := l.MatchAddr(netip.MustParseAddr("203.0.113.7")); !ok {
		t.Fatal("written ip entry does not match")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(defaultYAML)
	f.Add([]byte("entries:\n  - {proto: udp, payload_prefix: f1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse("fuzz.yml", data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, "", l.Entries); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse("again.yml", buf.Bytes()); err != nil {
			t.Fatalf("written list does not parse: %v\n%s", err, buf.String())
		}
	})
}

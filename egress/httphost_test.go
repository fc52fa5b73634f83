package egress

import "testing"

var httpHostCases = []struct {
	in   string
	want string
	ok   bool
}{
	{"GET /upgrade/check HTTP/1.1\r\nHost: upgrade.secu100.net:8080\r\nUser-Agent: cam\r\n\r\n", "upgrade.secu100.net", true},
	{"POST /log HTTP/1.1\r\nUser-Agent: x\r\nhost:logsvr.xmcsrv.net\r\n\r\n", "logsvr.xmcsrv.net", true},
	{"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", "2001:db8::1", true},
	{"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\nHost: late.example.com\r\n", "", false},
	{"GET / HTTP/1.1\r\nHost: cut.example.c", "", false},
	{"\x16\x03\x01\x02\x00", "", false},
	{"GET / HTTP/1.0\r\n\r\n", "", false},
	{"GET / HTTP/1.1\r\nHost: \r\n\r\n", "", false},
}

func TestHTTPHost(t *testing.T) {
	for _, c := range httpHostCases {
		got, ok := httpHost([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("httpHost(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzHTTPHost(f *testing.F) {
	for _, c := range httpHostCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, ok := httpHost(b); ok && (len(h) == 0 || len(h) > 253) {
			t.Fatalf("host %q", h)
		}
	})
}

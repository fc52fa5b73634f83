package tlsparse

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// rfc9001Hello is the ClientHello of RFC 9001 Appendix A.2 (SNI example.com, ALPN "alpn").
const rfc9001Hello = "010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578616d706c652e636f6dff01000100000a00080006001d0017001800100007000504616c706e000500050100000000003300260024001d00209370b2c9caa47fbabaf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b0003020304000d0010000e0403050306030203080408050806002d00020101001c00024001003900320408ffffffffffffffff05048000ffff07048000ffff0801100104800075300901100f088394c8f03e51570806048000ffff"

// goClientHello returns the first flight of Go's TLS client for serverName: a
// real ClientHello (with a post-quantum key share it is over 1 KiB).
func goClientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		cl := tls.Client(c, &tls.Config{ServerName: serverName, NextProtos: []string{"h2", "http/1.1"}})
		_ = cl.Handshake()
	}()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.Close()
	return append(hdr, body...)
}

// splitRecords re-frames a single-record ClientHello into records of at most n bytes.
func splitRecords(rec []byte, n int) []byte {
	body := rec[5:]
	var out []byte
	for len(body) > 0 {
		k := min(n, len(body))
		out = append(out, 22, 3, 1, byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	return out
}

type tcase struct {
	name    string
	in      []byte
	records bool
	sni     string
	alpn    string
	wantErr error
	errText string
}

func cases(t testing.TB) []tcase {
	hello := goClientHello(t, "dev.ezvizlife.com")
	return []tcase{
		{name: "go client", in: hello, records: true, sni: "dev.ezvizlife.com", alpn: "h2,http/1.1"},
		{name: "split into records", in: splitRecords(hello, 100), records: true, sni: "dev.ezvizlife.com", alpn: "h2,http/1.1"},
		{name: "truncated stream", in: hello[:len(hello)/2], records: true, wantErr: ErrTruncated},
		{name: "truncated split stream", in: splitRecords(hello, 100)[:300], records: true, wantErr: ErrTruncated},
		{name: "http", in: []byte("GET / HTTP/1.1\r\n"), records: true, wantErr: ErrNotClientHello},
		{name: "rfc 9001 handshake", in: testutil.MustHex(rfc9001Hello), sni: "example.com", alpn: "alpn"},
		{name: "server hello", in: append([]byte{2}, testutil.MustHex(rfc9001Hello)[1:]...), wantErr: ErrNotClientHello},
		{name: "handshake truncated", in: testutil.MustHex(rfc9001Hello)[:100], wantErr: ErrTruncated},
		{name: "bad session id", in: []byte{1, 0, 0, 35, 3, 3, 31: 0, 38: 0xff}, errText: "malformed session id"},
		{name: "bad extension", in: helloWithExt([]byte{0, 0, 0, 9, 0}), errText: "malformed extension header"},
		{name: "bad sni", in: helloWithExt([]byte{0, 0, 0, 5, 0, 3, 0, 0, 9}), errText: "malformed server_name"},
		{name: "huge", in: []byte{1, 0xff, 0xff, 0xff}, errText: "exceeds"},
	}
}

func TestParse(t *testing.T) {
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			var ch ClientHello
			var err error
			if c.records {
				ch, err = ParseRecords(c.in)
			} else {
				ch, err = ParseHandshake(c.in)
			}
			switch {
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
			case c.errText != "":
				if err == nil || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("err = %v, want %q", err, c.errText)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if ch.ServerName != c.sni || strings.Join(ch.ALPN, ",") != c.alpn {
					t.Fatalf("got %q %q, want %q %q", ch.ServerName, ch.ALPN, c.sni, c.alpn)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range cases(f) {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseRecords(b)
		if err == nil && len(ch.ServerName) > len(b) {
			t.Fatal("server name longer than input")
		}
		ch, err = ParseHandshake(b)
		if err == nil && len(ch.ServerName) > len(b) {
			t.Fatal("server name longer than input")
		}
	})
}

// helloWithExt builds a minimal ClientHello whose extensions block is ext.
func helloWithExt(ext []byte) []byte {
	body := append([]byte{3, 3}, make([]byte, 32)...)
	body = append(body, 0, 0, 2, 0x13, 1, 1, 0, byte(len(ext)>>8), byte(len(ext)))
	body = append(body, ext...)
	return append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
}

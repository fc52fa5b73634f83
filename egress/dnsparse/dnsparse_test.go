package dnsparse

import (
	"errors"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/internal/testutil"
)

func query(name string, qtype uint16) []byte {
	m := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		m = append(m, byte(len(l)))
		m = append(m, l...)
	}
	return append(m, 0, byte(qtype>>8), byte(qtype), 0, 1)
}

var cases = []struct {
	name    string
	msg     []byte
	want    string
	qtype   uint16
	resp    bool
	wantErr string
}{
	{name: "a query", msg: query("LiteDev.Hik-Connect.com", TypeA), want: "litedev.hik-connect.com", qtype: TypeA},
	{name: "txt query", msg: query("6162636465.t.data-drop.net", TypeTXT), want: "6162636465.t.data-drop.net", qtype: TypeTXT},
	// A response captured by tcpdump from dig (example.com A, answer compressed).
	{name: "response", msg: testutil.MustHex("abcd81800001000100000000076578616d706c6503636f6d0000010001c00c000100010000012c00045db8d822"), want: "example.com", qtype: TypeA, resp: true},
	// The question name itself compressed: a pointer back into the header is rejected as not backwards of... the header.
	{name: "pointer loop", msg: testutil.MustHex("abcd01000001000000000000c00c00010001"), wantErr: "does not point backwards"},
	{name: "short header", msg: []byte{1, 2, 3}, wantErr: "shorter than the 12-byte header"},
	{name: "no question", msg: testutil.MustHex("abcd01000000000000000000"), wantErr: "no question"},
	{name: "label past end", msg: testutil.MustHex("abcd010000010000000000003f6162"), wantErr: "label runs past"},
	{name: "no type", msg: testutil.MustHex("abcd0100000100000000000001610000"), wantErr: "before type and class"},
	{name: "bad label type", msg: testutil.MustHex("abcd01000001000000000000400000010001"), wantErr: "label type 0x40"},
	{name: "too long", msg: query(strings.Repeat(strings.Repeat("a", 63)+".", 4)+"com", TypeA), wantErr: "longer than 255"},
}

func TestParse(t *testing.T) {
	buf := make([]byte, MaxNameLen)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := Parse(c.msg, buf)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(q.Name) != c.want || q.Type != c.qtype || q.Response != c.resp {
				t.Fatalf("got %q type %d resp %v, want %q type %d resp %v", q.Name, q.Type, q.Response, c.want, c.qtype, c.resp)
			}
		})
	}
	if _, err := Parse(testutil.MustHex("abcd01000000000000000000"), buf); !errors.Is(err, ErrNoQuestion) {
		t.Fatalf("want ErrNoQuestion, got %v", err)
	}
}

func TestParseNoAlloc(t *testing.T) {
	buf := make([]byte, MaxNameLen)
	msg := query("litedev.hik-connect.com", TypeA)
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(msg, buf) }); n != 0 {
		t.Fatalf("Parse allocates %v times per call", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range cases {
		f.Add(c.msg)
	}
	buf := make([]byte, MaxNameLen)
	f.Fuzz(func(t *testing.T, msg []byte) {
		q, err := Parse(msg, buf)
		if err == nil && len(q.Name) > MaxNameLen {
			t.Fatalf("name of %d bytes", len(q.Name))
		}
	})
}

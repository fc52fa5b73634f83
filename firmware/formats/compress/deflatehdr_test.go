package compress

import (
	"bytes"
	stdflate "compress/flate"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/flate"
)

// TestDeflateFirstBlockAcceptsReal checks that the first-block check never
// refuses a real stream: every level of both encoders, over text, random,
// constant and mixed data, short and long.
func TestDeflateFirstBlockAcceptsReal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 11))
	text := []byte(strings.Repeat("GET /cgi-bin/snapshot.cgi?chn=1 HTTP/1.1\r\nHost: camera\r\n\r\n", 200))
	random := make([]byte, 70000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	mixed := append(append(append([]byte{}, text...), random[:5000]...), make([]byte, 9000)...)
	inputs := [][]byte{nil, {0}, []byte("a"), text, random, make([]byte, 100000), mixed}
	for i := range 50 { // short skewed inputs: few symbols, lopsided codes
		b := make([]byte, 1+rng.IntN(3000))
		for j := range b {
			b[j] = "ab\x00"[min(rng.IntN(10+i), 2)]
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		for level := -2; level <= 9; level++ {
			var bk, bs bytes.Buffer
			wk, _ := flate.NewWriter(&bk, level)
			wk.Write(in)
			wk.Close()
			ws, _ := stdflate.NewWriter(&bs, level)
			ws.Write(in)
			ws.Close()
			for _, c := range [][]byte{bk.Bytes(), bs.Bytes()} {
				if why := deflateFirstBlock(c[:min(len(c), deflateHeaderMax)]); why != "" {
					t.Fatalf("level %d, %d bytes in: real stream refused: %s", level, len(in), why)
				}
			}
		}
	}
}

// TestDeflateFirstBlockRefuses checks crafted first blocks.
func TestDeflateFirstBlockRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		why  string
	}{
		{"reserved type", []byte{0x06}, "reserved block type"},
		{"stored, lengths disagree", []byte{0x00, 0x05, 0x00, 0xfa, 0xfe}, "stored block lengths disagree"},
		{"stored, lengths agree", []byte{0x00, 0x05, 0x00, 0xfa, 0xff}, ""},
		{"fixed", []byte{0x03, 0x00}, ""},
		// Dynamic, HLIT 31 (288 codes).
		{"too many codes", []byte{0x05 | 31<<3, 0x00, 0x00}, "too many literal/length or distance codes"},
		// Dynamic, HCLEN 4 lengths all zero: empty code-length code.
		{"empty code-length code", []byte{0x05, 0x00, 0x00, 0x00}, "code-length code over-subscribed or incomplete"},
		{"cut short", []byte{0x05}, ""},
	} {
		if got := deflateFirstBlock(tc.b); got != tc.why {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.why)
		}
	}
}

// TestZlibRandomNoEOB finds, in seeded random data, dynamic first blocks
// without an end-of-block code (the kind that decoded through megabytes of
// a random file before being refused): Identify refuses them with the
// reason, without decoding.
func TestZlibRandomNoEOB(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	found := 0
	for range 200000 {
		b := make([]byte, 2+deflateHeaderMax)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0], b[1] = 0x78, 0x9c
		b[2] = b[2]&^6 | 4 // dynamic block
		if deflateFirstBlock(b[2:]) != "no end-of-block code" {
			continue
		}
		found++
		_, err := identifyZlib(bytes.NewReader(b), 0, int64(len(b)))
		if err == nil || !strings.Contains(err.Error(), "no end-of-block code") {
			t.Fatalf("Identify = %v", err)
		}
		// A decoder never ends such a block.
		if _, err := io.ReadAll(flate.NewReader(bytes.NewReader(b[2:]))); err == nil {
			t.Fatal("a block without an end-of-block code decoded to its end")
		}
	}
	if found == 0 {
		t.Fatal("no such block in the random data")
	}
	t.Logf("%d blocks without an end-of-block code", found)
}

// FuzzDeflateFirstBlock checks that what the first-block check refuses no
// decoder decodes to a clean end.
func FuzzDeflateFirstBlock(f *testing.F) {
	for _, s := range [][]byte{{0x05, 0x00, 0x00, 0x00}, {0x06}, {0x00, 0x05, 0x00, 0xfa, 0xfe}} {
		f.Add(s)
	}
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 9)
	w.Write([]byte(strings.Repeat("hello, camera ", 100)))
	w.Close()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		why := deflateFirstBlock(data[:min(len(data), deflateHeaderMax)])
		if why == "" {
			return
		}
		out, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), 1<<20))
		if err == nil && len(out) < 1<<20 {
			t.Fatalf("refused (%s) but decodes to a clean end", why)
		}
		out, err = io.ReadAll(io.LimitReader(stdflate.NewReader(bytes.NewReader(data)), 1<<20))
		if err == nil && len(out) < 1<<20 {
			t.Fatalf("refused (%s) but compress/flate decodes it to a clean end", why)
		}
	})
}

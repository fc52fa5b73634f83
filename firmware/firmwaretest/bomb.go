package firmwaretest

import (
	"bytes"
	"compress/gzip"
	"testing"
)

// GzipBomb builds a gzip member of n zero bytes (n a multiple of 1 MiB, at
// least 2 MiB) without compressing n bytes: one deflate block for 1 MiB of
// zeros (byte-aligned by a sync flush) is repeated, then the final block and
// trailer follow.
func GzipBomb(t testing.TB, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	zw.Write(zero)
	zw.Flush()
	first := buf.Len()
	zw.Write(zero)
	zw.Flush()
	block := bytes.Clone(buf.Bytes()[first:])
	zw.Write(zero)
	zw.Flush()
	third := buf.Bytes()[first+len(block):]
	if !bytes.Equal(block, third) {
		t.Fatal("deflate blocks for zeros are not repeatable")
	}
	var out bytes.Buffer
	out.Write(buf.Bytes()[:first])
	for range n>>20 - 1 {
		out.Write(block)
	}
	out.Write([]byte{0x03, 0x00}) // final empty fixed block
	// The trailer's CRC does not matter: no decoder gets there within limits.
	out.Write([]byte{0, 0, 0, 0, byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})
	return out.Bytes()
}

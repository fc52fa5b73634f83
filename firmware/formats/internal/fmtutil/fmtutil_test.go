package fmtutil

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadErr(t *testing.T) {
	boom := errors.New("bad crc")
	r := &ReadErr{R: io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom))}
	if _, err := io.ReadAll(r); !errors.Is(err, boom) || !errors.Is(r.Err, boom) {
		t.Fatalf("ReadAll error %v, remembered %v", err, r.Err)
	}
	ok := &ReadErr{R: bytes.NewReader([]byte("abc"))}
	if _, err := io.ReadAll(ok); err != nil || ok.Err != nil {
		t.Fatalf("clean reader: %v, %v", err, ok.Err)
	}
}

func TestZeroPadEnd(t *testing.T) {
	data := append(bytes.Repeat([]byte{1}, 10), make([]byte, 30)...)
	r := bytes.NewReader(data)
	for _, tc := range []struct{ end, block, want int64 }{
		{10, 8, 16},  // zeros up to the next multiple
		{10, 20, 20}, // a block size that is not a power of two
		{16, 16, 16}, // already aligned
		{10, 64, 10}, // the padding runs past the data
		{5, 8, 5},    // non-zero bytes before the boundary
	} {
		if got := ZeroPadEnd(r, tc.end, tc.block); got != tc.want {
			t.Errorf("ZeroPadEnd(%d, %d) = %d, want %d", tc.end, tc.block, got, tc.want)
		}
	}
}

func TestByteSum(t *testing.T) {
	s := &ByteSum{R: iotest.OneByteReader(bytes.NewReader([]byte{1, 2, 0xff, 0xff}))}
	if b, err := io.ReadAll(s); err != nil || len(b) != 4 {
		t.Fatalf("ReadAll: %d bytes, %v", len(b), err)
	}
	if s.Sum != 1+2+0xff+0xff || s.N != 4 {
		t.Fatalf("Sum %#x, N %d", s.Sum, s.N)
	}
}

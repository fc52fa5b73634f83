package annexb

import (
	"reflect"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want [][]byte
	}{
		{[]byte{0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3}, [][]byte{{0x67, 1, 2}, {0x68, 3}}},
		{[]byte{9, 9, 0, 0, 1, 0x65, 0, 0, 0, 1, 0x41}, [][]byte{{0x65}, {0x41}}},
		{[]byte{1, 2, 3}, nil},
		{[]byte{0, 0, 1}, nil},
	} {
		if got := Split(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%x) = %x, want %x", tc.in, got, tc.want)
		}
	}
}

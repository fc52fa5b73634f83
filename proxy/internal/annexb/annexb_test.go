package annexb

import (
	"reflect"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
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

func TestAppendEmulationPrevention(t *testing.T) {
	got := AppendEmulationPrevention([]byte{6}, []byte{0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 0})
	want := []byte{6, 0, 0, 3, 1, 0, 0, 3, 0, 0, 3, 0, 4, 0, 0}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	// mediacommon removes what was added.
	rbsp := []byte{0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 9}
	if back := h264.EmulationPreventionRemove(AppendEmulationPrevention(nil, rbsp)); !reflect.DeepEqual(back, rbsp) {
		t.Fatalf("round trip: %x, want %x", back, rbsp)
	}
}

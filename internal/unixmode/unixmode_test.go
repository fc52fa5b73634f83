package unixmode

import (
	"io/fs"
	"testing"
)

func TestFromUnix(t *testing.T) {
	for _, tc := range []struct {
		m    uint32
		want fs.FileMode
	}{
		{0o644, 0o644},
		{0o100755, 0o755}, // the file type bits are ignored
		{0o4755, fs.ModeSetuid | 0o755},
		{0o2711, fs.ModeSetgid | 0o711},
		{0o41777, fs.ModeSticky | 0o777},
		{0o7000, fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky},
	} {
		if got := FromUnix(tc.m); got != tc.want {
			t.Errorf("FromUnix(%#o) = %v, want %v", tc.m, got, tc.want)
		}
	}
}

func TestToUnix(t *testing.T) {
	for m := uint32(0); m <= 0o7777; m++ {
		if got := ToUnix(FromUnix(m)); got != m {
			t.Fatalf("ToUnix(FromUnix(%#o)) = %#o", m, got)
		}
	}
	if got := ToUnix(fs.ModeDir | fs.ModeSymlink | 0o755); got != 0o755 {
		t.Errorf("type bits leak into ToUnix: %#o", got)
	}
}

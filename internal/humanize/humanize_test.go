package humanize

import "testing"

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 16 << 20: "16.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "100M": 100 << 20, "100m": 100 << 20, "100MiB": 100 << 20, "100MB": 100e6, "100mb": 100e6,
		"500kB": 500e3, "500KB": 500e3, "500K": 500 << 10, "1GiB": 1 << 30, "1.5G": 3 << 29, "2T": 2 << 40,
		"20 MB": 20e6, " 7B ": 7, "0": 0,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1e3", "0x10", "NaN", "inf", "10 furlongs", "9999999999T", "1_000"} {
		if v, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, v)
		}
	}
}

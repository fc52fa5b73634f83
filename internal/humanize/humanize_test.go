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

func TestBitrate(t *testing.T) {
	for in, want := range map[string]int64{
		"50M": 50e6, "50m": 50e6, "50Mbit/s": 50e6, "50 Mbps": 50e6, "800k": 800e3, "1.5G": 1.5e9, "9600": 9600, "0": 0,
	} {
		if got, err := ParseBitrate(in); err != nil || got != want {
			t.Errorf("ParseBitrate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1e3", "0x10", "NaN", "50MiB", "fast", "99999999999G", "1_000"} {
		if v, err := ParseBitrate(in); err == nil {
			t.Errorf("ParseBitrate(%q) = %d, want an error", in, v)
		}
	}
	for n, want := range map[int64]string{800: "800 bit/s", 2500e3: "2.5 Mbit/s", 50e6: "50.0 Mbit/s", 1.2e9: "1.2 Gbit/s"} {
		if got := Bitrate(n); got != want {
			t.Errorf("Bitrate(%d) = %q, want %q", n, got, want)
		}
	}
}

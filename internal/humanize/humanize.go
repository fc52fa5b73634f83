// Package humanize formats quantities for people reading cordon's text output,
// and parses the sizes people write in flags and configuration files: the one
// byte-size syntax of every cordon command and file.
package humanize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bytes formats n with a binary unit: "512 B", "1.5 KiB", "16.0 MiB", "1.0 GiB".
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ParseBytes parses a size as people write it: a number of bytes, or a
// number (fractions allowed) with a unit, case-insensitive. K, M, G, T,
// KiB, MiB, GiB and TiB are powers of 1024; kB, MB, GB and TB powers of
// 1000; B is bytes. "100M" is 100 MiB, "100MB" 100,000,000 bytes, "1.5G"
// 1.5 GiB. Negative sizes and sizes over 8 EiB are errors.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := float64(1)
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || v*mult >= math.MaxInt64 || t == "" || strings.ContainsAny(t, "xpe_") {
		return 0, fmt.Errorf("bad size %q (want e.g. 512MiB, 100M, 20MB, 8GiB or a number of bytes)", s)
	}
	return int64(v * mult), nil
}

// Bitrate formats bits per second with a decimal unit: "800 bit/s",
// "2.5 Mbit/s", "1.2 Gbit/s".
func Bitrate(bps int64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.1f Gbit/s", float64(bps)/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", float64(bps)/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", float64(bps)/1e3)
	}
	return fmt.Sprintf("%d bit/s", bps)
}

// ParseBitrate parses a bitrate in bits per second as people write it: a
// number (fractions allowed) with an optional decimal unit k, M or G
// (case-insensitive, powers of 1000, as network links are sold), itself
// optionally followed by "bit/s" or "bps". "50M", "50Mbit/s" and "50Mbps"
// are 50,000,000 bit/s; "800k" is 800,000. Negative rates and rates over
// 8 Ebit/s are errors.
func ParseBitrate(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	for _, suffix := range []string{"bit/s", "bps"} {
		if strings.HasSuffix(t, suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, suffix))
			break
		}
	}
	mult := float64(1)
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"k", 1e3}, {"m", 1e6}, {"g", 1e9}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || v*mult >= math.MaxInt64 || t == "" || strings.ContainsAny(t, "xpe_") {
		return 0, fmt.Errorf("bad bitrate %q (want bits per second, e.g. 50M, 800k, 1.5G or 50Mbit/s)", s)
	}
	return int64(v * mult), nil
}

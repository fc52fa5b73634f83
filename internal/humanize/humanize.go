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

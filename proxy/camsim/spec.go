package camsim

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseCamera parses a camera spec name[:codec[:WxH[:fps[:bitrate]]]], for
// example "lobby:h265:1920x1080:15:2M". Empty fields keep their default.
func ParseCamera(spec string) (Camera, error) {
	var c Camera
	f := strings.Split(spec, ":")
	if len(f) > 5 {
		return c, fmt.Errorf("camera spec %q: want name[:codec[:WxH[:fps[:bitrate]]]]", spec)
	}
	c.Name = f[0]
	if !nameRE.MatchString(c.Name) {
		return c, fmt.Errorf("camera spec %q: name %q: want letters, digits, '.', '_' or '-'", spec, c.Name)
	}
	if len(f) > 1 && f[1] != "" {
		c.Codec = strings.ToLower(f[1])
		if c.Codec == "hevc" {
			c.Codec = "h265"
		}
		if c.Codec != "h264" && c.Codec != "h265" {
			return c, fmt.Errorf("camera spec %q: codec %q: want h264 or h265", spec, f[1])
		}
	}
	if len(f) > 2 && f[2] != "" {
		w, h, err := ParseSize(f[2])
		if err != nil {
			return c, fmt.Errorf("camera spec %q: %w", spec, err)
		}
		c.Width, c.Height = w, h
	}
	if len(f) > 3 && f[3] != "" {
		n, err := strconv.Atoi(f[3])
		if err != nil || n < 1 || n > 120 {
			return c, fmt.Errorf("camera spec %q: fps %q: want 1 to 120", spec, f[3])
		}
		c.FPS = n
	}
	if len(f) > 4 && f[4] != "" {
		b, err := ParseBitrate(f[4])
		if err != nil {
			return c, fmt.Errorf("camera spec %q: %w", spec, err)
		}
		c.Bitrate = b
	}
	return c, nil
}

// ParseSize parses "WxH", for example "1280x720".
func ParseSize(s string) (int, int, error) {
	ws, hs, ok := strings.Cut(strings.ToLower(s), "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w < 1 || h < 1 || w > 16384 || h > 16384 {
		return 0, 0, fmt.Errorf("size %q: want WxH, for example 1280x720", s)
	}
	return w, h, nil
}

// ParseBitrate parses a bit rate in bit/s with an optional k or M suffix
// (powers of 1000), for example "2M" or "500k".
func ParseBitrate(s string) (int, error) {
	mul := 1.0
	t := s
	switch {
	case strings.HasSuffix(t, "k"), strings.HasSuffix(t, "K"):
		mul, t = 1e3, t[:len(t)-1]
	case strings.HasSuffix(t, "M"), strings.HasSuffix(t, "m"):
		mul, t = 1e6, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v >= 0 && v*mul <= 200e6) { // also rejects NaN
		return 0, fmt.Errorf("bitrate %q: want bit/s up to 200M, for example 2M or 500k", s)
	}
	return int(v * mul), nil
}

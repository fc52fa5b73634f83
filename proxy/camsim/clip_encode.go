package camsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrNoFFmpeg is returned by EncodeClip when ffmpeg is not installed.
var ErrNoFFmpeg = errors.New("camsim: ffmpeg not found (it encodes clips that are not embedded)")

// EncodeClip returns the path of the clip of codec, size and bit rate in dir
// (named by ClipName), first encoding it there with the embedded recipe
// (Recipe: ffmpeg with libx264 or libx265, a few seconds of CPU) unless dir
// already holds it. Use dir as Server.ClipDir.
func EncodeClip(ctx context.Context, dir, codec string, w, h, bitrate int) (string, error) {
	if codec != "h264" && codec != "h265" {
		return "", fmt.Errorf("camsim: codec %q: want h264 or h265", codec)
	}
	if w < 16 || h < 16 || w > 4096 || h > 4096 || w%2 != 0 || h%2 != 0 {
		return "", fmt.Errorf("camsim: size %dx%d: want even sides of 16 to 4096", w, h)
	}
	if bitrate < 50_000 || bitrate > 100_000_000 {
		return "", fmt.Errorf("camsim: bit rate %d: want 50k to 100M", bitrate)
	}
	name := ClipName(codec, w, h, bitrate)
	out := filepath.Join(dir, name)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return "", ErrNoFFmpeg
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("camsim: clip cache: %w", err)
	}
	tmp := out + ".part"
	cmd := exec.CommandContext(ctx, "sh", "-c", Recipe, "make-clips.sh", codec, fmt.Sprintf("%dx%d", w, h), FormatBitrate(bitrate), tmp)
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("camsim: encoding %s: %w\n%s", name, err, b)
	}
	b, err := os.ReadFile(tmp)
	if err == nil {
		_, err = parseClip(name, b)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("camsim: encoded %s: %w", name, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("camsim: clip cache: %w", err)
	}
	return out, nil
}

package squashfs

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// benchTree writes a camera-like tree of about 24 MiB: text that compresses
// well (logs, scripts, web pages), incompressible blobs (firmware blobs,
// certificates) and many small files.
func benchTree(b *testing.B, dir string) int64 {
	rng := rand.New(rand.NewSource(1))
	var total int64
	write := func(name string, data []byte) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	words := []string{"rtsp", "onvif", "stream", "config", "main", "sub", "h264", "admin", "port", "554", "enable", "=", "\n"}
	text := func(n int) []byte {
		out := make([]byte, 0, n)
		for len(out) < n {
			out = append(out, words[rng.Intn(len(words))]...)
			out = append(out, ' ')
		}
		return out[:n]
	}
	for i := range 8 {
		write(fmt.Sprintf("usr/lib/lib%d.so", i), text(1<<20))
	}
	for i := range 4 {
		blob := make([]byte, 2<<20)
		rng.Read(blob)
		write(fmt.Sprintf("lib/firmware/blob%d.bin", i), blob)
	}
	for i := range 2000 {
		write(fmt.Sprintf("usr/share/www/d%02d/page%04d.html", i%40, i), text(1000+rng.Intn(4000)))
	}
	return total
}

// BenchmarkExtract compares extraction of the same image by cordon and by
// unsquashfs (the baseline), interleaved in the same loop so load on the
// machine hits both alike, for four compressors. Output goes to /dev/shm when
// it exists, so both sides measure unpacking rather than the disk. Metrics:
//
//	decode-MB/s      this package's Extract reading every file into io.Discard
//	unsq-cat-MB/s    unsquashfs -cat of every file to /dev/null
//	decode/unsq-cat  time ratio decode/unsq-cat (below 1: faster)
//	format-MB/s      this package's Extract writing plain files (like unsquashfs)
//	unpack-MB/s      firmware.Unpack end to end (sanitising Sink, sha256, manifest, rescan)
//	unsquashfs-MB/s  unsquashfs -d
//	format/unsq      time ratio format/unsquashfs (below 1: faster than unsquashfs)
//	unpack/unsq      time ratio Unpack/unsquashfs
//
//	go test -run '^$' -bench Extract -benchtime 5x ./firmware/formats/squashfs
func BenchmarkExtract(b *testing.B) {
	testutil.NeedTool(b, "mksquashfs", "unsquashfs")
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "cordon-bench-"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
	}
	total := benchTree(b, filepath.Join(dir, "tree"))
	for _, comp := range []string{"gzip", "xz", "zstd", "lz4"} {
		img := filepath.Join(dir, comp+".img")
		if out, err := exec.Command("mksquashfs", filepath.Join(dir, "tree"), img, "-comp", comp, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
			b.Fatalf("mksquashfs: %v\n%s", err, out)
		}
		b.Run(comp, func(b *testing.B) {
			f, err := os.Open(img)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			var tDecode, tCat, tFormat, tUnpack, tUnsq time.Duration
			ls, err := exec.Command("unsquashfs", "-lc", "-d", "", img).Output()
			if err != nil {
				b.Fatal(err)
			}
			catArgs := append([]string{"-cat", img}, strings.Fields(string(ls))...)
			i := 0
			timed := func(d *time.Duration, fn func(out string) error) {
				out := filepath.Join(dir, fmt.Sprintf("out-%d", i))
				i++
				start := time.Now()
				if err := fn(out); err != nil {
					b.Fatal(err)
				}
				*d += time.Since(start)
				b.StopTimer()
				os.RemoveAll(out)
				b.StartTimer()
			}
			for b.Loop() {
				timed(&tDecode, func(string) error {
					return Format.Extract(context.Background(), io.NewSectionReader(f, 0, st.Size()), nil, discardSink{})
				})
				timed(&tCat, func(string) error {
					cmd := exec.Command("unsquashfs", catArgs...)
					cmd.Stdout = io.Discard
					return cmd.Run()
				})
				timed(&tFormat, func(out string) error {
					return Format.Extract(context.Background(), io.NewSectionReader(f, 0, st.Size()), nil, diskSink(out))
				})
				timed(&tUnsq, func(out string) error {
					if o, err := exec.Command("unsquashfs", "-no-progress", "-quiet", "-d", out, img).CombinedOutput(); err != nil {
						return fmt.Errorf("unsquashfs: %v\n%s", err, o)
					}
					return nil
				})
				timed(&tUnpack, func(out string) error {
					_, err := firmware.Unpack(context.Background(), img, out, firmware.Options{Formats: []*firmware.Format{Format}})
					return err
				})
			}
			mbs := func(d time.Duration) float64 { return float64(total) * float64(b.N) / 1e6 / d.Seconds() }
			b.ReportMetric(mbs(tDecode), "decode-MB/s")
			b.ReportMetric(mbs(tCat), "unsq-cat-MB/s")
			b.ReportMetric(tDecode.Seconds()/tCat.Seconds(), "decode/unsq-cat")
			b.ReportMetric(mbs(tFormat), "format-MB/s")
			b.ReportMetric(mbs(tUnpack), "unpack-MB/s")
			b.ReportMetric(mbs(tUnsq), "unsquashfs-MB/s")
			b.ReportMetric(tFormat.Seconds()/tUnsq.Seconds(), "format/unsq")
			b.ReportMetric(tUnpack.Seconds()/tUnsq.Seconds(), "unpack/unsq")
		})
	}
}

// discardSink reads every file and keeps nothing: the format's own cost.
type discardSink struct{}

func (discardSink) Add(h *firmware.Header, r io.Reader) error {
	if r != nil {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	return nil
}

func (discardSink) Warn(string) {}

// diskSink writes files and directories plainly below its folder (trusted
// benchmark input only: no sanitising), to compare like with like with
// unsquashfs, which also just writes the tree.
type diskSink string

func (d diskSink) Add(h *firmware.Header, r io.Reader) error {
	p := filepath.Join(string(d), h.Name)
	switch h.Type {
	case firmware.TypeDir:
		return os.MkdirAll(p, 0o755)
	case firmware.TypeFile:
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if r != nil {
			if _, err := io.Copy(f, r); err != nil {
				f.Close()
				return err
			}
		}
		return f.Close()
	}
	return nil
}

func (diskSink) Warn(string) {}

// BenchmarkImage decodes the image named by $CORDON_SQUASHFS_IMAGE (every
// file into io.Discard) and, as the baseline, has unsquashfs write it to a
// folder next to it: the format's own throughput on a large real image.
//
//	CORDON_SQUASHFS_IMAGE=/dev/shm/big.img go test -run '^$' -bench Image ./firmware/formats/squashfs
func BenchmarkImage(b *testing.B) {
	img := os.Getenv("CORDON_SQUASHFS_IMAGE")
	if img == "" {
		b.Skip("CORDON_SQUASHFS_IMAGE not set")
	}
	testutil.NeedTool(b, "unsquashfs")
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	var tDecode, tUnsq time.Duration
	for b.Loop() {
		start := time.Now()
		if err := Format.Extract(context.Background(), io.NewSectionReader(f, 0, st.Size()), nil, discardSink{}); err != nil {
			b.Fatal(err)
		}
		tDecode += time.Since(start)
		out := img + ".unsquashfs"
		start = time.Now()
		if o, err := exec.Command("unsquashfs", "-q", "-n", "-d", out, img).CombinedOutput(); err != nil {
			b.Fatalf("unsquashfs: %v\n%s", err, o)
		}
		tUnsq += time.Since(start)
		os.RemoveAll(out)
	}
	b.ReportMetric(tDecode.Seconds()/float64(b.N), "decode-s")
	b.ReportMetric(tUnsq.Seconds()/float64(b.N), "unsquashfs-s")
	b.ReportMetric(tDecode.Seconds()/tUnsq.Seconds(), "decode/unsq")
}

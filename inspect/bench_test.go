package inspect

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// benchTree is a generated unpacked firmware of 5,000 files: configs and
// scripts, copies of the fixture ELFs with vendor strings, passwd/shadow
// pairs, and larger binary blobs, about 40 MiB in all.
var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

const benchFiles = 5000

func makeBenchTree(b *testing.B) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "cordon-inspect-bench-")
		if benchErr != nil {
			return
		}
		elfs := [][]byte{}
		for _, p := range []string{"testdata/fw/usr/bin/cloudd", "testdata/fw/bin/busybox", "testdata/clean/usr/bin/app"} {
			d, err := os.ReadFile(p)
			if err != nil {
				benchErr = err
				return
			}
			elfs = append(elfs, d)
		}
		shadow, _ := os.ReadFile("testdata/clean/etc/shadow")
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range benchFiles {
			dir := filepath.Join(benchDir, fmt.Sprintf("d%02d/s%02d", i%50, i%37))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				benchErr = err
				return
			}
			var data []byte
			name := "f" + strconv.Itoa(i)
			switch {
			case i%10 < 6: // configuration and text
				var sb strings.Builder
				for l := range 20 + rng.IntN(80) {
					fmt.Fprintf(&sb, "key%d=value %d http://10.0.%d.%d/path %s\n", l, rng.IntN(1e6), l%255, i%255,
						[]string{"enable=1", "mode=auto", "server=update.example.com", "pub-cfg.secu100.net"}[l%4])
				}
				data, name = []byte(sb.String()), name+".conf"
			case i%10 < 8: // ELF binaries
				data = elfs[i%len(elfs)]
			case i%10 == 8: // init scripts and accounts
				if i%20 == 8 {
					data, name = shadow, "shadow-"+name
				} else {
					data, name = []byte("#!/bin/sh\ndropbear -p 22\n/usr/bin/app &\n"), "rc"+name
				}
			default: // blobs: compressed-looking data with a few strings
				data = make([]byte, 16<<10+rng.IntN(48<<10))
				for j := range data {
					data[j] = byte(rng.Uint32())
				}
				copy(data[len(data)/2:], "BusyBox v1.31.1 (2021-01-01) multi-call binary.\x00")
			}
			if benchErr = os.WriteFile(filepath.Join(dir, name), data, 0o644); benchErr != nil {
				return
			}
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

// TestMain removes the generated benchmark tree.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func peakRSS() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func inspectBench(b *testing.B, dir string, workers int) time.Duration {
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		r, err := Run(context.Background(), dir, os.DirFS(dir), Options{Workers: workers})
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		if r.Stats.Files != benchFiles {
			b.Fatalf("inspected %d files; want %d", r.Stats.Files, benchFiles)
		}
		b.SetBytes(r.Stats.Bytes)
	}
	return total
}

// BenchmarkInspectTree inspects the 5,000-file tree with one and two
// workers; BenchmarkInspectScaling runs both in the same iteration and
// reports the speedup of two workers over one.
func BenchmarkInspectTree(b *testing.B) {
	dir := makeBenchTree(b)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			inspectBench(b, dir, w)
			b.ReportMetric(peakRSS(), "peak-RSS-MiB")
		})
	}
}

func BenchmarkInspectScaling(b *testing.B) {
	dir := makeBenchTree(b)
	var one, two, cpu1, cpu2 time.Duration
	for b.Loop() {
		for _, w := range []int{1, 2} {
			start, c0 := time.Now(), testutil.CPUTime(b)
			if _, err := Run(context.Background(), dir, os.DirFS(dir), Options{Workers: w}); err != nil {
				b.Fatal(err)
			}
			if w == 1 {
				one += time.Since(start)
				cpu1 += testutil.CPUTime(b) - c0
			} else {
				two += time.Since(start)
				cpu2 += testutil.CPUTime(b) - c0
			}
		}
	}
	b.ReportMetric(one.Seconds()/float64(b.N), "s/op-1worker")
	b.ReportMetric(two.Seconds()/float64(b.N), "s/op-2workers")
	b.ReportMetric(cpu1.Seconds()/float64(b.N), "cpu-s/op-1worker")
	b.ReportMetric(cpu2.Seconds()/float64(b.N), "cpu-s/op-2workers")
	b.ReportMetric(one.Seconds()/two.Seconds(), "speedup")
	b.ReportMetric(peakRSS(), "peak-RSS-MiB")
}

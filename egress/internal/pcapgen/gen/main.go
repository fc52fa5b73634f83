// Command gen writes cordon egress's crafted captures: the planted-event
// capture (-scenario planted), the small CLI capture (-scenario small) or
// the benchmark captures of -n packets (-scenario bulk, the default: the
// proxy pulling RTSP; -scenario camnet: a camera network, 200 cameras,
// pcapgen.CameraNet, whole packets unless -snap).
//
//	go run ./egress/internal/pcapgen/gen -n 1000000 -o /tmp/bulk.pcap
//	go run ./egress/internal/pcapgen/gen -scenario camnet -n 1000000 -o /tmp/camnet.pcap
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cordon-vms/cordon/egress/internal/pcapgen"
)

func main() {
	n := flag.Int("n", 1_000_000, "packets in the bulk capture")
	out := flag.String("o", "", "output `FILE` (required)")
	scenario := flag.String("scenario", "bulk", "bulk, camnet, planted or small")
	snap := flag.Int("snap", 0, "with -scenario camnet: captured bytes per packet (0: whole packets)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gen: -o FILE is required")
		os.Exit(2)
	}
	if err := run(*out, *scenario, *n, *snap); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(path, scenario string, n, snap int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var gen func(io.Writer) error
	switch scenario {
	case "bulk":
		gen = func(w io.Writer) error { return pcapgen.Bulk(w, n) }
	case "camnet":
		gen = func(w io.Writer) error { return pcapgen.CameraNet(w, n, snap) }
	case "planted":
		gen = pcapgen.Planted
	case "small":
		gen = pcapgen.Small
	default:
		return fmt.Errorf("unknown scenario %q", scenario)
	}
	if err := gen(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

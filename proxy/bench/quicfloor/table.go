package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// writeTable prints, per system, the medians over the rounds: receiver
// Mbit/s, CPU s/GB at each end, each end's ratio to tcp and to tls of the
// same round (the median of the rounds' ratios), context switches per MB
// and the load averages seen.
func writeTable(w io.Writer, o options, systems []system, runs []run) error {
	fmt.Fprintf(w, "%d flows × %s, %d rounds of %v, medians (ratios: median of each round's ratio)\n", o.flows, rateText(o), o.rounds, o.duration)
	if o.rate > 0 {
		fmt.Fprintf(w, "runs: those used; a run that got less than %.0f%% of the offered bytes was starved of CPU and is left out\n", 100*o.minGot)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "system\truns\tMbit/s\tgot\tsend s/GB\trecv s/GB\tsend/tcp\trecv/tcp\tsend/tls\trecv/tls\tsend cs/MB\trecv cs/MB\tlost\tgro seg/read\tacks/pkt\tload")
	for _, s := range systems {
		var mbit, got, sgb, rgb, stcp, rtcp, stls, rtls, scs, rcs, lost, gro, acks []float64
		var loads []string
		used, total := 0, 0
		for _, r := range runs {
			if r.sys != s.name {
				continue
			}
			total++
			if !r.valid(o) {
				continue
			}
			used++
			mb := float64(r.recv.Bytes) / 1e6
			mbit = append(mbit, mb*8/o.duration.Seconds())
			got = append(got, r.delivered(o))
			sgb, rgb = append(sgb, r.sendGB()), append(rgb, r.recvGB())
			scs = append(scs, float64(r.send.Vcsw+r.send.Ivcsw)/mb)
			rcs = append(rcs, float64(r.recv.Vcsw+r.recv.Ivcsw)/mb)
			lost = append(lost, float64(r.recv.Lost))
			if r.recv.GRO.Reads > 0 {
				gro = append(gro, float64(r.recv.GRO.Segments)/float64(r.recv.GRO.Reads))
			}
			if r.recv.PktIn > 0 {
				acks = append(acks, float64(r.recv.PktOut)/float64(r.recv.PktIn))
			}
			loads = append(loads, r.load)
			if b, ok := baseline(o, runs, r.round, "tcp"); ok {
				stcp, rtcp = append(stcp, r.sendGB()/b.sendGB()), append(rtcp, r.recvGB()/b.recvGB())
			}
			if b, ok := baseline(o, runs, r.round, "tls"); ok {
				stls, rtls = append(stls, r.sendGB()/b.sendGB()), append(rtls, r.recvGB()/b.recvGB())
			}
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%.1f\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\n", s.name, used, total, median(mbit), optionalPct(got),
			median(sgb), median(rgb), ratio(stcp), ratio(rtcp), ratio(stls), ratio(rtls),
			median(scs), median(rcs), median(lost), optional(gro), optional2(acks), strings.Join(loads, " "))
	}
	return tw.Flush()
}

func baseline(o options, runs []run, round int, sys string) (run, bool) {
	for _, r := range runs {
		if r.round == round && r.sys == sys && r.recv.Bytes > 0 && r.valid(o) {
			return r, true
		}
	}
	return run{}, false
}

func ratio(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", median(v))
}

func optional(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", median(v))
}

func rateText(o options) string {
	if o.rate <= 0 {
		return fmt.Sprintf("bulk (%d B writes)", o.frameSize())
	}
	return fmt.Sprintf("%.1f Mbit/s (%d B frames at %d fps)", float64(o.rate)/1e6, o.frameSize(), o.fps)
}

func optionalPct(v []float64) string {
	if len(v) == 0 || v[0] < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*median(v))
}

func optional2(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", median(v))
}

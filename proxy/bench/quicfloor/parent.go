package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// run is one system's figures in one round.
type run struct {
	sys        string
	round      int
	send, recv endResult
	load       string // /proc/loadavg's first figure at the end
}

func (r run) perGB(cpu time.Duration) float64 {
	if r.recv.Bytes == 0 {
		return 0
	}
	return cpu.Seconds() / (float64(r.recv.Bytes) / 1e9)
}

// delivered is the share of the offered bytes the receiver got (-1 in
// bulk). A paced run that got much less than offered was starved of CPU
// by other load: its CPU per GB is not comparable.
func (r run) delivered(o options) float64 {
	if o.rate <= 0 {
		return -1
	}
	return float64(r.recv.Bytes) / (float64(o.flows) * float64(o.rate) / 8 * o.duration.Seconds())
}

// valid reports whether r counts: a paced run must have got o.minGot of
// the offered bytes.
func (r run) valid(o options) bool {
	return r.recv.Bytes > 0 && (o.rate <= 0 || r.delivered(o) >= o.minGot)
}

func (r run) sendGB() float64 { return r.perGB(r.send.CPU) }
func (r run) recvGB() float64 { return r.perGB(r.recv.CPU) }

func runParent(o options) error {
	var systems []system
	for _, n := range strings.Split(o.systems, ",") {
		s, err := parseSystem(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	var runs []run
	for round := 1; round <= o.rounds; round++ {
		for _, s := range systems {
			r, err := runOne(o, s)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", s.name, round, err)
			}
			r.round = round
			fmt.Fprintf(os.Stderr, "round %d %-16s %6.1f Mbit/s (%3.0f%%)  send %6.2f  recv %6.2f s/GB  load %s\n",
				round, s.name, float64(r.recv.Bytes)*8/o.duration.Seconds()/1e6, 100*r.delivered(o), r.sendGB(), r.recvGB(), r.load)
			runs = append(runs, r)
		}
	}
	return writeTable(os.Stdout, o, systems, runs)
}

// runOne runs a sender and a receiver child for system s.
func runOne(o options, s system) (run, error) {
	exe, err := os.Executable()
	if err != nil {
		return run{}, err
	}
	start := time.Now().Add(time.Second + o.warmup)
	stop := start.Add(o.duration)
	ctx, cancel := context.WithDeadline(context.Background(), stop.Add(40*time.Second))
	defer cancel()
	args := func(role, addr string) []string {
		return []string{"-role", role, "-sys", s.name, "-addr", addr, "-flows", fmt.Sprint(o.flows),
			"-rate", fmt.Sprint(o.rate), "-fps", fmt.Sprint(o.fps),
			"-start", fmt.Sprint(start.UnixNano()), "-stop", fmt.Sprint(stop.UnixNano())}
	}
	send := exec.CommandContext(ctx, exe, args("send", "")...)
	send.Env = append(os.Environ(), s.sendEnv...)
	send.Stderr = os.Stderr
	sout, err := send.StdoutPipe()
	if err != nil {
		return run{}, err
	}
	if err := send.Start(); err != nil {
		return run{}, err
	}
	defer send.Wait()
	defer cancel() // kills a child left running on an error
	sl := bufio.NewScanner(sout)
	if !sl.Scan() || !strings.HasPrefix(sl.Text(), "addr ") {
		return run{}, fmt.Errorf("sender did not print its address")
	}
	recv := exec.CommandContext(ctx, exe, args("recv", strings.TrimPrefix(sl.Text(), "addr "))...)
	recv.Env = append(os.Environ(), s.recvEnv...)
	recv.Stderr = os.Stderr
	rout, err := recv.Output()
	if err != nil {
		return run{}, fmt.Errorf("receiver: %w", err)
	}
	r := run{sys: s.name, load: loadavg()}
	if err := lastJSON(strings.NewReader(string(rout)), &r.recv); err != nil {
		return run{}, fmt.Errorf("receiver: %w", err)
	}
	rest, _ := io.ReadAll(sout)
	if err := lastJSON(strings.NewReader(string(rest)), &r.send); err != nil {
		return run{}, fmt.Errorf("sender: %w", err)
	}
	return r, nil
}

func lastJSON(rd io.Reader, v any) error {
	var last string
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "{") {
			last = sc.Text()
		}
	}
	if last == "" {
		return fmt.Errorf("no result")
	}
	return json.Unmarshal([]byte(last), v)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

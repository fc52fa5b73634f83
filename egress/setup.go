package egress

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cordon-vms/cordon/internal/watchlist"
)

// LoadWatchlist returns the embedded vendor-cloud watch-list merged with the
// policy's watchlists (relative paths are relative to dir, the policy file's
// folder) and then with extra (paths as given).
func (p *Policy) LoadWatchlist(dir string, extra ...string) (*watchlist.List, error) {
	wl := watchlist.Default()
	files := slices.Clone(extra)
	for _, f := range p.Watchlists {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dir, f)
		}
		files = append(files, f)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("watch-list: %w", err)
		}
		more, err := watchlist.Parse(f, data)
		if err != nil {
			return nil, err
		}
		wl = wl.Merge(more)
	}
	return wl, nil
}

// ErrNoBaseline is returned by OpenBaseline when a reset is asked for but no
// baseline file is configured.
var ErrNoBaseline = errors.New("egress: --reset-baseline needs a baseline (--baseline FILE or baseline.file in the policy)")

// OpenBaseline opens the new-destination baseline: the file override when
// set, else the policy's baseline.file (relative to dir, the policy file's
// folder). reset deletes it first. It returns nil, nil when no baseline is
// configured (new-destination is then off).
func (p *Policy) OpenBaseline(dir, override string, reset bool) (*Baseline, error) {
	path := p.Baseline.File
	if override != "" {
		path = override
	} else if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	if reset {
		if path == "" {
			return nil, ErrNoBaseline
		}
		if err := resetBaseline(path); err != nil {
			return nil, err
		}
	}
	if path == "" {
		return nil, nil
	}
	return LoadBaseline(path, p.Baseline.Learn, p.Baseline.Max)
}

// RunLive runs a live input (run, until it returns) while advancing the
// engine clock every second of wall time, so aggregation windows close and
// idle flows expire while the network is quiet. A run that ends because
// ctx was canceled is not an error.
func (e *Engine) RunLive(ctx context.Context, run func(context.Context) error) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				e.Advance(ctx, now)
			}
		}
	})
	err := run(ctx)
	close(done)
	wg.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// RunCapture reads a live capture until ctx is done (RunLive around Run),
// closing src when ctx is done so a blocked read returns. It does not close
// src otherwise.
func (e *Engine) RunCapture(ctx context.Context, src PacketSource) error {
	stop := context.AfterFunc(ctx, func() { src.Close() })
	defer stop()
	return e.RunLive(ctx, func(ctx context.Context) error { return e.Run(ctx, src) })
}

// Summary is one line of counts and the rate over elapsed, for --stats.
func (m *Metrics) Summary(elapsed time.Duration) string {
	var alerts uint64
	for i := range m.Alerts {
		alerts += m.Alerts[i].Load()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "egress: %d packets, %d flow records, %d flows (%d evicted), %d malformed, %d alerts in %s (%.0f packets+records/s)",
		m.Packets.Load(), m.FlowRecords.Load(), m.Flows.Load(), m.FlowEvictions.Load(), m.DecodeErrors.Load(), alerts,
		elapsed.Round(time.Millisecond), float64(m.Packets.Load()+m.FlowRecords.Load())/elapsed.Seconds())
	if r := m.Reassembled.Load() + m.FragmentsLost.Load(); r > 0 {
		fmt.Fprintf(&b, "; %d IP datagrams reassembled, %d given up", m.Reassembled.Load(), m.FragmentsLost.Load())
	}
	if n := m.LinkControl.Load(); n > 0 {
		fmt.Fprintf(&b, "; %d link-layer control frames (ARP, LLDP, STP, ...)", n)
	}
	for i, u := range m.Undecoded() {
		if i == 0 {
			b.WriteString("; not decoded:")
		} else {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %d %s (%s)", u.Packets, u.Reason, linkTypeName(u.LinkType))
	}
	return b.String()
}

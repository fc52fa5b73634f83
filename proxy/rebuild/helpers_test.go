package rebuild

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/cordon-vms/cordon/proxy/internal/annexb"
	"github.com/pion/rtp"
)

// fixtureAUs reads testdata/sei.h264 and groups its NAL units into access
// units (a new one at each SPS, or at each slice with first_mb_in_slice 0).
func fixtureAUs(t testing.TB) [][][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/sei.h264")
	if err != nil {
		t.Fatal(err)
	}
	var aus [][][]byte
	var cur [][]byte
	sawSlice := false
	for _, n := range annexb.Split(b) {
		typ := n[0] & 0x1f
		newAU := (typ == 7 || typ == 6 || typ == 9) && sawSlice ||
			(typ == 1 || typ == 5) && sawSlice && len(n) > 1 && n[1]&0x80 != 0
		if newAU {
			aus = append(aus, cur)
			cur, sawSlice = nil, false
		}
		cur = append(cur, n)
		if typ == 1 || typ == 5 {
			sawSlice = true
		}
	}
	if len(cur) > 0 {
		aus = append(aus, cur)
	}
	return aus
}

// annexB writes access units as an Annex-B byte stream.
func annexB(aus [][][]byte) []byte {
	var buf bytes.Buffer
	for _, au := range aus {
		for _, n := range au {
			buf.Write([]byte{0, 0, 0, 1})
			buf.Write(n)
		}
	}
	return buf.Bytes()
}

// depacketizer re-parses reader-facing packets with gortsplib's own
// decoders: what a recorder behind the proxy would do.
type depacketizer struct {
	decode func(*rtp.Packet) ([][]byte, error)
	aus    [][][]byte
}

func newDepacketizer(t testing.TB, codec videoCodec) *depacketizer {
	d := &depacketizer{}
	if codec == codecH265 {
		dec := &rtph265.Decoder{}
		if err := dec.Init(); err != nil {
			t.Fatal(err)
		}
		d.decode = dec.Decode
	} else {
		dec := &rtph264.Decoder{PacketizationMode: 1}
		if err := dec.Init(); err != nil {
			t.Fatal(err)
		}
		d.decode = dec.Decode
	}
	return d
}

// push decodes one output packet; any error but "more packets needed" is
// an output that does not re-parse.
func (d *depacketizer) push(p *rtp.Packet) error {
	au, err := d.decode(p)
	if errors.Is(err, rtph264.ErrMorePacketsNeeded) || errors.Is(err, rtph265.ErrMorePacketsNeeded) {
		return nil
	}
	if err != nil {
		return err
	}
	d.aus = append(d.aus, au)
	return nil
}

// ffmpegDecodeErrors decodes an elementary stream with ffmpeg and returns
// what it printed at level error (empty: decoded cleanly).
func ffmpegDecodeErrors(t *testing.T, data []byte, ext, fmtName string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "out."+ext)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-f", fmtName, "-i", p, "-f", "null", "-").CombinedOutput()
	if err != nil {
		return string(out) + err.Error()
	}
	return string(out)
}

// readThrough plays url with a gortsplib client, feeds every packet of the
// first video media through a Plan built with cfg, and stops after n
// output access units or when the deadline passes.
func readThrough(t *testing.T, url string, cfg Config, n int, deadline time.Duration) (*depacketizer, *Counters, []*rtp.Packet) {
	t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	counters := &Counters{}
	plan, err := NewPlan(desc, cfg, counters)
	if err != nil {
		t.Fatal(err)
	}
	tr := plan.Tracks[0]
	codec := codecH264
	if _, ok := tr.Media().Formats[0].(*format.H265); ok {
		codec = codecH265
	}
	dep := newDepacketizer(t, codec)
	if _, err := c.Setup(desc.BaseURL, tr.CameraMedia(), 0, 0); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		all  []*rtp.Packet
		errs []error
		done = make(chan struct{})
		stop bool
	)
	c.OnPacketRTP(tr.CameraMedia(), tr.CameraFormat(), func(pkt *rtp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if stop || len(dep.aus) >= n {
			return
		}
		out, _, err := tr.Process(pkt)
		if err != nil {
			errs = append(errs, err)
		}
		for _, p := range out {
			all = append(all, p)
			if err := dep.push(p); err != nil {
				errs = append(errs, err)
			}
		}
		if len(dep.aus) >= n {
			close(done)
		}
	})
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(deadline):
	}
	mu.Lock()
	defer mu.Unlock()
	stop = true
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("processing %s: %v", url, err)
	}
	return dep, counters, all
}

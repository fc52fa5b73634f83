package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/cordon-vms/cordon/proxy/internal/playonly"
)

// Baseline is a plain gortsplib pass-through proxy, the pattern of gortsplib's
// examples/proxy generalised to many paths: one client per source writes every
// packet unchanged to a ServerStream that fans out to readers. It is the
// yardstick cordon's proxy is measured against in the same run.
type Baseline struct {
	// Listen is the RTSP listen address. It defaults to "127.0.0.1:8554".
	Listen string
	// Sources maps a path name to the camera URL it pulls.
	Sources map[string]string
	Logger  *slog.Logger

	server  *gortsplib.Server
	mu      sync.RWMutex
	streams map[string]*gortsplib.ServerStream
}

// Run serves until ctx is done.
func (b *Baseline) Run(ctx context.Context) error {
	if b.Listen == "" {
		b.Listen = "127.0.0.1:8554"
	}
	if b.Logger == nil {
		b.Logger = slog.New(slog.DiscardHandler)
	}
	b.streams = map[string]*gortsplib.ServerStream{}
	b.server = &gortsplib.Server{
		Handler:        &playonly.Handler{Lookup: b.stream},
		RTSPAddress:    b.Listen,
		WriteQueueSize: 4096,
	}
	if err := b.server.Start(); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer b.server.Close()
	var wg sync.WaitGroup
	for name, url := range b.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := b.pull(ctx, name, url)
				if ctx.Err() == nil {
					b.Logger.Warn("baseline source failed", "path", name, "error", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (b *Baseline) pull(ctx context.Context, name, rawURL string) error {
	u, err := base.ParseURL(rawURL)
	if err != nil {
		return err
	}
	tcp := gortsplib.ProtocolTCP
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		return err
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return err
	}
	st := &gortsplib.ServerStream{Server: b.server, Desc: desc}
	if err := st.Initialize(); err != nil {
		return err
	}
	b.mu.Lock()
	b.streams[name] = st
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.streams, name)
		b.mu.Unlock()
		st.Close()
	}()
	c.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		_ = st.WritePacketRTP(m, pkt)
	})
	if _, err := c.Play(nil); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}

func (b *Baseline) stream(name string) *gortsplib.ServerStream {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.streams[name]
}

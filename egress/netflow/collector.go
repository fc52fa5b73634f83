// Package netflow is cordon's flow collector: it receives NetFlow v5, v9,
// IPFIX and sFlow v5 datagrams over UDP from switches, routers, softflowd or
// pmacct, decodes them with goflow2's decoders and hands each flow record to
// the egress engine as an egress.FlowRecord (for sFlow, one per sampled
// packet, scaled by the sampling rate).
//
// Everything an exporter sends is untrusted and bounded: the datagram size,
// the templates kept per exporter (with an expiry), the exporters tracked and
// the records taken from one datagram. Options templates are kept only so
// that their data sets are recognised and skipped (IPFIX
// systemInitTimeMilliseconds is read to place sysUpTime-relative times).
package netflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cordon-vms/cordon/egress"
)

// Collector receives flow datagrams on a UDP address until its context ends.
//
//	c := &netflow.Collector{Addr: "127.0.0.1:2055", Logger: l, Handle: engine.HandleFlow}
//	err := c.Run(ctx)
type Collector struct {
	// Addr is the UDP address to listen on. It defaults to ":2055".
	Addr string
	// Logger receives decode errors (rate-limited) and lifecycle messages.
	// It defaults to a logger that discards.
	Logger *slog.Logger
	// Handle receives each flow record, with the context given to Run, from
	// the collector's single reading goroutine, in the order of the
	// datagrams. It is required.
	Handle func(context.Context, egress.FlowRecord)
	// MaxDatagramSize bounds a datagram; longer ones are dropped and counted
	// as decode errors. It defaults to 9000 bytes (a jumbo frame).
	MaxDatagramSize int
	// ReadBuffer is the socket receive buffer (SO_RCVBUF) in bytes, so that
	// bursts from exporters are not dropped by the kernel. It defaults to
	// 4 MiB (the kernel may clamp it to net.core.rmem_max).
	ReadBuffer int
	// Decoder holds the template and record limits; its zero value has the
	// documented defaults.
	Decoder Decoder

	mu      sync.Mutex
	conn    net.PacketConn
	lastLog time.Time
}

// Listen fills the zero fields with their defaults, checks the rest and
// binds the UDP socket; Run calls it when it has not been called. After it
// returns, LocalAddr gives the bound address (useful with port 0).
func (c *Collector) Listen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return nil
	}
	if err := c.setDefaults(); err != nil {
		return err
	}
	conn, err := net.ListenPacket("udp", c.Addr)
	if err != nil {
		return fmt.Errorf("netflow: collector: listen on %s (Addr): %w", c.Addr, err)
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(c.ReadBuffer) // best effort: the kernel clamps it
	}
	c.conn = conn
	return nil
}

// setDefaults is the one place that fills the documented defaults and
// checks the required fields.
func (c *Collector) setDefaults() error {
	if c.Handle == nil {
		return errors.New("netflow: collector: Handle is required")
	}
	if c.Addr == "" {
		c.Addr = ":2055"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxDatagramSize <= 0 {
		c.MaxDatagramSize = 9000
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 4 << 20
	}
	return nil
}

// LocalAddr is the bound address, or nil before Listen.
func (c *Collector) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	return c.conn.LocalAddr()
}

// Stats returns the decoder's counters.
func (c *Collector) Stats() Stats { return c.Decoder.Stats() }

// Run receives and decodes datagrams until ctx is done; it then closes the
// socket and returns nil. It returns an error only when it cannot listen or
// the socket fails.
func (c *Collector) Run(ctx context.Context) error {
	if err := c.Listen(); err != nil {
		return err
	}
	conn := c.conn
	defer func() {
		c.mu.Lock()
		c.conn = nil // a later Run listens again
		c.mu.Unlock()
	}()
	log := c.Logger.With("component", "netflow", "addr", conn.LocalAddr().String())
	log.Info("netflow collector listening")
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	max := c.MaxDatagramSize
	buf := make([]byte, max+1)
	handle := func(r egress.FlowRecord) { c.Handle(ctx, r) } // bound once, not per datagram
	uconn, _ := conn.(*net.UDPConn)
	for {
		var (
			n    int
			from netip.AddrPort
			err  error
		)
		if uconn != nil {
			n, from, err = uconn.ReadFromUDPAddrPort(buf)
		} else {
			var a net.Addr
			n, a, err = conn.ReadFrom(buf)
			if ua, ok := a.(*net.UDPAddr); ok {
				from = ua.AddrPort()
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				log.Info("netflow collector stopped", "datagrams", c.Decoder.Stats().Datagrams)
				return nil
			}
			return fmt.Errorf("netflow: collector: read: %w", err)
		}
		if n > max {
			c.Decoder.stats.decodeErrors.Add(1)
			c.logError(log, &DecodeError{Exporter: from, Err: fmt.Errorf("%w (%d)", ErrDatagramTooLong, max)})
			continue
		}
		if err := c.Decoder.Decode(from, buf[:n], handle); err != nil {
			c.logError(log, err)
		}
	}
}

// logError logs at most one decode error per second so that a hostile or
// broken exporter cannot flood the log; the counters keep the totals.
func (c *Collector) logError(log *slog.Logger, err error) {
	now := time.Now()
	if now.Sub(c.lastLog) < time.Second {
		return
	}
	c.lastLog = now
	log.Warn("netflow decode error", "error", err, "decode_errors", c.Decoder.stats.decodeErrors.Load())
}

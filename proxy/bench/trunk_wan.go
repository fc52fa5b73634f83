package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// impairment is what a netem setting asks of the link, in each direction:
// a fixed delay and a random loss. Only "delay D" and "loss P%" are read
// (the emulated link below does not do jitter, reordering or rate).
type impairment struct {
	delay time.Duration
	loss  float64 // 0..1
}

// parseNetem reads "delay 20ms loss 1%".
func parseNetem(s string) (impairment, error) {
	var im impairment
	f := strings.Fields(s)
	for i := 0; i < len(f); i += 2 {
		if i+1 >= len(f) {
			return im, fmt.Errorf("bench trunk: netem %q: %s without a value", s, f[i])
		}
		switch f[i] {
		case "delay":
			d, err := time.ParseDuration(f[i+1])
			if err != nil || d < 0 || d > 10*time.Second {
				return im, fmt.Errorf("bench trunk: netem %q: delay %q", s, f[i+1])
			}
			im.delay = d
		case "loss":
			p, err := strconv.ParseFloat(strings.TrimSuffix(f[i+1], "%"), 64)
			if err != nil || p < 0 || p > 100 {
				return im, fmt.Errorf("bench trunk: netem %q: loss %q", s, f[i+1])
			}
			im.loss = p / 100
		default:
			return im, fmt.Errorf("bench trunk: netem %q: only delay and loss are supported, not %q", s, f[i])
		}
	}
	return im, nil
}

// wanLink emulates netem between two TUN devices (one in each namespace)
// when the kernel has no sch_netem: the bench reads each IP packet from
// one device, loses it with the asked probability, and writes it to the
// other after the delay. Packets keep their order; the queue holds at
// most wanQueue packets per direction (netem's default limit is 1000).
//
// Each direction is a reader goroutine and a delay line: a FIFO with one
// reused timer, which writes every packet due within wanSlack of now when
// it wakes (rather than a sleep per packet), packets in pooled 2 KiB
// buffers (rather than 64 KiB), the reader waking the line only when it
// was empty. That was not a measurable CPU saving (docs/trunk.md): per
// packet the cost is the read and the write syscall, and the write runs
// the receiving namespace's network stack; only fewer, larger packets
// (IFF_VNET_HDR with GSO) would cut it, and a GSO packet would have to be
// split again to lose 1 % of the wire's packets rather than of bursts.
type wanLink struct {
	a, b    *os.File
	im      impairment
	wg      sync.WaitGroup
	dropped atomic.Uint64 // lost on purpose
	full    atomic.Uint64 // queue overflow
	// packets read, and those that filled the read buffer (possibly
	// truncated: the devices' MTU is 1500)
	packets, truncated atomic.Uint64
}

const (
	wanQueue = 20000
	// wanSlack: a packet due within this of the delay line's wake-up is
	// written in the same batch (up to this much early: 0.5 ms of a
	// 20 ms delay). A wake-up then writes every packet that arrived
	// within wanSlack, instead of one.
	wanSlack = 500 * time.Microsecond
	// wanBuf holds any packet of the TUN devices (MTU 1500).
	wanBuf = 2048
)

// openTun creates a TUN device (no packet information header).
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bench trunk: /dev/net/tun: %w", err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("bench trunk: TUNSETIFF %s: %w", name, e)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

func (l *wanLink) start() {
	l.wg.Go(func() { l.forward(l.a, l.b) })
	l.wg.Go(func() { l.forward(l.b, l.a) })
}

// counters are the packets read, lost on purpose, dropped on a full
// queue and that filled the read buffer, both ways; zero without a link.
func (l *wanLink) counters() [4]uint64 {
	if l == nil {
		return [4]uint64{}
	}
	return [4]uint64{l.packets.Load(), l.dropped.Load(), l.full.Load(), l.truncated.Load()}
}

// close closes both devices and waits for the forwarders.
func (l *wanLink) close() {
	l.a.Close()
	l.b.Close()
	l.wg.Wait()
}

var wanBufs = sync.Pool{New: func() any { return new([wanBuf]byte) }}

// forward reads packets from one device into a delay line that writes
// them to the other, until from is closed.
func (l *wanLink) forward(from, to *os.File) {
	d := newDelayLine(l.im.delay, wanQueue, func(b []byte) { _, _ = to.Write(b) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.run()
	}()
	defer func() { d.stop(); <-done }()
	for {
		bp := wanBufs.Get().(*[wanBuf]byte)
		n, err := from.Read(bp[:])
		if err != nil {
			wanBufs.Put(bp)
			if errors.Is(err, os.ErrClosed) || n == 0 {
				return
			}
			continue
		}
		l.packets.Add(1)
		if n == len(bp) {
			l.truncated.Add(1)
		}
		if l.im.loss > 0 && rand.Float64() < l.im.loss {
			l.dropped.Add(1)
			wanBufs.Put(bp)
			continue
		}
		if !d.push(bp, n, time.Now()) {
			l.full.Add(1)
			wanBufs.Put(bp)
		}
	}
}

// delayLine writes each packet pushed to it delay after its arrival, in
// order. One goroutine runs run; any one pushes.
type delayLine struct {
	delay time.Duration
	slack time.Duration
	limit int
	write func([]byte)

	mu      sync.Mutex
	q       []wanPacket // FIFO: q[head:]
	head    int
	waiting bool // run waits for a packet: push wakes it
	stopped bool
	wake    chan struct{} // capacity 1
}

type wanPacket struct {
	due time.Time
	b   *[wanBuf]byte
	n   int
}

func newDelayLine(delay time.Duration, limit int, write func([]byte)) *delayLine {
	return &delayLine{delay: delay, slack: wanSlack, limit: limit, write: write, wake: make(chan struct{}, 1)}
}

// push queues b[:n], which arrived at now; false when the line is full
// (the caller keeps b).
func (d *delayLine) push(b *[wanBuf]byte, n int, now time.Time) bool {
	d.mu.Lock()
	if len(d.q)-d.head >= d.limit {
		d.mu.Unlock()
		return false
	}
	d.q = append(d.q, wanPacket{due: now.Add(d.delay), b: b, n: n})
	wake := d.waiting
	d.waiting = false
	d.mu.Unlock()
	if wake {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// stop ends run.
func (d *delayLine) stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run writes the packets as they fall due, until stop.
func (d *delayLine) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var batch []wanPacket
	for {
		d.mu.Lock()
		if d.stopped {
			d.mu.Unlock()
			return
		}
		if d.head == len(d.q) {
			d.q, d.head = d.q[:0], 0
			d.waiting = true
			d.mu.Unlock()
			<-d.wake
			continue
		}
		now := time.Now()
		if wait := d.q[d.head].due.Sub(now); wait > d.slack {
			// Pushes do not wake it now (the packets behind are due
			// later); a stop does.
			d.mu.Unlock()
			t.Reset(wait)
			select {
			case <-t.C:
			case <-d.wake:
			}
			continue
		}
		// Every packet due within wanSlack goes now, in one batch.
		limit := now.Add(d.slack)
		batch = batch[:0]
		for d.head < len(d.q) && !d.q[d.head].due.After(limit) {
			batch = append(batch, d.q[d.head])
			d.q[d.head] = wanPacket{}
			d.head++
		}
		if d.head > len(d.q)/2 && d.head > 1024 {
			// Keep the FIFO from growing: move the rest to the front.
			d.q = d.q[:copy(d.q, d.q[d.head:])]
			d.head = 0
		}
		d.mu.Unlock()
		for _, p := range batch {
			d.write(p.b[:p.n])
			wanBufs.Put(p.b)
		}
	}
}

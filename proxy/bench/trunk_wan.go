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
type wanLink struct {
	a, b    *os.File
	im      impairment
	wg      sync.WaitGroup
	dropped atomic.Uint64 // lost on purpose
	full    atomic.Uint64 // queue overflow
}

const wanQueue = 20000

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

// close closes both devices and waits for the forwarders.
func (l *wanLink) close() {
	l.a.Close()
	l.b.Close()
	l.wg.Wait()
}

type wanPacket struct {
	due time.Time
	b   []byte
}

var wanBufs = sync.Pool{New: func() any { b := make([]byte, 65536); return &b }}

func (l *wanLink) forward(from, to *os.File) {
	q := make(chan wanPacket, wanQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q {
			if d := time.Until(p.due); d > 0 {
				time.Sleep(d)
			}
			_, _ = to.Write(p.b)
			b := p.b[:cap(p.b)]
			wanBufs.Put(&b)
		}
	}()
	defer func() { close(q); <-done }()
	for {
		bp := wanBufs.Get().(*[]byte)
		n, err := from.Read(*bp)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || n == 0 {
				return
			}
			continue
		}
		if l.im.loss > 0 && rand.Float64() < l.im.loss {
			l.dropped.Add(1)
			wanBufs.Put(bp)
			continue
		}
		select {
		case q <- wanPacket{due: time.Now().Add(l.im.delay), b: (*bp)[:n]}:
		default:
			l.full.Add(1)
			wanBufs.Put(bp)
		}
	}
}

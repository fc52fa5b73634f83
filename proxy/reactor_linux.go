package proxy

import (
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The camera-read reactor (camera_side.read_coalesce): camera sockets read
// by the tap, moved out of Go's netpoller so that their frames wake the
// proxy at most once per interval rather than once each.
//
// Go's netpoller parks one thread in epoll_wait, and any event on any
// socket registered there wakes it, whether or not a goroutine waits on
// that socket: at 100 cameras that is a thread wake-up and a pass of the
// scheduler per camera frame (about 2 500 a second). Once the camera tap is
// armed, its connection's socket is duplicated, the net.Conn closed (Go
// removes its descriptor from its epoll, then closes it; the socket lives
// on through the duplicate) and the duplicate registered, edge-triggered,
// in an epoll of the proxy's own. One goroutine waits on it: parked once
// nothing arrived for about 100 ms (an idle proxy does not tick; see wait), and after
// each wake-up it signals the cameras whose sockets became readable, then
// sleeps the interval before looking again, so that under load one wake-up
// serves every camera whose frame arrived meanwhile. Each camera's reading
// goroutine waits for that signal, and reads with the same non-blocking
// reads as before. A frame waits at most the interval more.
//
// The descriptor's life: every read and write holds a reference while it
// uses the number; Close marks it closing and wakes the waiting reader;
// the last reference removes it from the epoll, then closes it, once. The
// reactor finds sockets by a registration id, never by descriptor number,
// so a number closed and reused meanwhile cannot be signalled by mistake
// (a spurious signal costs one empty read, nothing more).

const reactorAvailable = true

// reactors are the process's reactors, one per interval (in practice the
// configuration's one). They are never closed: an idle one is a goroutine
// blocked in epoll_wait.
var reactors struct {
	mu sync.Mutex
	m  map[time.Duration]*reactor
}

// reactor is one epoll and the goroutine that waits on it.
type reactor struct {
	epfd     int
	interval time.Duration

	mu   sync.Mutex
	fds  map[uint64]*reactorFD
	next uint64

	wakes         atomic.Uint64 // for tests
	idles, blocks atomic.Uint64 // idle waits in the netpoller, and blocking ones
}

// reactorFor returns the reactor of interval, starting it the first time.
func reactorFor(interval time.Duration) (*reactor, error) {
	reactors.mu.Lock()
	defer reactors.mu.Unlock()
	if r := reactors.m[interval]; r != nil {
		return r, nil
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil { // (so that its duplicates go to the netpoller)
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	r := &reactor{epfd: epfd, interval: interval, fds: map[uint64]*reactorFD{}}
	if reactors.m == nil {
		reactors.m = map[time.Duration]*reactor{}
	}
	reactors.m[interval] = r
	go r.run()
	return r, nil
}

// run waits for readable sockets and signals their readers, forever.
func (r *reactor) run() {
	events := make([]unix.EpollEvent, 256)
	var ready []*reactorFD
	quiet := 0 // looks in a row that found nothing
	for {
		n := r.look(uintptr(r.epfd), events)
		if n == 0 && quiet < reactorQuietLooks(r.interval) {
			// Keep looking once an interval for a while: going idle and
			// back (below) costs more than a look, and cameras that
			// send a few frames a second would do it every frame.
			quiet++
			time.Sleep(r.interval)
			continue
		}
		if n == 0 {
			n = r.wait(events)
		}
		quiet = 0
		if n == 0 {
			continue
		}
		r.wakes.Add(1)
		r.mu.Lock()
		for _, ev := range events[:n] {
			if f := r.fds[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; f != nil {
				ready = append(ready, f)
			}
		}
		r.mu.Unlock()
		for _, f := range ready {
			f.signal()
		}
		clear(ready)
		ready = ready[:0]
		if n < len(events) {
			time.Sleep(r.interval)
		}
	}
}

// reactorQuietLooks is how many empty looks, an interval apart, the
// reactor makes before it waits idle: about 100 ms of nothing.
func reactorQuietLooks(interval time.Duration) int {
	return int(max(1, 100*time.Millisecond/max(interval, time.Millisecond)))
}

// wait waits until events arrive (idle) and returns them. (Looks are raw
// system calls: they cannot block, so the scheduler need not know.) The
// idle wait goes through Go's netpoller, on a
// duplicate of the epoll descriptor registered there only for the wait:
// registered for good, every camera event would wake the netpoller's
// thread again, as before; and a blocking epoll_wait would hold the
// process's one P (GOMAXPROCS follows the load) until sysmon took it back.
func (r *reactor) wait(events []unix.EpollEvent) int {
	r.idles.Add(1)
	n, err := r.idle(events)
	if err != nil {
		r.blocks.Add(1)
		// Not pollable here: a blocking wait (the runtime hands the P over).
		k, err := unix.EpollWait(r.epfd, events, -1)
		if err != nil || k < 0 {
			return 0 // EINTR
		}
		return k
	}
	return n
}

// look returns the events waiting on epfd, without waiting.
func (r *reactor) look(epfd uintptr, events []unix.EpollEvent) int {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, epfd,
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

// idle waits in Go's netpoller until the epoll has events, and returns
// them.
func (r *reactor) idle(events []unix.EpollEvent) (int, error) {
	nfd, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(r.epfd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return 0, e
	}
	f := os.NewFile(nfd, "reactor") // non-blocking (as the epoll is): registered in the netpoller
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	n := 0
	err = rc.Read(func(fd uintptr) bool {
		n = r.look(fd, events)
		return n > 0
	})
	return n, err
}

// add registers f's descriptor, edge-triggered.
func (r *reactor) add(f *reactorFD) error {
	r.mu.Lock()
	r.next++
	f.id = r.next
	r.fds[f.id] = f
	r.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(f.id)), Pad: int32(uint32(f.id >> 32))}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, f.fd, &ev); err != nil {
		r.mu.Lock()
		delete(r.fds, f.id)
		r.mu.Unlock()
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// remove unregisters f's descriptor (before it is closed).
func (r *reactor) remove(f *reactorFD) {
	r.mu.Lock()
	delete(r.fds, f.id)
	r.mu.Unlock()
	_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, f.fd, nil)
}

// registered is how many descriptors r has (tests).
func (r *reactor) registered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.fds)
}

// reactorFD is one camera socket served by a reactor.
type reactorFD struct {
	r            *reactor
	fd           int
	id           uint64
	laddr, raddr net.Addr

	ready chan struct{} // a token: the socket may be readable, or f closed

	mu      sync.Mutex
	refs    int
	closing bool

	rdl, wdl atomic.Int64 // deadlines, Unix nanoseconds; 0: none
}

// reactorWriteStep bounds one wait for a full socket to drain, so that a
// write sees Close soon.
const reactorWriteStep = 100 * time.Millisecond

// detachToReactor duplicates raw's socket into a reactorFD registered with
// r. The caller closes the original connection.
func detachToReactor(r *reactor, raw syscall.RawConn, laddr, raddr net.Addr) (*reactorFD, error) {
	nfd, derr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	f := &reactorFD{r: r, fd: nfd, laddr: laddr, raddr: raddr, ready: make(chan struct{}, 1)}
	if err := r.add(f); err != nil {
		unix.Close(nfd)
		return nil, err
	}
	f.signal() // whatever arrived before it was registered
	return f, nil
}

func (f *reactorFD) signal() {
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// incref takes a reference to use the descriptor; false once closing.
func (f *reactorFD) incref() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.refs++
	return true
}

func (f *reactorFD) decref() {
	f.mu.Lock()
	f.refs--
	last := f.closing && f.refs == 0
	f.mu.Unlock()
	if last {
		f.destroy()
	}
}

// destroy unregisters and closes the descriptor (once: the last reference
// after close).
func (f *reactorFD) destroy() {
	f.r.remove(f)
	unix.Close(f.fd)
}

// close ends f: pending and later reads and writes fail; the descriptor
// is closed now or when the last operation using it returns.
func (f *reactorFD) close() error {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		return f.opError("close", net.ErrClosed)
	}
	f.closing = true
	last := f.refs == 0
	f.mu.Unlock()
	f.signal() // a waiting read wakes and finds f closing
	if last {
		f.destroy()
	}
	return nil
}

func (f *reactorFD) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: f.laddr, Addr: f.raddr, Err: err}
}

// read calls fn with the descriptor until it returns true, waiting for the
// reactor's signal between calls, as RawConn.Read does with the netpoller.
func (f *reactorFD) read(fn func(fd uintptr) bool) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if !f.incref() {
			return f.opError("read", net.ErrClosed)
		}
		ok := fn(uintptr(f.fd))
		f.decref()
		if ok {
			return nil
		}
		d := f.rdl.Load()
		if d == 0 {
			<-f.ready // (a receive, cheaper than a select: the common case)
			continue
		}
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return f.opError("read", os.ErrDeadlineExceeded)
		}
		if timer == nil {
			timer = time.NewTimer(left)
		} else {
			timer.Reset(left)
		}
		select {
		case <-f.ready:
		case <-timer.C:
		}
	}
}

// write writes all of b, waiting (poll(2), in steps) while the socket's
// buffer is full, until the write deadline.
func (f *reactorFD) write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		if !f.incref() {
			return total, f.opError("write", net.ErrClosed)
		}
		n, err := writeNonBlocking(uintptr(f.fd), b)
		if err == nil {
			f.decref()
			total += n
			b = b[n:]
			continue
		}
		if err != syscall.EAGAIN {
			f.decref()
			return total, f.opError("write", err)
		}
		wait := reactorWriteStep
		if d := f.wdl.Load(); d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				f.decref()
				return total, f.opError("write", os.ErrDeadlineExceeded)
			}
			wait = min(wait, left)
		}
		fds := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLOUT}}
		_, _ = unix.Poll(fds, int(max(wait/time.Millisecond, 1)))
		f.decref()
	}
	return total, nil
}

func (f *reactorFD) setReadDeadline(t time.Time) {
	f.rdl.Store(deadlineNanos(t))
	f.signal() // a waiting read looks at it again
}

func (f *reactorFD) setWriteDeadline(t time.Time) { f.wdl.Store(deadlineNanos(t)) }

// deadlineNanos is t in Unix nanoseconds (0: none); a t outside what they
// hold (1678 to 2262) is the latest or earliest they do, not an overflow.
func deadlineNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	case t.Before(time.Unix(0, 1)):
		return 1
	}
	return max(t.UnixNano(), 1)
}

package proxy

import (
	"net"
	"syscall"
	"unsafe"
)

// Fast socket paths for the proxy's hot loop on Linux.
//
// Go keeps network sockets in non-blocking mode, so a read or write on one
// returns at once (EAGAIN when it would block). Such calls are made here
// with RawSyscall rather than through the net package: not entering the
// scheduler's syscall state means no hand-off of the P and, above all, no
// wake-up of the runtime's sysmon thread, which Go otherwise wakes on the
// first system call after the process was idle. With cameras sending
// frames at scattered instants, the proxy goes idle between almost every
// frame, and those wake-ups were about a fifth of its CPU time.

const fastSockets = true

// fastRawConn returns c's raw connection for the fast paths, or nil when c
// is not a socket (a net.Pipe, say) or the fast paths do not apply.
func fastRawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawIO makes one read(2) or write(2) of b on a non-blocking socket,
// retrying on EINTR. It returns the byte count, or -1 and the error.
func rawIO(trap, fd uintptr, b []byte) (int, error) {
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch e {
		case 0:
			return int(r), nil
		case syscall.EINTR:
			continue
		default:
			return -1, e
		}
	}
}

// writeNonBlocking makes one non-blocking write of b on fd. A full socket
// buffer gives syscall.EAGAIN.
func writeNonBlocking(fd uintptr, b []byte) (int, error) {
	return rawIO(syscall.SYS_WRITE, fd, b)
}

// readNonBlocking makes one non-blocking read of fd into b. A socket with
// nothing to read gives syscall.EAGAIN.
func readNonBlocking(fd uintptr, b []byte) (int, error) {
	return rawIO(syscall.SYS_READ, fd, b)
}

//go:build unix

package proxy

import (
	"errors"
	"syscall"
)

// tryWrite makes one non-blocking write(2) of b on rc's socket (Go keeps
// network sockets in non-blocking mode) and returns what it took. A full
// socket buffer (EAGAIN) is not an error: it took 0 bytes.
func tryWrite(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true // never wait for writability here
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return max(n, 0), nil
}

package proxy

import (
	"syscall"
)

// rawWriter makes non-blocking writes on one socket (see sock_linux.go)
// without allocating per write. Its user serialises calls.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // w.write, bound once
	b   []byte
	n   int
	err error
}

func newRawWriter(rc syscall.RawConn) *rawWriter {
	w := &rawWriter{rc: rc}
	w.fn = w.write
	return w
}

func (w *rawWriter) write(fd uintptr) bool {
	w.n, w.err = writeNonBlocking(fd, w.b)
	return true // never wait for writability here
}

// tryWrite writes what the socket takes of b at once. A full socket buffer
// is not an error: it took 0 bytes.
func (w *rawWriter) tryWrite(b []byte) (int, error) {
	w.b = b
	err := w.rc.Write(w.fn)
	w.b = nil
	switch {
	case err != nil:
		return 0, err
	case w.err == syscall.EAGAIN:
		return 0, nil
	case w.err != nil:
		return 0, w.err
	}
	return w.n, nil
}

//go:build !unix

package proxy

import "syscall"

// tryWrite has no non-blocking path on this system: the writer goroutine
// sends everything.
func tryWrite(syscall.RawConn, []byte) (int, error) { return 0, nil }

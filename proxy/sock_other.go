//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// Elsewhere than Linux the proxy has no fast socket paths: the writer
// goroutine sends every batch and camera connections are read as they are.

const fastSockets = false

func fastRawConn(net.Conn) syscall.RawConn { return nil }

func writeNonBlocking(uintptr, []byte) (int, error) { return 0, syscall.EAGAIN }

func readNonBlocking(uintptr, []byte) (int, error) { return 0, syscall.EAGAIN }

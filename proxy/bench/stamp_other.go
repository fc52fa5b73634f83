//go:build !linux || !(amd64 || arm64)

package bench

import (
	"net"
	"time"
)

// enableStamps does nothing: receive timestamps are read on Linux only.
func enableStamps(net.Conn) {}

// stampedRead returns nil: frames carry the bench's own times only.
func stampedRead(net.Conn) func([]byte) (int, time.Time, error) { return nil }

const stampsSupported = false

//go:build !linux

package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Elsewhere than Linux there is no camera-read reactor: camera sockets stay
// with Go's netpoller (camera_side.read_coalesce is accepted and has no
// effect).

const reactorAvailable = false

var errNoReactor = errors.New("proxy: no camera-read reactor on this platform")

type reactor struct{}

type reactorFD struct{}

func reactorFor(time.Duration) (*reactor, error) { return nil, errNoReactor }

func detachToReactor(*reactor, syscall.RawConn, net.Addr, net.Addr) (*reactorFD, error) {
	return nil, errNoReactor
}

func (*reactorFD) read(func(fd uintptr) bool) error { return errNoReactor }
func (*reactorFD) write([]byte) (int, error)        { return 0, errNoReactor }
func (*reactorFD) close() error                     { return errNoReactor }
func (*reactorFD) setReadDeadline(time.Time)        {}
func (*reactorFD) setWriteDeadline(time.Time)       {}

func (*reactor) registered() int { return 0 }

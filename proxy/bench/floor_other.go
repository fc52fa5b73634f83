//go:build !linux

package bench

import "net"

// floorConn is the connection itself where the floor's raw system calls
// (floor_linux.go) are not built.
type floorConn struct{ net.Conn }

func newFloorConn(c net.Conn) *floorConn { return &floorConn{c} }

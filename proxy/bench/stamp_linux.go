//go:build linux && (amd64 || arm64)

package bench

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// enableStamps asks the kernel to timestamp what conn receives
// (SO_TIMESTAMPNS): on loopback, when the sender wrote it.
func enableStamps(c net.Conn) {
	if rc := rawConn(c); rc != nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		})
	}
}

func rawConn(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// stampedRead returns a read function that also returns the kernel's
// receive timestamp of the last byte read (TCP gives that of the last
// segment copied), or nil when conn is not a TCP connection. It honours
// conn's deadlines and Close.
func stampedRead(c net.Conn) func([]byte) (int, time.Time, error) {
	rc := rawConn(c)
	if rc == nil {
		return nil
	}
	oob := make([]byte, 128)
	return func(p []byte) (int, time.Time, error) {
		var n, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), p, oob, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return 0, time.Time{}, err
		}
		if n == 0 {
			return 0, time.Time{}, io.EOF
		}
		return n, cmsgStamp(oob[:oobn]), nil
	}
}

// cmsgStamp finds an SCM_TIMESTAMPNS control message in oob.
func cmsgStamp(oob []byte) time.Time {
	for len(oob) >= unix.SizeofCmsghdr {
		ln := int(binary.NativeEndian.Uint64(oob))
		level := int32(binary.NativeEndian.Uint32(oob[8:]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:]))
		if ln < unix.SizeofCmsghdr || ln > len(oob) {
			return time.Time{}
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && ln >= unix.SizeofCmsghdr+16 {
			d := oob[unix.SizeofCmsghdr:]
			return time.Unix(int64(binary.NativeEndian.Uint64(d)), int64(binary.NativeEndian.Uint64(d[8:])))
		}
		step := (ln + 7) &^ 7
		if step > len(oob) {
			return time.Time{}
		}
		oob = oob[step:]
	}
	return time.Time{}
}

const stampsSupported = true

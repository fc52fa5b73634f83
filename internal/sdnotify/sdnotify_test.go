package sdnotify

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// listen opens a unixgram socket in a temporary folder, as systemd does for
// NOTIFY_SOCKET, and returns its path and a function reading one datagram.
func listen(t *testing.T) (string, func() string) {
	path, read, _ := listenConn(t)
	return path, read
}

func listenConn(t *testing.T) (string, func() string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading the notification: %v", err)
		}
		return string(buf[:n])
	}, c
}

func TestNotify(t *testing.T) {
	path, read := listen(t)
	n := &Notifier{Socket: path}
	if err := n.Notify(Ready, "STATUS=serving 2 cameras"); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), "READY=1\nSTATUS=serving 2 cameras"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	got := read()
	if !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") || strings.HasSuffix(got, "=0") {
		t.Errorf("reloading sent %q, want RELOADING=1 and a MONOTONIC_USEC stamp", got)
	}
}

func TestNotifyAbstract(t *testing.T) {
	name := "@cordon-sdnotify-test-" + filepath.Base(t.TempDir())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name[1:], Net: "unixgram"})
	if err != nil {
		t.Skipf("abstract unix sockets not available here: %v", err)
	}
	defer c.Close()
	if err := (&Notifier{Socket: name}).Notify(Stopping); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != Stopping {
		t.Fatalf("got %q, %v; want %q", buf[:n], err, Stopping)
	}
}

func TestDisabled(t *testing.T) {
	var nilN *Notifier
	for _, n := range []*Notifier{nilN, {}} {
		if n.Enabled() {
			t.Error("enabled without a socket")
		}
		if err := n.Notify(Ready); err != nil {
			t.Errorf("Notify without a socket: %v", err)
		}
		if err := n.Reloading(); err != nil {
			t.Errorf("Reloading without a socket: %v", err)
		}
		n.RunWatchdog(context.Background(), nil) // returns at once
	}
}

func TestNotifyMissingSocket(t *testing.T) {
	n := &Notifier{Socket: filepath.Join(t.TempDir(), "absent.sock")}
	if err := n.Notify(Ready); err == nil || !strings.HasPrefix(err.Error(), "sdnotify: ") {
		t.Errorf("got %v, want an sdnotify: error", err)
	}
}

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		socket   string
		watchdog time.Duration
		err      string
	}{
		{name: "none", env: nil},
		{name: "path", env: map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}, socket: "/run/systemd/notify"},
		{name: "abstract", env: map[string]string{"NOTIFY_SOCKET": "@x"}, socket: "@x"},
		{name: "relative", env: map[string]string{"NOTIFY_SOCKET": "run/notify"}, err: `sdnotify: NOTIFY_SOCKET is not an absolute path or @abstract name: "run/notify"`},
		{name: "watchdog", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000"}, socket: "/n", watchdog: 30 * time.Second},
		{name: "watchdog for us", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "42"}, socket: "/n", watchdog: time.Millisecond},
		{name: "watchdog for another", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "7"}, socket: "/n"},
		{name: "bad watchdog", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "soon"}, socket: "/n", err: `sdnotify: WATCHDOG_USEC "soon": want a positive number of microseconds`},
		{name: "zero watchdog", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, socket: "/n", err: `sdnotify: WATCHDOG_USEC "0": want a positive number of microseconds`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := fromEnv(func(k string) string { return tc.env[k] }, 42)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got error %v, want %q", err, tc.err)
				}
				if tc.name == "relative" && !errors.Is(err, ErrBadSocket) {
					t.Errorf("%v is not ErrBadSocket", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if n.Socket != tc.socket || n.Watchdog != tc.watchdog {
				t.Errorf("got socket %q watchdog %v, want %q %v", n.Socket, n.Watchdog, tc.socket, tc.watchdog)
			}
		})
	}
}

func TestWatchdog(t *testing.T) {
	path, read, conn := listenConn(t)
	synctest.Test(t, func(t *testing.T) {
		n := &Notifier{Socket: path, Watchdog: 10 * time.Second}
		ctx, cancel := context.WithCancel(t.Context())
		var healthy atomic.Bool
		var calls atomic.Int32
		healthy.Store(true)
		done := make(chan struct{})
		go func() {
			n.RunWatchdog(ctx, func() bool { calls.Add(1); return healthy.Load() })
			close(done)
		}()
		time.Sleep(5*time.Second + time.Millisecond) // half the interval: one keep-alive
		synctest.Wait()
		if calls.Load() != 1 {
			t.Fatalf("after 5 s: %d health checks, want 1", calls.Load())
		}
		healthy.Store(false)
		time.Sleep(5 * time.Second) // unhealthy: asked, but nothing sent
		synctest.Wait()
		if calls.Load() != 2 {
			t.Fatalf("after 10 s: %d health checks, want 2", calls.Load())
		}
		cancel()
		<-done
	})
	// The socket lives outside the bubble: read what was sent after it ended.
	if got := read(); got != Watchdog {
		t.Errorf("got %q, want %q", got, Watchdog)
	}
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 64)); err == nil {
		t.Errorf("a keep-alive was sent while unhealthy (%d bytes)", n)
	}
}

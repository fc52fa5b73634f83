// Package sdnotify tells systemd about a service's state over the
// NOTIFY_SOCKET datagram protocol (sd_notify(3)): READY=1 once the service
// serves, RELOADING=1 while it reloads its configuration, STOPPING=1 on the
// way out, and WATCHDOG=1 keep-alives when the unit sets WatchdogSec.
//
// Outside systemd (no NOTIFY_SOCKET) every call does nothing and returns nil,
// so callers need no special case.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Messages for Notifier.Notify (see sd_notify(3)).
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
	Watchdog  = "WATCHDOG=1"
)

// ErrBadSocket reports a NOTIFY_SOCKET that is neither an absolute path nor
// an abstract socket name ("@name").
var ErrBadSocket = errors.New("sdnotify: NOTIFY_SOCKET is not an absolute path or @abstract name")

// Notifier sends state changes to systemd. The zero value does nothing.
type Notifier struct {
	// Socket is the notification socket: an absolute path, or "@name" for
	// an abstract socket. Empty disables notifications.
	Socket string
	// Watchdog is how often systemd expects WATCHDOG=1 (WatchdogSec, from
	// WATCHDOG_USEC). Zero means no watchdog.
	Watchdog time.Duration
}

// FromEnv returns the Notifier systemd set up for this process, from
// NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (a watchdog meant for
// another process is ignored). It does not unset the variables.
func FromEnv() (*Notifier, error) {
	return fromEnv(os.Getenv, os.Getpid())
}

func fromEnv(getenv func(string) string, pid int) (*Notifier, error) {
	n := &Notifier{Socket: getenv("NOTIFY_SOCKET")}
	if n.Socket == "" {
		return n, nil
	}
	if !strings.HasPrefix(n.Socket, "/") && !strings.HasPrefix(n.Socket, "@") {
		return &Notifier{}, fmt.Errorf("%w: %q", ErrBadSocket, n.Socket)
	}
	if us := getenv("WATCHDOG_USEC"); us != "" {
		v, err := strconv.ParseUint(us, 10, 63)
		if err != nil || v == 0 {
			return n, fmt.Errorf("sdnotify: WATCHDOG_USEC %q: want a positive number of microseconds", us)
		}
		if wp := getenv("WATCHDOG_PID"); wp != "" && wp != strconv.Itoa(pid) {
			return n, nil
		}
		n.Watchdog = time.Duration(v) * time.Microsecond
	}
	return n, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.Socket != "" }

// Notify sends one or more newline-separated assignments ("READY=1",
// "STATUS=serving 3 cameras") in one datagram.
func (n *Notifier) Notify(state ...string) error {
	if !n.Enabled() {
		return nil
	}
	name := n.Socket
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(state, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Reloading sends RELOADING=1 with the MONOTONIC_USEC stamp that
// Type=notify-reload units expect (systemd 253 and later; older ones ignore
// the stamp).
func (n *Notifier) Reloading() error {
	if !n.Enabled() {
		return nil
	}
	return n.Notify(Reloading, "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// RunWatchdog sends WATCHDOG=1 at half the watchdog interval (as
// sd_watchdog_enabled(3) recommends) until ctx is done. It returns at once
// when there is no watchdog. healthy, when not nil, is asked first: a
// keep-alive is skipped while it returns false, so systemd restarts a service
// that stopped serving.
func (n *Notifier) RunWatchdog(ctx context.Context, healthy func() bool) {
	if !n.Enabled() || n.Watchdog <= 0 {
		return
	}
	t := time.NewTicker(n.Watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if healthy == nil || healthy() {
				_ = n.Notify(Watchdog)
			}
		}
	}
}

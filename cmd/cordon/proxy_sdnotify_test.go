package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProxyNotifiesSystemd runs "cordon proxy -c FILE" with NOTIFY_SOCKET
// set, as systemd does for a Type=notify unit: READY=1 once it listens,
// RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 at the end.
func TestProxyNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	cfg := filepath.Join(dir, "cordon.yml")
	if err := os.WriteFile(cfg, []byte(`listen:
  rtsp: 127.0.0.1:0
  admin: 127.0.0.1:0
  udp_rtp: "off"
allow_anonymous: true
cameras:
  - name: lobby
    url: rtsp://127.0.0.1:1/unreachable
`), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for a notification: %v", err)
		}
		return string(buf[:n])
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runProxy(ctx, &env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: t.Output()}, []string{"-c", cfg, "--log-level", "warn"})
	}()

	ready := read()
	if !strings.HasPrefix(ready, "READY=1\nSTATUS=0 of 1 cameras up; RTSP on 127.0.0.1:") || !strings.Contains(ready, "; admin on 127.0.0.1:") {
		t.Fatalf("first notification %q, want READY=1 and a STATUS naming the listeners", ready)
	}
	// serveProxy handles SIGHUP from before READY=1, so this reloads.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := read(); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("on SIGHUP: %q, want RELOADING=1", got)
	}
	if got := read(); !strings.HasPrefix(got, "READY=1\n") {
		t.Errorf("after the reload: %q, want READY=1", got)
	}
	cancel()
	if got := read(); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Errorf("on stop: %q, want STOPPING=1", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("proxy: %v", err)
	}
}

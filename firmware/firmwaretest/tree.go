package firmwaretest

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
)

// CheckEntry fails t when s holds no entry name, or one of another type or
// mode; it returns the entry for further checks.
func (s *MemSink) CheckEntry(t testing.TB, name string, typ firmware.EntryType, mode fs.FileMode) MemEntry {
	t.Helper()
	e, ok := s.Entry(name)
	if !ok {
		t.Fatalf("%s missing; have %q", name, s.Names())
	}
	if e.Header.Type != typ || e.Header.Mode != mode {
		t.Errorf("%s: type %d mode %v, want %d %v", name, e.Header.Type, e.Header.Mode, typ, mode)
	}
	return e
}

// CheckSharedTree checks the entries of the shared camera-like tree
// (testdata/firmware/tree.sh) that a filesystem fixture built from it holds
// whatever the format: types, modes, contents, the symlink and the device
// node the recipes add. What only some formats keep (owners, times, which
// name of the hard link pair is the file) the format's test checks itself.
func CheckSharedTree(t testing.TB, s *MemSink) {
	t.Helper()
	if e := s.CheckEntry(t, "etc/passwd", firmware.TypeFile, 0o644); !strings.HasPrefix(string(e.Data), "root:x:0:0:root:/root:/bin/sh\n") {
		t.Errorf("etc/passwd = %q", e.Data)
	}
	s.CheckEntry(t, "etc/shadow", firmware.TypeFile, 0o600)
	s.CheckEntry(t, "etc/init.d", firmware.TypeDir, 0o755)
	s.CheckEntry(t, "usr/bin/upgrade", firmware.TypeFile, 0o755|fs.ModeSetuid)
	if e := s.CheckEntry(t, "bin/busybox", firmware.TypeFile, 0o755); len(e.Data) != 34057 || !bytes.Contains(e.Data, []byte("BusyBox v1.31.1")) {
		t.Errorf("busybox: %d bytes", len(e.Data))
	}
	if e := s.CheckEntry(t, "usr/bin/ipcam", firmware.TypeFile, 0o755); len(e.Data) != 9000 {
		t.Errorf("ipcam: %d bytes", len(e.Data))
	}
	if e := s.CheckEntry(t, "sbin/init", firmware.TypeSymlink, 0o777); e.Header.Linkname != "../bin/busybox" {
		t.Errorf("sbin/init -> %q", e.Header.Linkname)
	}
	if e := s.CheckEntry(t, "dev/console", firmware.TypeCharDevice, 0o600); e.Header.Devmajor != 5 || e.Header.Devminor != 1 {
		t.Errorf("dev/console %d,%d", e.Header.Devmajor, e.Header.Devminor)
	}
}

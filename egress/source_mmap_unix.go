//go:build unix

package egress

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps a regular file into memory, read-only, for reading from
// start to end; nil when it cannot be (not a regular file, empty, larger
// than the address space, or mmap refused): the caller then reads it.
func mapFile(f *os.File) []byte {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 || st.Size() != int64(int(st.Size())) {
		return nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL) // a hint: read-ahead, drop behind
	return b
}

func unmapFile(b []byte) error { return unix.Munmap(b) }

// releaseMapped tells the kernel that b, a page-aligned part of a mapping
// that was read, is not needed any more: its pages leave the process's
// resident set (they stay in the page cache; a later access reads them
// again).
func releaseMapped(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }

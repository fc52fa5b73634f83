package proxy

import "syscall"

// newArena maps chunks with mmap(2) and gives freed chunks' pages back with
// madvise(MADV_DONTNEED) (reading them again gives zeros, never a fault).
func newArena() *arena {
	return &arena{
		mapSlab: func(n int) ([]byte, error) {
			return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		},
		release: func(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) },
	}
}

//go:build !linux

package proxy

// newArena keeps chunks on the heap: elsewhere than Linux the GOP caches
// are not mapped outside it.
func newArena() *arena { return &arena{} }

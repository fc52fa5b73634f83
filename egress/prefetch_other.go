//go:build !amd64 && !arm64

package egress

// prefetch does nothing here: there is no prefetch instruction wrapper.
func prefetch(_, _ *byte) {}

//go:build amd64 || arm64

package egress

// prefetch asks the CPU to fetch the two cache lines from p and the two
// from q into its cache without waiting for them (a hint: it never
// faults, nothing waits on it).
//
//go:noescape
func prefetch(p, q *byte)

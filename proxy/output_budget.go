package proxy

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
)

// outputBudget is the memory all batched readers' queues may hold
// together (limits.output_buffer_bytes). When a frame does not fit, the
// reader holding the most is disconnected: one reader that stopped reading
// costs at most its own queue, and many cannot add up past the budget.
type outputBudget struct {
	limit   int64
	used    atomic.Int64
	peak    atomic.Int64  // highest used, for tests and the log
	evicted atomic.Uint64 // readers disconnected because the budget was full
	log     *slog.Logger

	mu      sync.Mutex
	writers map[*batchWriter]struct{}
}

func newOutputBudget(limit int64, log *slog.Logger) *outputBudget {
	return &outputBudget{limit: limit, log: log, writers: map[*batchWriter]struct{}{}}
}

// reserve takes n bytes from the budget, or reports false when they do not fit.
func (b *outputBudget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			for {
				pk := b.peak.Load()
				if u+n <= pk || b.peak.CompareAndSwap(pk, u+n) {
					return true
				}
			}
		}
	}
}

func (b *outputBudget) free(n int64) { b.used.Add(-n) }

func (b *outputBudget) add(w *batchWriter) {
	b.mu.Lock()
	b.writers[w] = struct{}{}
	b.mu.Unlock()
}

func (b *outputBudget) remove(w *batchWriter) {
	b.mu.Lock()
	delete(b.writers, w)
	b.mu.Unlock()
}

// errOverBudget closes the session of the reader evicted to free the budget.
var errOverBudget = errors.New("proxy: the readers' output buffers are full (limits.output_buffer_bytes) and this reader holds the most")

// evictLargest disconnects the reader with the most bytes queued (not
// already evicted). It reports whether it found one.
func (b *outputBudget) evictLargest() bool {
	b.mu.Lock()
	var worst *batchWriter
	var most int64
	for w := range b.writers {
		if p := w.pending.Load(); p > most && !w.evicted.Load() {
			worst, most = w, p
		}
	}
	if worst != nil {
		worst.evicted.Store(true)
	}
	b.mu.Unlock()
	if worst == nil {
		return false
	}
	b.evicted.Add(1)
	b.log.Warn("reader disconnected: the readers' output buffers are full; it held the most",
		"remote", worst.remote, "queued_bytes", most, "output_buffer_bytes", b.limit)
	worst.stop()
	worst.onErr(errOverBudget)
	return true
}

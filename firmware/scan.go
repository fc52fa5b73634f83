package firmware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

const (
	scanBlock     = 1 << 20 // bytes read per step of the magic scan
	maxCandidates = 1 << 20 // candidates kept per file; more are dropped with a warning
	minPadding    = 256     // shortest run of 0x00/0xff reported as padding
)

// pattern is one magic of one format.
type pattern struct {
	format int // index in the format list
	off    int64
	bytes  []byte
}

// matcher finds every magic of a format list in one pass. Magics are indexed
// by their first two bytes (a 64 Ki-entry bitset says whether a pair starts
// any magic), so most image bytes cost one table lookup.
type matcher struct {
	set     [1 << 16 / 64]uint64
	byPair  map[uint16][]pattern
	overlap int // bytes kept from one block to the next
}

func newMatcher(formats []*Format) *matcher {
	m := &matcher{byPair: map[uint16][]pattern{}}
	add := func(k uint16, p pattern) {
		m.set[k/64] |= 1 << (k % 64)
		m.byPair[k] = append(m.byPair[k], p)
	}
	for i, f := range formats {
		for _, mg := range f.Magics {
			if len(mg.Bytes) == 0 || mg.Offset < 0 {
				continue
			}
			p := pattern{format: i, off: mg.Offset, bytes: mg.Bytes}
			if len(mg.Bytes) == 1 {
				for b := range 256 {
					add(uint16(mg.Bytes[0])<<8|uint16(b), p)
				}
			} else {
				add(uint16(mg.Bytes[0])<<8|uint16(mg.Bytes[1]), p)
			}
			if len(mg.Bytes) > m.overlap {
				m.overlap = len(mg.Bytes)
			}
		}
	}
	return m
}

// candidate is a possible chunk start.
type candidate struct {
	start  int64
	format int
}

// find returns the candidates in r (of size size), sorted by start and
// format order. With workers > 1, blocks are shared round-robin between that
// many goroutines (each block reads its own overlap, so the result does not
// depend on the split). progress gets the bytes scanned so far, in order.
func (m *matcher) find(ctx context.Context, r io.ReaderAt, size int64, workers int, progress func(int64)) ([]candidate, bool, error) {
	blocks := (size + scanBlock - 1) / scanBlock
	workers = int(min(int64(max(workers, 1)), max(blocks, 1)))
	outs := make([][]candidate, workers)
	errs := make([]error, workers)
	var truncated atomic.Bool
	var kept atomic.Int64
	var scanned atomic.Int64
	var progMu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, min(int64(scanBlock+m.overlap), max(size, 1)))
			for blk := int64(w); blk < blocks; blk += int64(workers) {
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				base := blk * scanBlock
				n := min(int64(len(buf)), size-base)
				if _, err := r.ReadAt(buf[:n], base); err != nil && !errors.Is(err, io.EOF) {
					errs[w] = fmt.Errorf("firmware: scan: read at %#x: %w", base, err)
					return
				}
				outs[w] = m.findBlock(buf[:n], base, outs[w], &kept, &truncated)
				if progress != nil {
					progMu.Lock()
					progress(scanned.Add(min(int64(scanBlock), n)))
					progMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, false, err
		}
	}
	out := slices.Concat(outs...)
	slices.SortFunc(out, func(a, b candidate) int {
		if a.start != b.start {
			if a.start < b.start {
				return -1
			}
			return 1
		}
		return a.format - b.format
	})
	return slices.Compact(out), truncated.Load(), nil
}

// findBlock appends the candidates whose magic starts in the first
// scanBlock bytes of b (the rest is the overlap with the next block); b
// starts at base in the file.
func (m *matcher) findBlock(b []byte, base int64, out []candidate, kept *atomic.Int64, truncated *atomic.Bool) []candidate {
	n := int64(len(b))
	end := min(int64(scanBlock), n) // positions owned by this block
	for i := int64(0); i < end; i++ {
		if i+1 >= n {
			break // the file's last byte starts no magic of two or more bytes
		}
		k := uint16(b[i])<<8 | uint16(b[i+1])
		if m.set[k/64]&(1<<(k%64)) == 0 {
			continue
		}
		for _, p := range m.byPair[k] {
			if !bytes.HasPrefix(b[i:], p.bytes) {
				continue
			}
			start := base + i - p.off
			if start < 0 {
				continue
			}
			if kept.Add(1) > maxCandidates {
				truncated.Store(true)
				continue
			}
			out = append(out, candidate{start, p.format})
		}
	}
	return out
}

// maxFailed bounds the failed candidates reported per file; more are counted.
const maxFailed = 100

// scanResult is the chunk map of one file.
type scanResult struct {
	chunks   []*ChunkReport
	formats  []*Format // format of each chunk
	parent   []int     // index of the chunk each one is embedded in, or -1
	failed   []Gap     // candidates whose header was found but that could not be used
	unknown  []Region
	warnings []string
}

// searchInside says whether the engine looks for chunks embedded in a chunk
// of format f: when it is carved, so that nothing else would open its bytes
// (an ELF may hold a gzip'd initramfs, certificates, a second image).
// Identify-only formats are not searched: their structures (JFFS2 nodes,
// UBI volumes) would be found again inside them; nor are Opaque ones.
func searchInside(f *Format, c *Chunk) bool {
	return f.Action() == ActionCarve && !f.Opaque && !c.Encrypted
}

// scanFile identifies the chunks of r. A verified chunk hides the candidates
// that start inside it, unless its format has no Extract: then they are
// identified as chunks embedded in it (bounded by its end) when it is carved. Formats without
// magics are tried at offset 0 when no magic claims it. A candidate whose
// Identify fails with an error other than ErrNotFormat is a failed gap. The
// magic pass, identification and region analysis use up to workers
// goroutines. With withRegions, the gaps between the top-level chunks are
// described as unknown data or padding.
func scanFile(ctx context.Context, r io.ReaderAt, size int64, formats []*Format, m *matcher, workers int, progress func(int64), withRegions bool) (*scanResult, error) {
	res := &scanResult{}
	cands, truncated, err := m.find(ctx, r, size, workers, progress)
	if err != nil {
		return nil, err
	}
	if truncated {
		res.warnings = append(res.warnings, fmt.Sprintf("more than %d magic matches; the rest were not tried", maxCandidates))
	}
	// Formats without magics are tried on the whole file, before magics at 0.
	var whole []candidate
	for i, f := range formats {
		if len(f.Magics) == 0 && f.Identify != nil {
			whole = append(whole, candidate{0, i})
		}
	}
	if len(whole) > 0 && size > 0 {
		cands = append(whole, cands...)
	}
	if err := res.accept(ctx, r, size, formats, cands, workers); err != nil {
		return nil, err
	}
	if !withRegions {
		return res, nil
	}
	if err := res.describeGaps(ctx, r, size, workers); err != nil {
		return nil, err
	}
	return res, nil
}

// lookahead identifies candidates ahead of the walk, in parallel (Identify
// has no side effects); a result is read once the walk reaches its
// candidate.
type lookahead struct {
	r       io.ReaderAt
	size    int64
	formats []*Format
	cands   []candidate
	ahead   []*ident
	sem     chan struct{}
	wg      sync.WaitGroup
}

// ident is the pending result of one candidate's Identify.
type ident struct {
	ch   *Chunk
	err  error
	done chan struct{}
}

func newLookahead(r io.ReaderAt, size int64, formats []*Format, cands []candidate, workers int) *lookahead {
	return &lookahead{r: r, size: size, formats: formats, cands: cands,
		ahead: make([]*ident, len(cands)), sem: make(chan struct{}, max(workers, 1))}
}

// launch starts identifying candidate j unless it was already started.
func (la *lookahead) launch(j int) {
	if la.ahead[j] != nil {
		return
	}
	id := &ident{done: make(chan struct{})}
	la.ahead[j] = id
	c := la.cands[j]
	la.wg.Go(func() {
		la.sem <- struct{}{}
		id.ch, id.err = identify(la.formats[c.format], la.r, c.start, la.size)
		<-la.sem
		close(id.done)
	})
}

// identify returns the result for candidate i, first launching it and the
// next candidates not yet hidden (starting at or after cursor), up to
// workers in all.
func (la *lookahead) identify(i int, cursor int64, workers int) (*Chunk, error) {
	for j, n := i, 0; j < len(la.cands) && n < workers; j++ {
		if la.cands[j].start >= cursor {
			la.launch(j)
			n++
		}
	}
	<-la.ahead[i].done
	return la.ahead[i].ch, la.ahead[i].err
}

// openChunk is a chunk being searched for embedded ones.
type openChunk struct {
	idx int
	end int64
}

// accept identifies the candidates in order: a verified chunk hides the
// ones that start inside it. With several workers, the next candidates not
// yet hidden are identified ahead, in parallel; results for candidates that
// end up hidden are dropped, so the chunk map is the same as with one
// worker.
func (res *scanResult) accept(ctx context.Context, r io.ReaderAt, size int64, formats []*Format, cands []candidate, workers int) error {
	la := newLookahead(r, size, formats, cands, workers)
	defer la.wg.Wait()   // nobody reads r after scanFile returns
	var open []openChunk // innermost last
	cursor := int64(0)
	failedMore := 0
	for i, c := range cands {
		if c.start < cursor {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for len(open) > 0 && c.start >= open[len(open)-1].end {
			open = open[:len(open)-1]
		}
		bound, parent := size, -1
		if len(open) > 0 {
			bound, parent = open[len(open)-1].end, open[len(open)-1].idx
		}
		f := formats[c.format]
		var ch *Chunk
		var err error
		if workers <= 1 || bound < size {
			// Inside a chunk, the candidate is identified against that
			// chunk's bytes only.
			ch, err = identify(f, r, c.start, bound)
		} else {
			ch, err = la.identify(i, cursor, workers)
		}
		if err != nil {
			if !errors.Is(err, ErrNotFormat) && ctx.Err() == nil {
				failedMore += res.fail(Gap{Offset: c.start, Format: f.Name, Status: GapFailed, Reason: err.Error()})
			}
			continue
		}
		res.add(ch, f, parent)
		if searchInside(f, ch) {
			open = append(open, openChunk{len(res.chunks) - 1, ch.Offset + ch.Size})
			cursor = ch.Offset + 1
		} else {
			cursor = ch.Offset + ch.Size
		}
	}
	if failedMore > 0 {
		res.warnings = append(res.warnings, fmt.Sprintf("%d more candidates whose header was found but that could not be used were not listed", failedMore))
	}
	return nil
}

// fail lists a failed candidate, up to maxFailed; it returns 1 when the
// candidate was only counted.
func (res *scanResult) fail(g Gap) int {
	if len(res.failed) >= maxFailed {
		return 1
	}
	res.failed = append(res.failed, g)
	return 0
}

// add records an accepted chunk of format f, embedded in chunk parent (or -1).
func (res *scanResult) add(ch *Chunk, f *Format, parent int) {
	if ch.Format == "" {
		ch.Format = f.Name
	}
	// A chunk accepted where another format failed: the failure was a
	// false lead.
	for n := len(res.failed); n > 0 && res.failed[n-1].Offset == ch.Offset; n-- {
		res.failed = res.failed[:n-1]
	}
	res.chunks = append(res.chunks, &ChunkReport{Chunk: *ch, Kind: f.Kind})
	res.formats = append(res.formats, f)
	res.parent = append(res.parent, parent)
}

// describeGaps describes the gaps between the top-level chunks as unknown
// data or padding; they are described by up to workers goroutines and
// reported in order.
func (res *scanResult) describeGaps(ctx context.Context, r io.ReaderAt, size int64, workers int) error {
	type gap struct{ from, to int64 }
	var gs []gap
	prev := int64(0)
	for i, c := range res.chunks {
		if res.parent[i] >= 0 {
			continue
		}
		if c.Offset > prev {
			gs = append(gs, gap{prev, c.Offset})
		}
		prev = c.End()
	}
	if prev < size {
		gs = append(gs, gap{prev, size})
	}
	regs := make([][]Region, len(gs))
	errs := make([]error, len(gs))
	sem := make(chan struct{}, max(workers, 1))
	var wg sync.WaitGroup
	for i, g := range gs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			regs[i], errs[i] = regions(ctx, r, g.from, g.to)
		})
	}
	wg.Wait()
	for i := range gs {
		if errs[i] != nil {
			return errs[i]
		}
		res.unknown = append(res.unknown, regs[i]...)
	}
	return nil
}

// identify calls f.Identify and checks the contract: the chunk starts at off
// and lies inside the file. A panic in a format is an identification failure.
func identify(f *Format, r io.ReaderAt, off, size int64) (ch *Chunk, err error) {
	defer func() {
		if p := recover(); p != nil {
			ch, err = nil, fmt.Errorf("firmware: %s: Identify panicked at %#x: %v", f.Name, off, p)
		}
	}()
	ch, err = f.Identify(r, off, size)
	if err != nil {
		return nil, err
	}
	if ch == nil || ch.Offset != off || ch.Size <= 0 || ch.Size > size-off {
		return nil, fmt.Errorf("firmware: %s: Identify returned a chunk outside the file at %#x", f.Name, off)
	}
	return ch, nil
}

// regions splits [from, to) into padding runs (0x00 or 0xff, at least
// minPadding long) and unknown data, with its entropy.
func regions(ctx context.Context, r io.ReaderAt, from, to int64) ([]Region, error) {
	var out []Region
	var hist [256]int64
	uStart := from            // start of the current unknown run
	pStart, pByte := from, -1 // current run of one padding byte
	flush := func(end int64) {
		if end > uStart {
			out = append(out, Region{Offset: uStart, Size: end - uStart, Entropy: entropyOf(&hist, end-uStart)})
		}
		hist = [256]int64{}
	}
	closeRun := func(end int64) {
		// The run [pStart, end) of pByte: padding if long enough.
		if pByte >= 0 && end-pStart >= minPadding {
			// Remove the run from the unknown histogram.
			hist[pByte] -= end - pStart
			flush(pStart)
			pad := "0x00"
			if pByte == 0xff {
				pad = "0xff"
			}
			out = append(out, Region{Offset: pStart, Size: end - pStart, Padding: pad})
			uStart = end
		}
	}
	buf := make([]byte, min(scanBlock, to-from))
	for off := from; off < to; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(int64(len(buf)), to-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("firmware: read at %#x: %w", off, err)
		}
		for i, b := range buf[:n] {
			if int(b) == pByte {
				hist[b]++
				continue
			}
			pos := off + int64(i)
			closeRun(pos)
			hist[b]++
			if b == 0x00 || b == 0xff {
				pStart, pByte = pos, int(b)
			} else {
				pByte = -1
			}
		}
		off += n
	}
	closeRun(to)
	flush(to)
	return out, nil
}

// entropyOf is the Shannon entropy in bits per byte of a histogram of n bytes,
// rounded to 3 decimals.
func entropyOf(hist *[256]int64, n int64) float64 {
	if n <= 0 {
		return 0
	}
	var h float64
	for _, c := range hist {
		if c > 0 {
			p := float64(c) / float64(n)
			h -= p * math.Log2(p)
		}
	}
	return math.Round(h*1000) / 1000
}

// digest returns the sha256 and entropy of [off, off+size) of r.
func digest(ctx context.Context, r io.ReaderAt, off, size int64) (string, float64, error) {
	h := sha256.New()
	var hist [256]int64
	buf := make([]byte, min(256<<10, max(size, 1)))
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return "", 0, err
		}
		n := min(int64(len(buf)), size-done)
		if _, err := r.ReadAt(buf[:n], off+done); err != nil && !errors.Is(err, io.EOF) {
			return "", 0, fmt.Errorf("firmware: read at %#x: %w", off+done, err)
		}
		h.Write(buf[:n])
		for _, b := range buf[:n] {
			hist[b]++
		}
		done += n
	}
	return hex.EncodeToString(h.Sum(nil)), entropyOf(&hist, size), nil
}

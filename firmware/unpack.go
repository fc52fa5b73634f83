package firmware

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cordon-vms/cordon/internal/unpackreport"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOutputNotEmpty is returned by Unpack when the output folder exists and
// holds files (callers decide whether to clear it; the engine never does).
var ErrOutputNotEmpty = errors.New("firmware: output folder is not empty")

// opener opens a file to scan or extract, for the time of one job.
type opener func() (io.ReaderAt, io.Closer, int64, error)

// engine is one Scan or Unpack run.
type engine struct {
	o      Options
	m      *matcher
	root   *os.Root // output folder; nil when only scanning
	budget *budget
	sem    chan struct{}

	mu       sync.Mutex
	warnings []string
	gaps     []Gap
	maxDepth int
	chunks   atomic.Int64

	progressMu   sync.Mutex
	progressDone atomic.Int64
	progressSize int64
}

func newEngine(o Options) *engine {
	return &engine{
		o:      o,
		m:      newMatcher(o.Formats),
		budget: &budget{limits: o.Limits},
		sem:    make(chan struct{}, o.Workers),
	}
}

func (e *engine) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.o.Logger.Warn(msg)
	e.mu.Lock()
	e.warnings = append(e.warnings, msg)
	e.mu.Unlock()
}

// gap records content that was found but not opened. Gaps become warnings
// once sorted (sortedGaps), so the report does not depend on scheduling.
func (e *engine) gap(g Gap) {
	g.Reason = strings.ReplaceAll(g.Reason, "\n", "; ") // joined errors: one warning line each
	e.o.Logger.Debug("gap", "file", displayName(g.File), "offset", g.Offset, "format", g.Format, "status", g.Status, "reason", g.Reason)
	e.mu.Lock()
	e.gaps = append(e.gaps, g)
	e.mu.Unlock()
}

// chunkGap records a gap for chunk c.
func (e *engine) chunkGap(c *ChunkReport, status GapStatus, reason string) {
	e.gap(Gap{File: c.File, Offset: c.Offset, Size: c.Size, Format: c.Format, Status: status, Reason: reason})
}

// sortedGaps returns the gaps in file and offset order, and adds each one to
// the warnings.
func (e *engine) sortedGaps() []Gap {
	gs := slices.Clone(e.gaps)
	slices.SortFunc(gs, func(a, b Gap) int {
		if a.File != b.File {
			return strings.Compare(a.File, b.File)
		}
		if a.Offset != b.Offset {
			return cmp.Compare(a.Offset, b.Offset)
		}
		return strings.Compare(a.Format+a.Reason, b.Format+b.Reason)
	})
	for _, g := range gs {
		e.warnings = append(e.warnings, g.String())
	}
	if gs == nil {
		gs = []Gap{}
	}
	return gs
}

func (e *engine) progress(delta int64) {
	if e.o.Progress == nil {
		return
	}
	e.progressMu.Lock() // calls in order, so done never goes back
	defer e.progressMu.Unlock()
	done := e.progressDone.Add(delta)
	e.o.Progress(min(done, e.progressSize), e.progressSize)
}

func (e *engine) acquire(ctx context.Context) error {
	select {
	case e.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *engine) release() { <-e.sem }

// spawner returns a function that runs jobs on goroutines, at most
// 2×Workers at a time for one caller, so a folder of 100000 files does not
// start 100000 goroutines. Jobs take the engine's semaphore only while they
// work, never while they wait for their own children, so nesting cannot
// deadlock.
func (e *engine) spawner() func(wg *sync.WaitGroup, job func()) {
	lim := make(chan struct{}, 2*e.o.Workers)
	return func(wg *sync.WaitGroup, job func()) {
		lim <- struct{}{}
		wg.Go(func() {
			defer func() { <-lim }()
			job()
		})
	}
}

// chunkJob carries what processChunk learns besides the report.
type chunkJob struct {
	rep      *ChunkReport
	format   *Format
	manifest []ManifestEntry
	embedded []*chunkJob // chunk jobs of the chunks embedded in this one, in order
	kids     []*chunkJob // chunk jobs of the files extracted from this one, in order
}

// processFile scans one file (the image at depth 0, an extracted file below)
// and processes its chunks in parallel. dir is where the extract folders of
// its chunks go, relative to the output folder; file is the file's own path
// there ("" for the image).
func (e *engine) processFile(ctx context.Context, open opener, dir, file string, depth int) ([]*chunkJob, []Region, error) {
	if err := e.acquire(ctx); err != nil {
		return nil, nil, err
	}
	r, closer, size, err := open()
	if err != nil {
		e.release()
		return nil, nil, err
	}
	var prog func(int64)
	if depth == 0 && e.o.Progress != nil {
		half := int64(0)
		prog = func(n int64) { e.progress(n/2 - half); half = n / 2 }
	}
	// The image's magic pass runs before anything else: it may use every
	// worker. Extracted files are scanned one goroutine each, in parallel.
	workers := 1
	if depth == 0 {
		workers = e.o.Workers
	}
	res, err := scanFile(ctx, r, size, e.o.Formats, e.m, workers, prog, depth == 0)
	closer.Close()
	e.release()
	if err != nil {
		return nil, nil, err
	}
	for _, w := range res.warnings {
		e.warn("%s: %s", displayName(file), w)
	}
	for _, g := range res.failed {
		g.File = file
		e.gap(g)
	}
	jobs := make([]*chunkJob, len(res.chunks))
	var wg sync.WaitGroup
	spawn := e.spawner()
	for i, c := range res.chunks {
		c.File = file
		jobs[i] = &chunkJob{rep: c, format: res.formats[i]}
		spawn(&wg, func() {
			e.processChunk(ctx, open, dir, depth, size, jobs[i])
			if depth == 0 {
				e.progress(c.Size / 2)
			}
		})
	}
	wg.Wait()
	if depth == 0 {
		for _, u := range res.unknown {
			e.progress(u.Size / 2)
		}
	}
	// Embedded chunks go below the chunk they were found in.
	top := jobs[:0:0]
	for i, j := range jobs {
		if p := res.parent[i]; p >= 0 {
			jobs[p].embedded = append(jobs[p].embedded, j)
		} else {
			top = append(top, j)
		}
	}
	return top, res.unknown, nil
}

func displayName(file string) string {
	if file == "" {
		return "image"
	}
	return file
}

// processChunk digests and extracts one chunk, then scans the files it produced.
func (e *engine) processChunk(ctx context.Context, open opener, dir string, depth int, fileSize int64, job *chunkJob) {
	e.chunks.Add(1)
	files, entries := e.handleChunk(ctx, open, dir, depth, fileSize, job)
	if len(files) == 0 {
		return
	}
	e.scanExtracted(ctx, files, entries, depth, job)
}

// handleChunk digests the chunk, then (when unpacking) carves or extracts it
// as its format says. It returns the regular files extracted and the count
// of entries.
func (e *engine) handleChunk(ctx context.Context, open opener, dir string, depth int, fileSize int64, job *chunkJob) ([]string, int) {
	c, f := job.rep, job.format
	fail := func(err error) {
		c.Errors = append(c.Errors, err.Error())
		if e.root != nil {
			c.Outcome = OutcomeIdentified
		}
		e.chunkGap(c, GapFailed, err.Error())
	}
	if err := e.acquire(ctx); err != nil {
		fail(err)
		return nil, 0
	}
	defer e.release()
	r, closer, _, err := open()
	if err != nil {
		fail(err)
		return nil, 0
	}
	defer closer.Close()
	sum, ent, err := digest(ctx, r, c.Offset, c.Size)
	if err != nil {
		fail(err)
		return nil, 0
	}
	c.SHA256, c.Entropy = sum, ent
	if e.root == nil {
		// A scan opens nothing; it says what unpack would not open.
		switch {
		case c.Encrypted && f.Action() == ActionExtract: // a carved encrypted key is still carved
			e.chunkGap(c, GapIdentified, "encrypted: the content needs a key")
		case f.Action() == ActionIdentify:
			e.chunkGap(c, GapIdentified, "cordon identifies "+f.Name+" but has no extractor for it")
		}
		return nil, 0
	}
	return e.unpackChunk(ctx, r, dir, depth, fileSize, job)
}

// unpackChunk carves or extracts a digested chunk and sets its outcome and
// gap.
func (e *engine) unpackChunk(ctx context.Context, r io.ReaderAt, dir string, depth int, fileSize int64, job *chunkJob) ([]string, int) {
	c, f := job.rep, job.format
	c.Outcome = OutcomeIdentified
	switch f.Action() {
	case ActionIdentify:
		e.chunkGap(c, GapIdentified, "cordon identifies "+f.Name+" but has no extractor for it")
		return nil, 0
	case ActionCarve:
		if c.Offset != 0 || c.Size != fileSize {
			if err := e.carve(ctx, r, dir, c); err != nil {
				e.chunkGap(c, GapFailed, err.Error())
				return nil, 0
			}
		}
		c.Outcome = OutcomeCarved
		return nil, 0
	}
	if depth+1 > e.o.Limits.MaxDepth {
		msg := fmt.Sprintf("depth limit %d reached: %s at %#x in %s not extracted", e.o.Limits.MaxDepth, c.Format, c.Offset, displayName(c.File))
		c.Warnings = append(c.Warnings, msg)
		e.chunkGap(c, GapIdentified, fmt.Sprintf("depth limit %d reached", e.o.Limits.MaxDepth))
		return nil, 0
	}
	files, entries, err := e.extract(ctx, r, dir, depth, job)
	switch {
	case entries > 0:
		c.Outcome = OutcomeExtracted
		if err != nil {
			e.chunkGap(c, GapFailed, fmt.Sprintf("extraction stopped after %d entries: %v", entries, err))
		}
	case err != nil:
		e.chunkGap(c, GapFailed, err.Error())
	case c.Encrypted:
		e.chunkGap(c, GapIdentified, "encrypted: the content needs a key")
	default:
		e.chunkGap(c, GapIdentified, "the extractor found no entries")
	}
	return files, entries
}

// scanExtracted scans the files a chunk's extraction wrote, in parallel,
// and files the chunks found as the job's kids. A chunk that produced one
// file and nothing else (a compressed stream, a single-image container)
// keeps the chunks of that file beside it; otherwise each file gets its own
// .extract folder.
func (e *engine) scanExtracted(ctx context.Context, files []string, entries, depth int, job *chunkJob) {
	slices.Sort(files)
	kids := make([][]*chunkJob, len(files))
	var wg sync.WaitGroup
	spawn := e.spawner()
	for i, fp := range files {
		childDir := fp + ".extract"
		if len(files) == 1 && entries == 1 {
			childDir = path.Dir(fp)
		} else {
			for i := 2; ; i++ { // the archive may hold an entry of that name
				if _, err := e.root.Lstat(childDir); err != nil {
					break
				}
				childDir = fmt.Sprintf("%s.extract-%d", fp, i)
			}
		}
		spawn(&wg, func() {
			jobs, _, err := e.processFile(ctx, e.rootOpener(fp), childDir, fp, depth+1)
			if err != nil && ctx.Err() == nil {
				e.warn("%s: %v", fp, err)
			}
			kids[i] = jobs
		})
	}
	wg.Wait()
	for _, k := range kids {
		job.kids = append(job.kids, k...)
	}
}

// extract runs the format's Extract into a Sink rooted at the chunk's folder
// and returns the regular files it wrote, the count of entries and the
// error that stopped or spoiled the extraction (also in the chunk's Errors).
func (e *engine) extract(ctx context.Context, r io.ReaderAt, dir string, depth int, job *chunkJob) ([]string, int, error) {
	c, f := job.rep, job.format
	xdir := path.Join(dir, fmt.Sprintf("%#x-%s.extract", c.Offset, c.Format))
	// An extracted entry may already carry that name (even as a symlink):
	// never extract into something that exists.
	for i := 2; ; i++ {
		if _, err := e.root.Lstat(xdir); err != nil {
			break
		}
		xdir = path.Join(dir, fmt.Sprintf("%#x-%s-%d.extract", c.Offset, c.Format, i))
	}
	if err := e.root.MkdirAll(xdir, 0o755); err != nil {
		err = fmt.Errorf("create %s: %v", xdir, trimPathErr(err))
		c.Errors = append(c.Errors, err.Error())
		return nil, 0, err
	}
	sub, err := e.root.OpenRoot(xdir)
	if err != nil {
		err = fmt.Errorf("open %s: %v", xdir, trimPathErr(err))
		c.Errors = append(c.Errors, err.Error())
		return nil, 0, err
	}
	defer sub.Close()
	e.mu.Lock()
	e.maxDepth = max(e.maxDepth, depth+1)
	e.mu.Unlock()
	s := &diskSink{ctx: ctx, root: sub, dir: xdir, budget: e.budget, inSize: c.Size}
	ch := c.Chunk
	err = runExtract(ctx, f, io.NewSectionReader(r, c.Offset, c.Size), &ch, s)
	c.Warnings = append(c.Warnings, s.warns...)
	if err != nil {
		c.Errors = append(c.Errors, err.Error())
		switch {
		case errors.Is(err, ErrLimit):
			e.warn("limit reached: %v", err)
		case ctx.Err() != nil:
		default:
			e.o.Logger.Debug("extract failed", "format", c.Format, "offset", c.Offset, "file", c.File, "error", err)
		}
	}
	job.manifest = s.entries
	if len(s.entries) == 0 {
		e.root.Remove(xdir)
		return nil, 0, err
	}
	c.ExtractDir = xdir
	return s.files, len(s.entries), err
}

// runExtract calls f.Extract, turning a panic into an error.
func runExtract(ctx context.Context, f *Format, src *io.SectionReader, c *Chunk, s Sink) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("firmware: %s: Extract panicked: %v", f.Name, p)
		}
	}()
	return f.Extract(ctx, src, c, s)
}

// carve writes a carve-only chunk's bytes to its own file.
func (e *engine) carve(ctx context.Context, r io.ReaderAt, dir string, c *ChunkReport) error {
	name := path.Join(dir, fmt.Sprintf("%#x-%s.bin", c.Offset, c.Format))
	if dir != "" {
		if err := e.root.MkdirAll(dir, 0o755); err != nil {
			err = fmt.Errorf("carve: %v", trimPathErr(err))
			c.Errors = append(c.Errors, err.Error())
			return err
		}
	}
	s := &diskSink{ctx: ctx, root: e.root, dir: "", budget: e.budget}
	_, _, err := s.writeFile(name, &Header{Name: name, Mode: 0o644}, io.NewSectionReader(r, c.Offset, c.Size))
	if err != nil {
		err = fmt.Errorf("carve: %w", err)
		c.Errors = append(c.Errors, err.Error())
		return err
	}
	c.ExtractDir = name
	return nil
}

func (e *engine) rootOpener(rel string) opener {
	return func() (io.ReaderAt, io.Closer, int64, error) {
		f, err := e.root.Open(rel)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("firmware: open %s: %w", rel, trimPathErr(err))
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, 0, err
		}
		return f, f, st.Size(), nil
	}
}

func fileOpener(p string) opener {
	return func() (io.ReaderAt, io.Closer, int64, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, 0, err
		}
		if !st.Mode().IsRegular() {
			f.Close()
			return nil, nil, 0, fmt.Errorf("firmware: %s is not a regular file", p)
		}
		return f, f, st.Size(), nil
	}
}

// collect flattens jobs into reports and the manifest, in tree order.
func collect(jobs []*chunkJob, manifest *[]ManifestEntry) []*ChunkReport {
	out := make([]*ChunkReport, 0, len(jobs))
	for _, j := range jobs {
		*manifest = append(*manifest, j.manifest...)
		j.rep.Children = collect(slices.Concat(j.embedded, j.kids), manifest)
		out = append(out, j.rep)
	}
	return out
}

// imageInfo hashes the image.
func imageInfo(ctx context.Context, p string) (ImageInfo, error) {
	r, c, size, err := fileOpener(p)()
	if err != nil {
		return ImageInfo{}, err
	}
	defer c.Close()
	sum, _, err := digest(ctx, r, 0, size)
	return ImageInfo{Path: p, Size: size, SHA256: sum}, err
}

// Scan maps the chunks of the image at imagePath without extracting anything.
// Unknown stretches and 0x00/0xff padding are reported as regions.
func Scan(ctx context.Context, imagePath string, o Options) (*ScanReport, error) {
	r, c, size, err := fileOpener(imagePath)()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rep, err := ScanReaderAt(ctx, r, size, o)
	if err != nil {
		return nil, fmt.Errorf("firmware: scan %s: %w", imagePath, err)
	}
	rep.Image.Path = imagePath
	return rep, nil
}

// ScanReaderAt is Scan over size bytes of r.
func ScanReaderAt(ctx context.Context, r io.ReaderAt, size int64, o Options) (*ScanReport, error) {
	if len(o.Formats) == 0 {
		return nil, errors.New("firmware: Options.Formats is empty")
	}
	o = o.withDefaults()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.Limits.Timeout)
	defer cancel()
	e := newEngine(o)
	e.progressSize = size
	open := func() (io.ReaderAt, io.Closer, int64, error) { return r, io.NopCloser(nil), size, nil }
	var info ImageInfo
	var infoErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		var sum string
		sum, _, infoErr = digest(ctx, r, 0, size)
		info = ImageInfo{Size: size, SHA256: sum}
	}()
	jobs, unknown, err := e.processFile(ctx, open, "", "", 0)
	<-done
	if err == nil {
		err = infoErr
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("timed out after %v", o.Limits.Timeout)
		}
		return nil, err
	}
	var manifest []ManifestEntry
	rep := &ScanReport{
		Image:   info,
		Chunks:  collect(jobs, &manifest),
		Unknown: unknown,
		Gaps:    e.sortedGaps(),
		Limits:  o.Limits,
	}
	rep.Warnings = e.warnings
	rep.Stats = Stats{Chunks: int(e.chunks.Load()), Seconds: time.Since(start).Seconds()}
	if rep.Unknown == nil {
		rep.Unknown = []Region{}
	}
	if rep.Warnings == nil {
		rep.Warnings = []string{}
	}
	return rep, nil
}

// Unpack extracts the image at imagePath below outDir, recursively, and writes
// outDir/report.json. outDir is created when missing; it must be empty
// (ErrOutputNotEmpty otherwise). Content the formats could not read, limits
// reached and a timeout are warnings in the report, not errors: an error
// means the image or the output folder could not be used at all. When ctx is
// canceled, the partial report is still written and returned with an error
// wrapping ctx.Err().
func Unpack(ctx context.Context, imagePath, outDir string, o Options) (*Report, error) {
	if len(o.Formats) == 0 {
		return nil, errors.New("firmware: Options.Formats is empty")
	}
	o = o.withDefaults()
	start := time.Now()
	st, err := os.Stat(imagePath)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("firmware: %s is not a regular file", imagePath)
	}
	root, err := openOutput(outDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	runCtx, cancel := context.WithTimeout(ctx, o.Limits.Timeout)
	defer cancel()
	e := newEngine(o)
	e.root = root
	e.progressSize = st.Size()
	var info ImageInfo
	var infoErr error
	done := make(chan struct{})
	go func() { info, infoErr = imageInfo(runCtx, imagePath); close(done) }()
	jobs, unknown, err := e.processFile(runCtx, fileOpener(imagePath), "", "", 0)
	<-done
	if err == nil && runCtx.Err() == nil {
		err = infoErr
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			e.warn("interrupted after %v: the report is incomplete", time.Since(start).Round(time.Millisecond))
		case runCtx.Err() != nil:
			e.warn("timeout: stopped after %v (limit %v); the report is incomplete", time.Since(start).Round(time.Millisecond), o.Limits.Timeout)
		default:
			return nil, err
		}
	}
	if runCtx.Err() != nil && ctx.Err() == nil && err == nil {
		e.warn("timeout: stopped after %v (limit %v); the report is incomplete", time.Since(start).Round(time.Millisecond), o.Limits.Timeout)
	}
	if info.Path == "" {
		info = ImageInfo{Path: imagePath, Size: st.Size()}
	}
	rep := e.report(info, jobs, unknown, start)
	if err := writeReport(root, rep); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("firmware: unpack of %s interrupted; partial report in %s: %w", imagePath, filepath.Join(outDir, unpackreport.FileName), err)
	}
	return rep, nil
}

// openOutput creates the output folder when missing and opens it; it must
// be empty.
func openOutput(outDir string) (*os.Root, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(outDir); err != nil {
		return nil, err
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrOutputNotEmpty, outDir)
	}
	return os.OpenRoot(outDir)
}

// report assembles the Unpack report from the engine's results.
func (e *engine) report(info ImageInfo, jobs []*chunkJob, unknown []Region, start time.Time) *Report {
	rep := &Report{Image: info, Limits: e.o.Limits, Unknown: unknown}
	rep.Manifest = []ManifestEntry{}
	rep.Chunks = collect(jobs, &rep.Manifest)
	rep.Gaps = e.sortedGaps()
	rep.Coverage = coverage(info.Size, rep.Chunks, rep.Unknown)
	rep.Warnings = e.warnings
	if rep.Warnings == nil {
		rep.Warnings = []string{}
	}
	if rep.Unknown == nil {
		rep.Unknown = []Region{}
	}
	files := 0
	for _, m := range rep.Manifest {
		if m.Path != "" {
			files++
		}
	}
	rep.Stats = Stats{
		Chunks:       int(e.chunks.Load()),
		Files:        files,
		BytesWritten: e.budget.bytes.Load(),
		MaxDepth:     e.maxDepth,
		Seconds:      time.Since(start).Seconds(),
	}
	return rep
}

// writeReport writes rep as report.json at the top of the output folder.
func writeReport(root *os.Root, rep *Report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("firmware: report: %w", err)
	}
	if err := root.WriteFile(unpackreport.FileName, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("firmware: write report: %w", err)
	}
	return nil
}

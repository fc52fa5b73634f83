package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/entropyplot"
	"github.com/cordon-vms/cordon/firmware/formats"
	"github.com/cordon-vms/cordon/inspect"
	"github.com/cordon-vms/cordon/internal/humanize"
	"github.com/cordon-vms/cordon/internal/logging"
	"github.com/cordon-vms/cordon/internal/version"
	"github.com/cordon-vms/cordon/internal/watchlist"
)

const inspectUsage = `usage: cordon inspect TARGET [flags]
       cordon inspect diff OLD NEW [--format text|json|html] [-o FILE]

Reports what a firmware contains: accounts and the default passwords that
crack their hashes, private keys, certificates and cloud credentials, the
services started at boot (telnetd and its port, dropbear, ftp, netcat, ...),
phone-home endpoints classified against the vendor-cloud watch-list, software
components with versions (a CycloneDX 1.6 SBOM), and the hardening of every
ELF binary (NX, PIE, RELRO, canary, FORTIFY, RPATH, stripped).

TARGET is an unpacked directory, or an image that is first unpacked with the
firmware engine (into a temporary folder, or --keep DIR). A file the engine
extracts nothing from (a lone binary, a config file) is inspected itself.

"inspect diff" compares two targets (images or directories): files added,
removed and changed, component versions, endpoints and services gained or
lost, hardening regressions and credential changes.

Exit codes: 0 ok, 1 failure, 2 usage, 3 when --fail-on is reached.

Examples:
  cordon inspect ./rootfs
  cordon inspect cam.bin --format sarif -o cam.sarif --fail-on high
  cordon inspect ./rootfs --format cyclonedx -o sbom.json --vulns Debian-all.zip
  cordon inspect ./rootfs --watchlist cam.yml && cordon egress --policy p.yml --watchlist cam.yml --pcap c.pcap
  cordon inspect diff fw-v1.bin fw-v2.bin`

// inspectFlags are cordon inspect's flags.
type inspectFlags struct {
	format, out, failOn, vulns, wl, extra, passwords, keep, logLevel string
	workers                                                          int
	timeout                                                          time.Duration
	target                                                           string
	threshold                                                        inspect.Severity
}

func runInspect(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "diff" {
		return runInspectDiff(ctx, e, args[1:])
	}
	f, err := parseInspectFlags(e, args)
	if err != nil {
		return err
	}
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: f.logLevel})
	if err != nil {
		return usagef("--log-level: %v", err)
	}
	o, err := f.options(log)
	if err != nil {
		return err
	}
	t, err := inspectTarget(ctx, e, f.target, f.keep, o, log, f.format == "html")
	if err != nil {
		return err
	}
	r := t.report
	if err := writeInspectReport(e, f, r, t.entropyPNG); err != nil {
		return err
	}
	if f.wl != "" {
		if err := writeInspectWatchlist(f.wl, f.target, r); err != nil {
			return err
		}
	}
	if f.threshold != inspect.SeverityNone && r.MaxSeverity() >= f.threshold {
		return &exitError{code: exitFindings, err: fmt.Errorf("findings reach severity %s (highest: %s)", f.threshold, r.MaxSeverity())}
	}
	return nil
}

func parseInspectFlags(e *env, args []string) (*inspectFlags, error) {
	var f inspectFlags
	fs := newFlagSet(e, "inspect", inspectUsage)
	fs.StringVar(&f.format, "format", "text", "output `format`: text, json, sarif, cyclonedx or html (one self-contained page)")
	fs.StringVar(&f.out, "o", "", "write the report to `FILE` instead of standard output")
	fs.StringVar(&f.failOn, "fail-on", "", "exit with code 3 when a finding reaches this `severity` (info, low, medium, high, critical)")
	fs.StringVar(&f.vulns, "vulns", "", "offline OSV data to attach known vulnerabilities: a `PATH` to osv.dev's per-ecosystem all.zip, a folder of OSV JSON, or one JSON file (array, {\"vulns\": [...]} or JSON lines)")
	fs.StringVar(&f.wl, "watchlist", "", "also write the endpoints found as an egress watch-list `FILE`")
	fs.StringVar(&f.extra, "watchlist-in", "", "extra watch-list `FILE` merged with the embedded vendor-cloud list for classification")
	fs.StringVar(&f.passwords, "passwords", "", "extra password candidates, one a line, from `FILE` (tried after the embedded list)")
	fs.StringVar(&f.keep, "keep", "", "unpack an image TARGET into `DIR` and keep it (default: a temporary folder, removed)")
	fs.IntVar(&f.workers, "workers", 0, "files inspected at once (default: the number of CPUs)")
	fs.DurationVar(&f.timeout, "timeout", 0, "give up after this `duration` (e.g. 10m; default: no limit)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log `level`: debug, info, warn or error")
	pos, err := parseInterleaved(e, fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 1 {
		return nil, usagef("inspect needs exactly one TARGET (an image or an unpacked directory), got %d", len(pos))
	}
	f.target = pos[0]
	switch f.format {
	case "text", "json", "sarif", "cyclonedx", "html":
	default:
		return nil, usagef("--format %q: want text, json, sarif, cyclonedx or html", f.format)
	}
	f.threshold = inspect.SeverityNone
	if f.failOn != "" {
		if f.threshold, err = inspect.ParseSeverity(f.failOn); err != nil {
			return nil, usagef("--fail-on: %v", err)
		}
	}
	return &f, nil
}

// options reads the files the flags name into inspect.Options.
func (f *inspectFlags) options(log *slog.Logger) (inspect.Options, error) {
	o := inspect.Options{Workers: f.workers, Logger: log}
	var err error
	if f.vulns != "" {
		if o.Vulns, err = loadVulns(f.vulns); err != nil {
			return o, fmt.Errorf("--vulns %s: %w", f.vulns, err)
		}
	}
	if f.passwords != "" {
		data, err := os.ReadFile(f.passwords)
		if err != nil {
			return o, fmt.Errorf("--passwords: %w", err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimRight(l, "\r"); l != "" {
				o.Passwords = append(o.Passwords, l)
			}
		}
	}
	if f.extra != "" {
		data, err := os.ReadFile(f.extra)
		if err != nil {
			return o, fmt.Errorf("--watchlist-in: %w", err)
		}
		l, err := watchlist.Parse(f.extra, data)
		if err != nil {
			return o, usagef("--watchlist-in: %v", err)
		}
		o.Watchlist = watchlist.Default().Merge(l)
	}
	return o, nil
}

// writeInspectReport writes r in the chosen format to -o or stdout.
func writeInspectReport(e *env, f *inspectFlags, r *inspect.Report, entropyPNG []byte) error {
	var buf bytes.Buffer
	var err error
	switch f.format {
	case "text":
		err = r.WriteText(&buf)
	case "json":
		err = r.WriteJSON(&buf)
	case "sarif":
		err = r.WriteSARIF(&buf, version.String())
	case "cyclonedx":
		err = r.WriteCycloneDX(&buf, version.String(), time.Now())
	case "html":
		err = r.WriteHTML(&buf, inspect.HTMLOptions{ToolVersion: version.String(), EntropyPNG: entropyPNG})
	}
	if err != nil {
		return fmt.Errorf("inspect: writing %s: %w", f.format, err)
	}
	return writeOutput(e.Stdout, f.out, buf.Bytes())
}

// writeInspectWatchlist writes the endpoints found in target as an egress
// watch-list file.
func writeInspectWatchlist(path, target string, r *inspect.Report) error {
	var wb bytes.Buffer
	header := fmt.Sprintf("Endpoints found by cordon inspect in %s.\nLoad with: cordon egress --watchlist %s", target, filepath.Base(path))
	if err := watchlist.Write(&wb, header, r.WatchlistEntries()); err != nil {
		return fmt.Errorf("inspect: writing the watch-list: %w", err)
	}
	if err := os.WriteFile(path, wb.Bytes(), 0o644); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	return nil
}

func runInspectDiff(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "inspect diff", `usage: cordon inspect diff OLD NEW [--format text|json] [-o FILE] [--fail-on-regression]

Compares two firmware targets (images or unpacked directories): files added,
removed and changed, component version changes, endpoints and services gained
or lost, hardening regressions and credential changes.

Example:
  cordon inspect diff fw-5.5.0.bin fw-5.6.2.bin --format json -o changes.json`)
	format := fs.String("format", "text", "output `format`: text, json or html")
	out := fs.String("o", "", "write to `FILE` instead of standard output")
	failReg := fs.Bool("fail-on-regression", false, "exit with code 3 when NEW is worse: a hardening regression or a new high/critical finding")
	workers := fs.Int("workers", 0, "files inspected at once (default: the number of CPUs)")
	logLevel := fs.String("log-level", "warn", "log `level`: debug, info, warn or error")
	pos, err := parseInterleaved(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("inspect diff needs OLD and NEW, got %d argument(s)", len(pos))
	}
	if *format != "text" && *format != "json" && *format != "html" {
		return usagef("--format %q: want text, json or html", *format)
	}
	log, err := logging.New(e.Stderr, logging.Options{Level: *logLevel})
	if err != nil {
		return usagef("--log-level: %v", err)
	}
	o := inspect.Options{Workers: *workers, Logger: log}
	oldT, err := inspectTarget(ctx, e, pos[0], "", o, log, false)
	if err != nil {
		return err
	}
	newT, err := inspectTarget(ctx, e, pos[1], "", o, log, false)
	if err != nil {
		return err
	}
	d := inspect.Diff(oldT.report, newT.report)
	var buf bytes.Buffer
	switch *format {
	case "json":
		err = d.WriteJSON(&buf)
	case "html":
		err = d.WriteHTML(&buf, inspect.HTMLOptions{ToolVersion: version.String()})
	default:
		err = d.WriteText(&buf)
	}
	if err != nil {
		return err
	}
	if err := writeOutput(e.Stdout, *out, buf.Bytes()); err != nil {
		return err
	}
	if n := d.Regressions(); *failReg && n > 0 {
		return &exitError{code: exitFindings, err: fmt.Errorf("%d regression(s) from %s to %s", n, pos[0], pos[1])}
	}
	return nil
}

// inspected is the result of inspectTarget.
type inspected struct {
	report     *inspect.Report
	entropyPNG []byte // the image's entropy picture, when asked for and the target is an image
}

// inspectTarget inspects a directory, or unpacks an image first (into keep,
// or a temporary folder removed afterwards). With picture, an image's
// entropy is drawn too (for the HTML report). Progress goes to standard
// error when it is a terminal.
func inspectTarget(ctx context.Context, e *env, target, keep string, o inspect.Options, log *slog.Logger, picture bool) (*inspected, error) {
	st, err := os.Stat(target)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	prog := newProgress(e.Stderr, target)
	defer prog.done()
	o.Progress = prog.files
	out := &inspected{}
	dir := target
	if !st.IsDir() {
		prog.phase("unpacking")
		var rep *firmware.Report
		if dir, rep, err = unpackForInspect(ctx, target, keep, log); err != nil {
			return nil, err
		}
		if keep == "" {
			defer os.RemoveAll(dir)
		}
		if picture {
			prog.phase("drawing the entropy")
			if out.entropyPNG, err = drawEntropy(ctx, target, rep); err != nil {
				log.Warn("no entropy picture in the report", "error", err)
			}
		}
	}
	prog.phase("inspecting")
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer root.Close()
	r, err := inspect.Run(ctx, target, root.FS(), o)
	if err != nil || st.IsDir() || r.Stats.Files > 0 {
		out.report = r
		return out, err
	}
	// Nothing was extracted (a lone binary, a config file, an unknown
	// format): inspect the file itself.
	log.Info("nothing extracted from the image; inspecting the file itself", "target", target)
	fr, err := inspect.Run(ctx, target, singleFileFS{path: target, info: st}, o)
	if err != nil {
		return nil, err
	}
	fr.KeepUnexamined(r)
	out.report = fr
	return out, nil
}

// drawEntropy draws the image's entropy with its chunks, as cordon firmware
// entropy --png does, from the unpacker's report.
func drawEntropy(ctx context.Context, image string, rep *firmware.Report) ([]byte, error) {
	size := rep.Image.Size
	if size == 0 {
		return nil, fmt.Errorf("%s is empty", image)
	}
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const width = 1400
	bs := firmware.DefaultEntropyBlockFor(entropyplot.VisibleBytes(size, rep.Unknown, false), 2*width)
	blocks, err := firmware.EntropyProfile(ctx, f, size, bs)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = entropyplot.Draw(&buf, &entropyplot.Plot{Title: entropyplot.TitleOf(image), Size: size, Block: bs, Blocks: blocks,
		Chunks: rep.Chunks, Padding: rep.Unknown, Width: width})
	return buf.Bytes(), err
}

// singleFileFS is a read-only fs.FS holding one file, named by its base name.
type singleFileFS struct {
	path string
	info fs.FileInfo
}

func (s singleFileFS) Open(name string) (fs.File, error) {
	if name != s.info.Name() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return os.Open(s.path)
}

func (s singleFileFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	return []fs.DirEntry{fs.FileInfoToDirEntry(s.info)}, nil
}

func (s singleFileFS) Stat(name string) (fs.FileInfo, error) {
	switch name {
	case ".":
		return rootInfo{}, nil
	case s.info.Name():
		return s.info, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// rootInfo describes the directory "." of a singleFileFS.
type rootInfo struct{}

func (rootInfo) Name() string       { return "." }
func (rootInfo) Size() int64        { return 0 }
func (rootInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o555 }
func (rootInfo) ModTime() time.Time { return time.Time{} }
func (rootInfo) IsDir() bool        { return true }
func (rootInfo) Sys() any           { return nil }

// unpackForInspect runs the firmware engine on an image.
func unpackForInspect(ctx context.Context, image, keep string, log *slog.Logger) (string, *firmware.Report, error) {
	dir := keep
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "cordon-inspect-"); err != nil {
			return "", nil, fmt.Errorf("inspect: %w", err)
		}
	}
	rep, err := firmware.Unpack(ctx, image, dir, firmware.Options{Formats: formats.All, Logger: log})
	if err != nil {
		if keep == "" {
			os.RemoveAll(dir)
		}
		return "", nil, fmt.Errorf("inspect: unpacking %s: %w", image, err)
	}
	return dir, rep, nil
}

// loadVulns reads OSV data as published: a zip (osv.dev's all.zip), a
// folder of OSV JSON files, or one JSON file.
func loadVulns(p string) (*inspect.VulnDB, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		root, err := os.OpenRoot(p)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return inspect.ParseVulnDir(root.FS())
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err == nil && string(magic[:]) == "PK\x03\x04" {
		return inspect.ParseVulnZip(f, st.Size())
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return inspect.ParseVulnDB(data)
}

func writeOutput(stdout io.Writer, file string, data []byte) error {
	if file == "" || file == "-" {
		_, err := stdout.Write(data)
		return err
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	return nil
}

// progress shows what a long inspection is doing on a terminal's standard
// error: one line, rewritten at most four times a second. It is silent when
// standard error is not a terminal (pipes, files, tests).
type progress struct {
	w      io.Writer // nil when silent
	target string
	mu     sync.Mutex
	what   string
	last   time.Time
	shown  bool
}

func newProgress(stderr io.Writer, target string) *progress {
	p := &progress{target: filepath.Base(target)}
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.w = f
		}
	}
	return p
}

// phase names the step under way (unpacking, inspecting).
func (p *progress) phase(what string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.what = what
	p.printLocked(fmt.Sprintf("%s %s…", what, p.target))
}

// files is inspect.Options.Progress.
func (p *progress) files(n int, bytes int64) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 250*time.Millisecond {
		return
	}
	p.printLocked(fmt.Sprintf("%s %s: %d files, %s", p.what, p.target, n, humanize.Bytes(bytes)))
}

func (p *progress) printLocked(line string) {
	p.last = time.Now()
	p.shown = true
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// done clears the line.
func (p *progress) done() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

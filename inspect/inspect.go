package inspect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cordon-vms/cordon/internal/unixmode"
	"github.com/cordon-vms/cordon/internal/watchlist"
)

// Defaults of Options.
const (
	DefaultMaxScanBytes  = 64 << 20 // bytes of one file scanned for strings
	DefaultMaxParseBytes = 8 << 20  // files up to this size are read whole for the parsers
	DefaultMaxFiles      = 1_000_000
	minStringLen         = 6
)

// Options configures Run. The zero value is ready to use.
type Options struct {
	// Workers is how many files are inspected at once. It defaults to
	// runtime.GOMAXPROCS(0).
	Workers int
	// MaxScanBytes bounds how much of one file is scanned for strings
	// (endpoints, components, credentials); the rest is only hashed. It
	// defaults to DefaultMaxScanBytes (64 MiB).
	MaxScanBytes int64
	// MaxParseBytes bounds the files read whole for the structured parsers
	// (accounts, keys, certificates, init scripts, ELF). Larger files are
	// streamed: strings and hashes only (ELF hardening still runs when the
	// file supports random access). It defaults to DefaultMaxParseBytes (8 MiB).
	MaxParseBytes int64
	// MaxFiles stops the walk with an error after this many entries. It
	// defaults to DefaultMaxFiles.
	MaxFiles int
	// Watchlist classifies endpoints by vendor. It defaults to
	// watchlist.Default().
	Watchlist *watchlist.List
	// Vulns, when set, attaches known vulnerabilities to components.
	Vulns *VulnDB
	// Passwords are tried against password hashes after the embedded
	// vendor and botnet defaults (passwords.txt) and before the embedded
	// common passwords (passwords-common.txt).
	Passwords []string
	// CrackTime bounds the time spent on one distinct hash (slow schemes
	// such as bcrypt or SHA-crypt with many rounds stop early and say so in
	// the account's note). It defaults to 3 s.
	CrackTime time.Duration
	// Progress, when set, is called after every file with the running
	// count of files and bytes inspected (from the workers, one call at a
	// time: keep it cheap).
	Progress func(files int, bytes int64)
	// Logger receives progress and skipped files. It defaults to a logger
	// that discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MaxScanBytes <= 0 {
		o.MaxScanBytes = DefaultMaxScanBytes
	}
	if o.MaxParseBytes <= 0 {
		o.MaxParseBytes = DefaultMaxParseBytes
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.CrackTime <= 0 {
		o.CrackTime = 3 * time.Second
	}
	if o.Watchlist == nil {
		o.Watchlist = watchlist.Default()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "inspect")
}

// Report is the result of Run; its JSON form is the contract documented in
// docs/inspect.md.
type Report struct {
	Target     string      `json:"target"`
	Findings   []Finding   `json:"findings"`
	Endpoints  []Endpoint  `json:"endpoints"`
	Components []Component `json:"components"`
	Binaries   []Binary    `json:"binaries"`
	Services   []Service   `json:"services"`
	Accounts   []Account   `json:"accounts"`
	// Coverage is the unpacker's account of the image's bytes, from
	// report.json; nil for a plain directory.
	Coverage *Coverage `json:"coverage,omitempty"`
	// Unexamined lists what the unpacker found but did not open (each is
	// also a coverage.unexamined finding).
	Unexamined []Gap `json:"unexamined"`
	// Examined says what was looked at: account and init files parsed,
	// filesystems opened, chunks not opened.
	Examined Examined `json:"examined"`
	Stats    Stats    `json:"stats"`

	// Files maps every regular file's path to its size and SHA-256, for Diff.
	Files map[string]FileSum `json:"-"`

	chunks []*chunkInfo // report.json's chunk tree, for the HTML chunk map
}

// FileSum identifies a file's content.
type FileSum struct {
	Size   int64
	SHA256 string
	Mode   string // octal permission and special bits, from the manifest when present
}

// Stats counts what Run looked at.
type Stats struct {
	Files     int     `json:"files"`
	Bytes     int64   `json:"bytes"`
	ELF       int     `json:"elf"`
	Truncated int     `json:"truncated"` // files scanned only up to MaxScanBytes
	Errors    int     `json:"errors"`    // files that could not be read
	Seconds   float64 `json:"seconds"`
	Manifest  bool    `json:"manifest"` // modes came from report.json's manifest
}

// Finding is one issue, with a stable rule ID (see Rules).
type Finding struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Path     string   `json:"path"`
	Evidence string   `json:"evidence"`
	Detail   string   `json:"detail"`
	// Line is the 1-based line of Path the evidence is on, when it names
	// one ("line 4: ..."); 0 otherwise.
	Line int `json:"line,omitempty"`
}

var evidenceLineRE = regexp.MustCompile(`^line (\d{1,9})\b`)

// evidenceLine returns the line an evidence starts with ("line 4: ..."),
// or 0.
func evidenceLine(ev string) int {
	m := evidenceLineRE.FindStringSubmatch(ev)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Run inspects the tree fsys. target names it in the report.
func Run(ctx context.Context, target string, fsys fs.FS, o Options) (*Report, error) {
	o.setDefaults()
	start := time.Now()
	s := &runState{
		ctx:  ctx,
		fsys: fsys,
		o:    &o,
		r:    &Report{Target: target, Files: map[string]FileSum{}},
		c:    newCollector(&o),
	}
	s.loadManifest()

	jobs := make(chan string, 64)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() { s.work(jobs) })
	}
	walkErr := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		return s.visit(jobs, p, d, err)
	})
	close(jobs)
	wg.Wait()
	if walkErr != nil {
		return nil, walkErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := s.finish()
	r.Stats.Seconds = time.Since(start).Seconds()
	return r, nil
}

// runState is one Run's state, shared by the walk and the workers.
type runState struct {
	ctx  context.Context
	fsys fs.FS
	o    *Options
	r    *Report
	c    *collector
	man  *unpackReport // nil for a plain directory

	mu sync.Mutex // guards r.Stats and r.Files while the workers run

	// Walk state, touched only by the walking goroutine.
	entries        int
	sawEtc, sawBin bool
}

// loadManifest reads the unpacker's report.json, when there is one, and
// takes its coverage, gaps and chunk tree into the report.
func (s *runState) loadManifest() {
	man, err := readManifest(s.fsys)
	if err != nil {
		s.o.Logger.Warn("ignoring unpack manifest", "error", err)
	}
	s.man = man
	r := s.r
	r.Stats.Manifest = man != nil
	r.Unexamined = []Gap{}
	if man != nil {
		r.Coverage = man.Coverage
		r.Unexamined = orEmpty(man.Gaps)
		r.Examined.examineChunks(man.Chunks)
		r.chunks = man.Chunks
		s.c.chunkComponents(man.Chunks)
	}
}

// work inspects the regular files sent on jobs until it is closed.
func (s *runState) work(jobs <-chan string) {
	buf := new(bytes.Buffer)
	for p := range jobs {
		if s.ctx.Err() != nil {
			continue
		}
		sum, mode, truncated, err := s.c.inspectFile(s.fsys, p, buf)
		if err == nil && s.man == nil {
			s.c.modeFindings(p, mode, "")
		}
		s.record(p, sum, mode, truncated, err)
	}
}

// record counts one inspected file and reports progress.
func (s *runState) record(p string, sum FileSum, mode fs.FileMode, truncated bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.r
	if truncated {
		r.Stats.Truncated++
	}
	if err != nil {
		r.Stats.Errors++
		s.o.Logger.Warn("cannot read file", "path", p, "error", err)
	} else {
		r.Stats.Files++
		r.Stats.Bytes += sum.Size
		sum.Mode = fmt.Sprintf("%04o", unixmode.ToUnix(mode))
		r.Files[p] = sum
	}
	if s.o.Progress != nil {
		s.o.Progress(r.Stats.Files, r.Stats.Bytes)
	}
}

// visit is the WalkDir callback: regular files go to the workers; other
// entries are looked at here.
func (s *runState) visit(jobs chan<- string, p string, d fs.DirEntry, err error) error {
	if err != nil {
		s.o.Logger.Warn("cannot walk", "path", p, "error", err)
		return nil
	}
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if s.entries++; s.entries > s.o.MaxFiles {
		return fmt.Errorf("inspect: more than %d entries (Options.MaxFiles)", s.o.MaxFiles)
	}
	if p == "." || (p == manifestName && s.man != nil) {
		return nil
	}
	if d.Type().IsRegular() {
		jobs <- p // the worker checks its mode from the open file
		return nil
	}
	s.visitOther(p, d)
	return nil
}

// visitOther notes system directories and busybox applet links, and checks
// the modes of directories and symlinks when there is no manifest to
// give them.
func (s *runState) visitOther(p string, d fs.DirEntry) {
	if d.IsDir() {
		switch strings.ToLower(d.Name()) {
		case "etc":
			s.sawEtc = true
		case "bin", "sbin":
			s.sawBin = true
		}
	}
	symlink := d.Type()&fs.ModeSymlink != 0
	if symlink {
		if t, err := fs.ReadLink(s.fsys, p); err == nil && isBusyboxLink(t) {
			s.c.addApplet(d.Name())
		}
	}
	if s.man == nil && (d.IsDir() || symlink) {
		if info, err := d.Info(); err == nil {
			s.c.modeFindings(p, info.Mode(), "")
		}
	}
}

// applyManifest checks the manifest's entries (their modes and applet
// links) and takes their modes into Files.
func (s *runState) applyManifest() {
	if s.man == nil {
		return
	}
	for _, e := range s.man.Manifest {
		if e.Type == "symlink" && isBusyboxLink(e.LinkTarget) {
			s.c.addApplet(path.Base(e.OrigName))
		}
		s.c.manifestFindings(e)
		if fsum, ok := s.r.Files[e.Path]; ok && e.Path != "" {
			fsum.Mode = e.Mode
			s.r.Files[e.Path] = fsum
		}
	}
}

// finish runs the whole-tree checks after the walk and fills in the rest
// of the report.
func (s *runState) finish() *Report {
	r, c := s.r, s.c
	for _, g := range r.Unexamined {
		c.gapFinding(g)
	}
	s.applyManifest()
	c.finish(s.ctx, r)
	r.Examined.SystemTree = s.sawEtc || s.sawBin && r.Stats.ELF > 0
	r.Examined.AccountFiles, r.Examined.InitFiles = len(c.accountFiles), len(c.initFiles)
	r.Examined.Filesystems = orEmpty(r.Examined.Filesystems)
	c.coverageFindings(r)
	r.Findings = orEmpty(c.findings)
	sortFindings(r.Findings)
	return r
}

// collector gathers per-file results from the workers.
type collector struct {
	o *Options

	mu         sync.Mutex
	findings   []Finding
	endpoints  map[string]*Endpoint
	components map[string]*Component
	binaries   []Binary
	services   []Service
	passwd     []passwdEntry
	shadow     []shadowEntry
	// accountFiles and initFiles are the files parsed as accounts and as
	// service starters (for Report.Examined).
	accountFiles, initFiles map[string]bool
	applets                 map[string]bool // names linked to busybox
}

func newCollector(o *Options) *collector {
	return &collector{o: o, endpoints: map[string]*Endpoint{}, components: map[string]*Component{},
		accountFiles: map[string]bool{}, initFiles: map[string]bool{}, applets: map[string]bool{}}
}

func (c *collector) add(f Finding) {
	c.mu.Lock()
	c.findings = append(c.findings, f)
	c.mu.Unlock()
}

// fileView is what the per-family checks see of one file.
type fileView struct {
	path string
	data []byte // the whole file when it is at most MaxParseBytes, else nil
	size int64
}

func (f *fileView) base() string { return path.Base(f.path) }

// inspectFile hashes one file, runs the structured parsers when it is small
// enough and streams its strings to the string checks.
func (c *collector) inspectFile(fsys fs.FS, p string, buf *bytes.Buffer) (sum FileSum, mode fs.FileMode, truncated bool, err error) {
	fh, err := fsys.Open(p)
	if err != nil {
		return FileSum{}, 0, false, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return FileSum{}, 0, false, err
	}
	mode = st.Mode()
	if !mode.IsRegular() {
		return FileSum{}, 0, false, fmt.Errorf("inspect: %s is no longer a regular file", p)
	}
	h := sha256.New()
	fv := &fileView{path: p, size: st.Size()}
	sc := newStringChecks(c, p)
	sc.skipEndpoints = certStoreName(p) || legalInfoName(p)
	if st.Size() <= c.o.MaxParseBytes {
		buf.Reset()
		n, err := io.Copy(buf, io.LimitReader(fh, c.o.MaxParseBytes+1))
		if err != nil {
			return FileSum{}, 0, false, err
		}
		if n > c.o.MaxParseBytes { // grew while we read
			return FileSum{}, 0, false, fmt.Errorf("inspect: %s: file grew beyond %d bytes while read", p, c.o.MaxParseBytes)
		}
		fv.data = buf.Bytes()
		fv.size = n
		sc.skipEndpoints = sc.skipEndpoints || certStoreData(fv.data)
		h.Write(fv.data)
		c.parseFile(fv)
		extractStrings(bytes.NewReader(fv.data), minStringLen, sc.check)
	} else {
		if ra, ok := fh.(io.ReaderAt); ok {
			c.checkELF(p, ra)
		}
		tr := io.TeeReader(fh, h)
		if err := extractStrings(io.LimitReader(tr, c.o.MaxScanBytes), minStringLen, sc.check); err != nil {
			return FileSum{}, 0, false, err
		}
		rest, err := io.Copy(io.Discard, tr)
		if err != nil {
			return FileSum{}, 0, false, err
		}
		if rest > 0 {
			truncated = true
			c.o.Logger.Debug("scanned the first bytes only, hashed all", "path", p, "scanned", c.o.MaxScanBytes)
		}
	}
	c.componentsFromPath(p)
	sc.flush()
	return FileSum{Size: fv.size, SHA256: hex.EncodeToString(h.Sum(nil))}, mode, truncated, nil
}

// parseFile runs the parsers that need the whole file.
func (c *collector) parseFile(f *fileView) {
	if bytes.HasPrefix(f.data, []byte("\x7fELF")) {
		c.checkELF(f.path, bytes.NewReader(f.data))
		return
	}
	c.checkAccountsFile(f)
	c.checkServicesFile(f)
	c.checkPEM(f)
	c.checkDER(f)
	c.checkConfigPasswords(f)
	c.checkPackageDB(f)
}

// finish runs the checks that need the whole tree and sorts the report.
func (c *collector) finish(ctx context.Context, r *Report) {
	r.Accounts = c.analyzeAccounts(ctx)
	c.appletComponents()
	for _, s := range c.services {
		c.serviceFindings(s)
	}
	r.Services = c.services
	for _, e := range c.endpoints {
		sort.Strings(e.Paths)
		if len(e.Paths) > maxEndpointPaths {
			e.Paths = e.Paths[:maxEndpointPaths]
		}
		r.Endpoints = append(r.Endpoints, *e)
		c.endpointFindings(e)
	}
	for _, comp := range c.components {
		if c.o.Vulns != nil {
			comp.Vulns, comp.VulnNote = c.o.Vulns.MatchComponent(comp)
			for _, v := range comp.Vulns {
				c.findings = append(c.findings, Finding{Rule: RuleKnownVuln, Severity: v.severity(), Path: comp.Path,
					Evidence: fmt.Sprintf("%s %s: %s", comp.Name, comp.Version, v.ID),
					Detail:   strings.TrimSpace(v.Summary + fixedNote(v.Fixed))})
			}
		}
		r.Components = append(r.Components, *comp)
	}
	r.Binaries = c.binaries
	r.Stats.ELF = len(c.binaries)
	r.Findings = orEmpty(c.findings)
	sortFindings(r.Findings)
	sort.Slice(r.Endpoints, func(i, j int) bool { return r.Endpoints[i].Value < r.Endpoints[j].Value })
	sort.Slice(r.Components, func(i, j int) bool {
		a, b := r.Components[i], r.Components[j]
		return a.Name < b.Name || a.Name == b.Name && a.Version < b.Version
	})
	sort.Slice(r.Binaries, func(i, j int) bool { return r.Binaries[i].Path < r.Binaries[j].Path })
	sort.Slice(r.Services, func(i, j int) bool {
		a, b := r.Services[i], r.Services[j]
		return a.Path < b.Path || a.Path == b.Path && a.Line < b.Line
	})
	r.Endpoints = orEmpty(r.Endpoints)
	r.Components = orEmpty(r.Components)
	r.Binaries = orEmpty(r.Binaries)
	r.Services = orEmpty(r.Services)
	r.Accounts = orEmpty(r.Accounts)
}

// sortFindings sorts by severity (highest first), then rule, path and
// evidence, and sets each finding's Line from its evidence.
func sortFindings(fs []Finding) {
	for i := range fs {
		if fs[i].Line == 0 {
			fs[i].Line = evidenceLine(fs[i].Evidence)
		}
	}
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Evidence < b.Evidence
	})
}

// KeepUnexamined copies the unpacker's coverage, the unexamined parts and
// their coverage.unexamined findings from an inspection of the unpacked
// tree into r, an inspection of the image file itself (done when nothing
// was extracted): the gaps must not be lost with the tree.
func (r *Report) KeepUnexamined(tree *Report) {
	r.Coverage = tree.Coverage
	r.Unexamined = tree.Unexamined
	r.Examined.Filesystems = tree.Examined.Filesystems
	r.chunks = tree.chunks
	r.Examined.ChunksOpened, r.Examined.ChunksNotOpened = tree.Examined.ChunksOpened, tree.Examined.ChunksNotOpened
	for _, f := range tree.Findings {
		if f.Rule == RuleUnexamined {
			r.Findings = append(r.Findings, f)
		}
	}
	sortFindings(r.Findings)
}

// orEmpty returns s, or an empty slice for nil (so JSON has [] and not null).
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func fixedNote(fixed string) string {
	if fixed == "" {
		return ""
	}
	return " (fixed in " + fixed + ")"
}

// certStoreName and certStoreData recognise certificate stores (Java
// keystores, DER certificates): their URLs are CA distribution and OCSP
// points, not endpoints the firmware contacts.
func certStoreName(p string) bool {
	b := strings.ToLower(path.Base(p))
	return b == "cacerts" || strings.HasSuffix(b, ".jks") || strings.HasSuffix(b, ".der") || strings.HasSuffix(b, ".p12")
}

// legalInfoName recognises Buildroot's legal-info manifest: its URLs are
// where the sources were downloaded from when the image was built.
func legalInfoName(p string) bool {
	return strings.Contains(p, "legal-info/") && strings.HasSuffix(p, ".csv")
}

func certStoreData(d []byte) bool {
	return bytes.HasPrefix(d, []byte{0xfe, 0xed, 0xfe, 0xed}) || len(d) > 4 && d[0] == 0x30 && d[1] == 0x82
}

// MaxSeverity returns the highest severity among the findings, or
// SeverityNone when there are none.
func (r *Report) MaxSeverity() Severity {
	m := SeverityNone
	for _, f := range r.Findings {
		m = max(m, f.Severity)
	}
	return m
}

// isText reports whether data looks like text: no NUL bytes in its first 8 KiB.
func isText(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8192)], 0) < 0
}

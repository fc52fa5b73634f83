package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats"
	"github.com/cordon-vms/cordon/internal/humanize"
	"github.com/cordon-vms/cordon/internal/logging"
	"github.com/cordon-vms/cordon/internal/unpackreport"
)

const firmwareUsage = `usage: cordon firmware <scan|unpack|entropy|formats> [arguments]

Scans and unpacks firmware images natively (no external tools), within hard
limits: vendor packages (Hikvision, Dahua, XiongMai), flash dumps, boot
containers, filesystems, archives and compressed streams.

  cordon firmware scan IMAGE [--json]
	print the chunk map: offset, end, format, confidence, entropy; unknown
	regions and 0x00/0xff padding shown as such
  cordon firmware unpack IMAGE -o DIR [--depth N] [--json] [limits]
	extract every chunk, recursively, below DIR and write DIR/report.json
  cordon firmware entropy IMAGE [--block SIZE] [--png FILE] [--json]
	print the Shannon entropy of every block, grouped into regions
	(compressed/encrypted, text, padding, data) within the chunks found;
	--png draws the curve with the chunks labelled by format
  cordon firmware formats [--json]
	list the formats cordon knows and whether it extracts, carves or
	only identifies each

Run 'cordon firmware <subcommand> --help' for the flags of one.`

func runFirmware(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.Stderr, firmwareUsage)
		return usagef("firmware needs a subcommand: scan, unpack, entropy or formats")
	}
	switch args[0] {
	case "scan":
		return runFirmwareScan(ctx, e, args[1:])
	case "unpack":
		return runFirmwareUnpack(ctx, e, args[1:])
	case "entropy":
		return runFirmwareEntropy(ctx, e, args[1:])
	case "formats":
		return runFirmwareFormats(e, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(e.Stdout, firmwareUsage)
		return flag.ErrHelp
	}
	return usagef("unknown firmware subcommand %q (want scan, unpack, entropy or formats)", args[0])
}

// byteSize is a flag value such as 8GiB, 512MiB, 100M or 4096.
type byteSize int64

func (b *byteSize) String() string { return humanize.Bytes(int64(*b)) }

func (b *byteSize) Set(s string) error {
	v, err := humanize.ParseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

// limitFlags registers the limit flags shared by scan and unpack.
type limitFlags struct {
	maxBytes byteSize
	maxRatio *float64
	maxFiles *int
	depth    *int
	timeout  *time.Duration
	workers  *int
	logLevel *string
}

func addLimitFlags(fs *flag.FlagSet, unpack bool) *limitFlags {
	l := &limitFlags{maxBytes: firmware.DefaultMaxTotalBytes}
	if unpack {
		fs.Var(&l.maxBytes, "max-bytes", "stop writing after this many bytes in total (e.g. 512MiB, 8GiB)")
		l.maxRatio = fs.Float64("max-ratio", firmware.DefaultMaxRatio, "stop a chunk that expands more than this many times (once it has produced 16 MiB); 0 = default, -1 = off")
		l.maxFiles = fs.Int("max-files", firmware.DefaultMaxFiles, "stop after creating this many entries")
		l.depth = fs.Int("depth", firmware.DefaultMaxDepth, "maximum nesting of extractions (1 = only the image's own chunks)")
	}
	l.timeout = fs.Duration("timeout", firmware.DefaultTimeout, "stop after this much wall time and report what was done")
	l.workers = fs.Int("workers", 0, "chunks and files processed at the same time (default: the number of CPUs)")
	l.logLevel = fs.String("log-level", "error", "log level on stderr: debug, info, warn or error (warnings are in the report and the summary)")
	return l
}

func (l *limitFlags) options(e *env) (firmware.Options, error) {
	log, err := logging.New(e.Stderr, logging.Options{Level: *l.logLevel})
	if err != nil {
		return firmware.Options{}, usagef("%v", err)
	}
	o := firmware.Options{Formats: formats.All, Logger: log.With("component", "firmware"), Workers: *l.workers}
	o.Limits.MaxTotalBytes = int64(l.maxBytes)
	if l.maxRatio != nil {
		o.Limits.MaxRatio = *l.maxRatio
		o.Limits.MaxFiles = *l.maxFiles
		if *l.depth < 1 {
			return o, usagef("--depth must be at least 1")
		}
		o.Limits.MaxDepth = *l.depth
	}
	if *l.timeout <= 0 {
		return o, usagef("--timeout must be positive")
	}
	o.Limits.Timeout = *l.timeout
	return o, nil
}

// progressLine prints a progress line on stderr when it is a terminal.
func progressLine(e *env, verb string) (func(done, total int64), func()) {
	f, ok := e.Stderr.(*os.File)
	if !ok {
		return nil, func() {}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil, func() {}
	}
	var mu sync.Mutex
	var last time.Time
	shown := false
	return func(done, total int64) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(last) < 200*time.Millisecond || total <= 0 {
				return
			}
			last = time.Now()
			shown = true
			fmt.Fprintf(f, "\r%s %3d%% (%s of %s)  ", verb, done*100/total, humanize.Bytes(done), humanize.Bytes(total))
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			if shown {
				fmt.Fprint(f, "\r\033[K")
			}
		}
}

// parseImageArgs parses the flags of firmware sub and returns its one
// positional argument, IMAGE, a regular file.
func parseImageArgs(e *env, fs *flag.FlagSet, args []string, sub string) (string, error) {
	pos, err := parseInterleaved(e, fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("firmware %s takes one IMAGE argument, got %d", sub, len(pos))
	}
	st, err := os.Stat(pos[0])
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", pos[0])
	}
	return pos[0], nil
}

func runFirmwareScan(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "firmware scan", `usage: cordon firmware scan IMAGE [--json]

Prints the chunk map of IMAGE: every format found, where it starts and ends,
how sure the identification is and the entropy of its bytes. Stretches no
format claims are shown as unknown (high entropy suggests encrypted or
compressed data) or as 0x00/0xff padding. Chunks found inside a carved
chunk (a gzip inside an ELF) are listed indented below it. Every chunk
unpack would not open (no extractor, encrypted) and every stream whose
header was found but whose data does not decode is a "warning:" line with
its offset, format and reason. Nothing is written.

Examples:
  cordon firmware scan flash.bin
  cordon firmware scan digicap.dav --json | jq '.chunks[] | {offset, format}'`)
	asJSON := fs.Bool("json", false, "print the scan report as JSON")
	lf := addLimitFlags(fs, false)
	image, err := parseImageArgs(e, fs, args, "scan")
	if err != nil {
		return err
	}
	o, err := lf.options(e)
	if err != nil {
		return err
	}
	prog, clear := progressLine(e, "scanning")
	o.Progress = prog
	rep, err := firmware.Scan(ctx, image, o)
	clear()
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.Stdout, rep)
	}
	fmt.Fprintf(e.Stdout, "%s: %s, sha256 %s\n\n", rep.Image.Path, humanize.Bytes(rep.Image.Size), rep.Image.SHA256)
	printMap(e.Stdout, rep.Chunks, rep.Unknown)
	for _, w := range rep.Warnings {
		fmt.Fprintf(e.Stdout, "warning: %s\n", w)
	}
	return nil
}

// printJSON writes v to w as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printMap prints chunks and unknown regions in offset order.
func printMap(w io.Writer, chunks []*firmware.ChunkReport, unknown []firmware.Region) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "OFFSET\tEND\tSIZE\tFORMAT\tCONFIDENCE\tENTROPY\tDESCRIPTION")
	i, j := 0, 0
	for i < len(chunks) || j < len(unknown) {
		if j >= len(unknown) || (i < len(chunks) && chunks[i].Offset < unknown[j].Offset) {
			printChunkRow(tw, chunks[i], "")
			i++
			continue
		}
		u := unknown[j]
		kind, desc := "unknown", "no format matched"
		if u.Padding != "" {
			kind, desc = "padding", "filled with "+u.Padding
		} else if u.Entropy > 7.9 {
			desc = "no format matched; high entropy: compressed or encrypted"
		}
		fmt.Fprintf(tw, "0x%08x\t0x%08x\t%s\t%s\t\t%.3f\t%s\n", u.Offset, u.Offset+u.Size, humanize.Bytes(u.Size), kind, u.Entropy, desc)
		j++
	}
	tw.Flush()
}

// printChunkRow prints one chunk of the map, then the chunks embedded in it
// (same file, indented).
func printChunkRow(tw io.Writer, c *firmware.ChunkReport, indent string) {
	desc := c.Desc
	if c.Encrypted {
		desc += " [encrypted]"
	}
	for _, w := range c.Warnings {
		desc += " [" + w + "]"
	}
	fmt.Fprintf(tw, "0x%08x\t0x%08x\t%s\t%s%s\t%s\t%.3f\t%s\n", c.Offset, c.End(), humanize.Bytes(c.Size), indent, c.Format, c.Confidence, c.Entropy, desc)
	for _, k := range c.Children {
		if k.File == c.File {
			printChunkRow(tw, k, indent+"  ")
		}
	}
}

// printCoverage prints where the image's bytes went (Report.Coverage).
func printCoverage(w io.Writer, cv firmware.Coverage, unknown []firmware.Region) {
	pct := func(n int64) string {
		p := 0.0
		if cv.Size > 0 {
			p = float64(n) * 100 / float64(cv.Size)
		}
		if n > 0 && p < 0.05 {
			return "<0.1%" // a few bytes not opened must not read as none
		}
		return fmt.Sprintf("%.1f%%", p)
	}
	fmt.Fprintf(w, "coverage: %s extracted, %s carved, %s identified only (not opened), %s padding, %s unknown",
		pct(cv.Extracted), pct(cv.Carved), pct(cv.Identified), pct(cv.Padding), pct(cv.Unknown))
	n, hi := 0, 0.0
	for _, u := range unknown {
		if u.Padding == "" {
			n++
			hi = max(hi, u.Entropy)
		}
	}
	if n > 0 {
		fmt.Fprintf(w, " (%d region(s), %s, highest entropy %.3f)", n, humanize.Bytes(cv.Unknown), hi)
	}
	fmt.Fprintln(w)
}

func runFirmwareUnpack(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "firmware unpack", `usage: cordon firmware unpack IMAGE -o DIR [--depth N] [--json] [limits]

Extracts every chunk of IMAGE below DIR, then scans what it extracted and
extracts again, down to --depth levels. Chunk N at offset 0x40 in format
uimage lands in DIR/0x40-uimage.extract/; the files found inside get their own
<offset>-<format>.extract folders. DIR/report.json holds the chunk tree
(offsets, sizes, sha256, warnings) and a manifest of every entry with the
metadata that is not restored on disk: original modes with setuid bits,
owners, device numbers, symlink targets, and what was changed for safety.

Nothing is written outside DIR: names with .. or / are neutralised, symlinks
that would escape become placeholder files, no device nodes, fifos or
setuid bits are created. Limits stop decompression bombs, deep nesting and
slow images; hitting one is a warning in the report, not a failure. The exit
status is 0 whenever the image could be processed, even partly.

Nothing is silent: the "coverage:" line says which share of the image was
extracted, carved, identified only (not opened), padding or unknown, and
every chunk not opened or not decoded is a "warning:" line (report.json:
"coverage" and "gaps"). cordon inspect turns those gaps into findings.

DIR must not exist or be empty; --force clears a DIR that holds an earlier
report.json.

Examples:
  cordon firmware unpack digicap.dav -o out
  cordon firmware unpack flash.bin -o out --depth 3 --max-bytes 2GiB --timeout 5m
  cordon firmware unpack fw.bin -o out --json | jq '.manifest[] | select(.mode | startswith("4"))'`)
	out := fs.String("o", "", "output folder (required)")
	asJSON := fs.Bool("json", false, "print report.json to stdout instead of a summary")
	force := fs.Bool("force", false, "clear DIR first if it holds an earlier unpack (report.json)")
	lf := addLimitFlags(fs, true)
	image, err := parseImageArgs(e, fs, args, "unpack")
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("firmware unpack needs -o DIR")
	}
	o, err := lf.options(e)
	if err != nil {
		return err
	}
	if err := prepareOut(*out, *force); err != nil {
		return err
	}
	prog, clear := progressLine(e, "unpacking")
	o.Progress = prog
	rep, err := firmware.Unpack(ctx, image, *out, o)
	clear()
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.Stdout, rep)
	}
	fmt.Fprintf(e.Stdout, "%s -> %s: %d chunks, %d entries, %s written in %.1fs (depth %d)\n",
		image, *out, rep.Stats.Chunks, rep.Stats.Files, humanize.Bytes(rep.Stats.BytesWritten), rep.Stats.Seconds, rep.Stats.MaxDepth)
	printTree(e.Stdout, rep.Chunks, "")
	printCoverage(e.Stdout, rep.Coverage, rep.Unknown)
	for _, w := range rep.Warnings {
		fmt.Fprintf(e.Stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(e.Stdout, "report: %s\n", filepath.Join(*out, unpackreport.FileName))
	return nil
}

func printTree(w io.Writer, chunks []*firmware.ChunkReport, indent string) {
	for _, c := range chunks {
		where := ""
		if c.File != "" && indent != "" {
			where = c.File + " "
		}
		line := fmt.Sprintf("%s%s@%#x %s (%s)", indent, where, c.Offset, c.Format, humanize.Bytes(c.Size))
		if c.ExtractDir != "" {
			line += " -> " + c.ExtractDir
		}
		if c.Encrypted {
			line += " [encrypted]"
		}
		if c.Outcome == firmware.OutcomeIdentified {
			line += " [not extracted]"
		}
		switch n := len(c.Warnings); {
		case n == 1:
			line += " [warning: " + c.Warnings[0] + "]"
		case n > 1:
			line += fmt.Sprintf(" [%d warnings in report.json, first: %s]", n, c.Warnings[0])
		}
		for _, er := range c.Errors {
			line += " [error: " + strings.ReplaceAll(er, "\n", "; ") + "]"
		}
		fmt.Fprintln(w, line)
		printTree(w, c.Children, indent+"  ")
	}
}

// prepareOut refuses a non-empty DIR unless --force and DIR holds an earlier
// report (so a typo cannot wipe an unrelated folder).
func prepareOut(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	if !force {
		return usagef("output folder %s is not empty; choose another -o DIR, or pass --force to clear an earlier unpack", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, unpackreport.FileName)); err != nil {
		return usagef("output folder %s is not empty and holds no report.json: --force only clears an earlier unpack; remove it yourself", dir)
	}
	for _, en := range ents {
		if err := os.RemoveAll(filepath.Join(dir, en.Name())); err != nil {
			return err
		}
	}
	return nil
}

func runFirmwareFormats(e *env, args []string) error {
	fs := newFlagSet(e, "firmware formats", `usage: cordon firmware formats [--json]

Lists the formats cordon identifies, in the order they are tried, with their
kind, what unpack does with their chunks and their magic bytes:

  extracts     the content is unpacked (files, a decompressed stream)
  carves       the bytes are cut out to their own file (ELF, keys,
               certificates); chunks embedded in them (not in keys and
               certificates) are looked for
  identifies   the chunk is mapped but its content is not opened: unpack
               reports it as a gap and inspect as coverage.unexamined

docs/formats.md has the full descriptions.`)
	asJSON := fs.Bool("json", false, "print the list as JSON")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("firmware formats takes no arguments")
	}
	type row struct {
		Name   string          `json:"name"`
		Kind   string          `json:"kind"`
		Action firmware.Action `json:"action"` // extracts, carves or identifies
		Magics []string        `json:"magics"`
		Doc    string          `json:"doc"`
	}
	var rows []row
	for _, f := range formats.All {
		r := row{Name: f.Name, Kind: string(f.Kind), Action: f.Action(), Doc: f.Doc, Magics: []string{}}
		for _, m := range f.Magics {
			s := fmt.Sprintf("% x", m.Bytes)
			if m.Offset != 0 {
				s = fmt.Sprintf("%s @%#x", s, m.Offset)
			}
			r.Magics = append(r.Magics, s)
		}
		rows = append(rows, r)
	}
	if *asJSON {
		return printJSON(e.Stdout, rows)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tACTION\tMAGIC")
	for _, r := range rows {
		m := "(whole file)"
		if len(r.Magics) > 0 {
			m = r.Magics[0]
			if len(r.Magics) > 1 {
				m += fmt.Sprintf(" (+%d more)", len(r.Magics)-1)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.Action, m)
	}
	return tw.Flush()
}

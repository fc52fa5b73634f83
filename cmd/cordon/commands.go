package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
)

// env is what a subcommand gets from the process: its standard streams.
// Subcommands never touch os.Stdout or os.Stderr directly, so tests can run them in-process.
type env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// command is one subcommand of cordon.
type command struct {
	name  string
	short string // one line for the command list
	run   func(ctx context.Context, e *env, args []string) error
	subs  []string // subcommands, each with its own --help (for completion and man pages)
}

// commands is the ordered list shown by "cordon help". Each entry's run function lives
// in cmd_<name>.go.
var commands = []command{
	{"proxy", "pull camera RTSP streams on the camera network and re-serve them to recorders", runProxy, nil},
	{"trunk", "link an edge proxy to a core proxy over QUIC: key pairs for the two ends", runTrunk, []string{"keygen"}},
	{"camsim", "serve simulated RTSP cameras (H.264/H.265) on loopback for demos and tests", runCamsim, nil},
	{"firmware", "scan and unpack firmware images (vendor packages, flash dumps, filesystems)", runFirmware, []string{"scan", "unpack", "formats"}},
	{"inspect", "report what a firmware contains (endpoints, credentials, services, components, hardening)", runInspect, []string{"diff"}},
	{"egress", "watch what cameras send (pcap, live capture, NetFlow/IPFIX) and alert on unexpected transfer", runEgress, nil},
	{"bench", "run the built-in benchmarks (proxy, trunk) and print ratios against a baseline", runBench, []string{"proxy", "trunk"}},
	{"completion", "print a shell completion script (bash, zsh or fish)", runCompletion, []string{"bash", "zsh", "fish"}},
	{"man", "write the man pages, one per command, generated from the commands' help", runMan, nil},
	{"version", "print the version", runVersion, nil},
}

// Exit codes, mapped from errors in one place (exitCode).
const (
	exitOK       = 0
	exitFailure  = 1 // the command ran and failed (I/O, network, bad input it could not process)
	exitUsage    = 2 // wrong flags, arguments or configuration
	exitFindings = 3 // the command succeeded but found what --fail-on asked to fail on
)

// usageError reports a mistake in how the command was called; it maps to exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries an explicit exit code, for example exitFindings.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode maps a subcommand's error to the process exit code.
func exitCode(err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return exitUsage
	default:
		return exitFailure
	}
}

// Main runs cordon with the given arguments and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if len(args) == 0 {
		printCommands(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		return help(args[1:], stdin, stdout, stderr)
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, e, args[1:])
		code := exitCode(err)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "cordon %s: %v\n", c.name, err)
			var ue *usageError
			if errors.As(err, &ue) {
				fmt.Fprintf(stderr, "Run 'cordon %s --help' for usage.\n", c.name)
			}
		}
		return code
	}
	fmt.Fprintf(stderr, "cordon: unknown command %q\n\n", name)
	printCommands(stderr)
	return exitUsage
}

// help is "cordon help [COMMAND [SUBCOMMAND...]]": the command list, or
// that command's --help ("cordon help firmware scan" is "cordon firmware
// scan --help"). Only names of commands are passed on, so help never calls
// itself.
func help(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printCommands(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return Main(append(append([]string{}, args...), "--help"), stdin, stdout, stderr)
		}
	}
	if args[0] == "help" {
		fmt.Fprint(stdout, "usage: cordon help [COMMAND [SUBCOMMAND]]\n\nShows the list of commands, or the help of one command or subcommand.\n")
		return exitOK
	}
	fmt.Fprintf(stderr, "cordon help: unknown command %q\n\n", args[0])
	printCommands(stderr)
	return exitUsage
}

func printCommands(w io.Writer) {
	fmt.Fprint(w, "Cordon keeps untrusted IP cameras off the core network and shows what their\nfirmware and traffic really do.\n\nUsage:\n\n\tcordon <command> [arguments]\n\nCommands:\n\n")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "\t%s\t%s\n", c.name, c.short)
	}
	tw.Flush()
	fmt.Fprint(w, "\nRun 'cordon <command> --help' for the flags of one command.\nRun 'cordon proxy' with no arguments for a demo: a simulated camera served at rtsp://127.0.0.1:8554/demo.\n")
}

// usageTexts maps each flag set made by newFlagSet to its usage text.
var usageTexts sync.Map // *flag.FlagSet -> string

// newFlagSet returns a flag set that reports errors instead of exiting.
// usage is the text shown above the flag list by --help: the synopsis, a short
// explanation and examples. parseFlags prints it; a parse error prints only
// the error and a hint.
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("cordon "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // the flag package calls it on every error; parseFlags decides what to print
	usageTexts.Store(fs, usage)
	return fs
}

// printUsage writes fs's usage text and its flags to w.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	usage, _ := usageTexts.Load(fs)
	text, _ := usage.(string)
	fmt.Fprintf(w, "%s\n", strings.TrimSpace(text))
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// parseFlags parses args with fs. It prints help to stdout for -h/--help (and returns
// flag.ErrHelp, which maps to exit 0) and turns parse errors into usage errors.
func parseFlags(e *env, fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(e.Stdout, fs)
		return flag.ErrHelp
	}
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	return nil
}

// parseInterleaved parses flags that may come before or after the positional
// arguments ("firmware unpack IMAGE -o DIR",
// "inspect diff OLD NEW --format json") and returns the positional ones.
func parseInterleaved(e *env, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(e, fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		rest := fs.Args()
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable string flag (--watchlist A --watchlist B).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

var _ flag.Value = (*stringList)(nil)

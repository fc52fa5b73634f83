package main

import (
	"bytes"
	"io"
	"strings"
)

// helpDoc is one command's --help, split into the parts that completion
// scripts and man pages are generated from. Reading the help itself keeps
// them from drifting: a flag added to a command is in both at once.
type helpDoc struct {
	path  []string // "firmware", "scan"
	short string   // the command table's one line (for subcommands: the parent's)
	text  string   // the usage text above "Flags:"
	flags []flagDoc
}

// flagDoc is one flag as flag.PrintDefaults shows it.
type flagDoc struct {
	name  string // without the dash
	arg   string // the value's name ("FILE", "duration"), empty for a boolean
	usage string
}

// commandHelp runs "cordon PATH... --help" in-process (parseFlags returns
// before a command does anything) and parses what it prints.
func commandHelp(c command, sub string) helpDoc {
	args := []string{c.name}
	if sub != "" {
		args = append(args, sub)
	}
	var out bytes.Buffer
	mainFn(append(args, "--help"), strings.NewReader(""), &out, &bytes.Buffer{})
	d := helpDoc{path: args, short: c.short}
	text, flags, _ := strings.Cut(out.String(), "\nFlags:\n")
	d.text = strings.TrimSpace(text)
	if sub != "" {
		if s := firstSentence(d.text); s != "" {
			d.short = s
		}
	}
	for _, line := range strings.Split(flags, "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			name, arg, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			d.flags = append(d.flags, flagDoc{name: name, arg: strings.TrimSpace(arg)})
		case strings.HasPrefix(line, "    \t") && len(d.flags) > 0:
			f := &d.flags[len(d.flags)-1]
			f.usage = strings.TrimSpace(f.usage + " " + strings.TrimSpace(line))
		}
	}
	return d
}

// allHelp is every command's help, then its subcommands', in the order of
// the command table.
func allHelp() []helpDoc {
	var out []helpDoc
	for _, c := range table {
		out = append(out, commandHelp(c, ""))
		if c.name == "completion" {
			continue // its "subcommands" are arguments, with no help of their own
		}
		for _, s := range c.subs {
			out = append(out, commandHelp(c, s))
		}
	}
	return out
}

// table and mainFn are commands and Main for the commands that describe the
// others (completion, man): commands refers to those, so they cannot refer
// back to it in their initialization; init closes the loop.
var (
	table  []command
	mainFn func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
)

func init() {
	table, mainFn = commands, Main
}

// firstSentence is the first sentence of the paragraph after the usage
// lines, as a subcommand's one-line summary ("prints the chunk map of
// IMAGE"); the parent's summary when there is none.
func firstSentence(text string) string {
	_, rest, ok := strings.Cut(text, "\n\n")
	if !ok {
		return ""
	}
	para, _, _ := strings.Cut(strings.TrimSpace(rest), "\n\n")
	para = strings.Join(strings.Fields(para), " ")
	if i := strings.Index(para, ". "); i > 0 {
		para = para[:i]
	}
	para = strings.TrimSuffix(para, ".")
	if para != "" {
		para = strings.ToLower(para[:1]) + para[1:]
	}
	return para
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestManPages writes the pages with "cordon man" and renders each with
// man -l (or groff when man-db is missing): no warnings, and the flags of
// the command are in its page.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := Main([]string{"man", "-o", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("man: exit %d: %s", code, errb.String())
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	if want := len(allHelp()) + 1; len(pages) != want {
		t.Fatalf("%d pages, want %d (cordon.1 and one per command and subcommand)", len(pages), want)
	}
	for _, c := range commands {
		if _, err := os.Stat(filepath.Join(dir, "cordon-"+c.name+".1")); err != nil {
			t.Errorf("no page for %s: %v", c.name, err)
		}
	}
	render := func(page string) (string, string) {
		var cmd *exec.Cmd
		if lookPath("groff") && !lookPath("man") && !testutil.InCI() {
			cmd = exec.Command("groff", "-man", "-Tutf8", "-ww", page)
		} else {
			testutil.NeedTool(t, "man") // man-db, from scripts/deps
			cmd = exec.Command("man", "--warnings", "-l", page)
		}
		cmd.Env = append(os.Environ(), "MANWIDTH=100", "MANPAGER=cat", "PAGER=cat")
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, se.String())
		}
		return overstrike.ReplaceAllString(so.String(), ""), se.String()
	}
	for _, p := range pages {
		text, warnings := render(p)
		if warnings != "" {
			t.Errorf("%s: warnings:\n%s", filepath.Base(p), warnings)
		}
		for _, sec := range []string{"NAME", "SEE ALSO"} {
			if !strings.Contains(text, sec) {
				t.Errorf("%s: no %s section", filepath.Base(p), sec)
			}
		}
	}
	text, _ := render(filepath.Join(dir, "cordon-egress.1"))
	text = strings.ReplaceAll(text, "\u2010", "-") // groff may hyphenate with U+2010
	text = strings.Join(strings.Fields(text), " ") // and justifies lines with spaces
	for _, want := range []string{"cordon-egress - watch what cameras send", "--policy FILE", "--pcap FILE", "unexpected-destination"} {
		if !strings.Contains(text, want) {
			t.Errorf("cordon-egress(1) lacks %q:\n%s", want, text)
		}
	}
}

// overstrike matches the backspace sequences of bold and underlined text.
var overstrike = regexp.MustCompile(".\x08")

func lookPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

func TestRoffEscape(t *testing.T) {
	for in, want := range map[string]string{
		`--json`:        `\-\-json`,
		`.hidden`:       `\&.hidden`,
		`'quoted'`:      `\&'quoted'`,
		`C:\path`:       `C:\epath`,
		`plain text ok`: `plain text ok`,
	} {
		if got := roffEscape(in); got != want {
			t.Errorf("roffEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/internal/testutil"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main([]string{"completion", shell}, nil, &out, &errb); code != 0 {
		t.Fatalf("completion %s: exit %d: %s", shell, code, errb.String())
	}
	return out.String()
}

// TestHelpDocs: every command and subcommand's help parses into a synopsis
// and its flags (what completion and man pages are made of).
func TestHelpDocs(t *testing.T) {
	docs := allHelp()
	byKey := map[string]helpDoc{}
	for _, d := range docs {
		byKey[docKey(d)] = d
		if !strings.HasPrefix(d.text, "usage: cordon "+strings.Join(d.path, " ")) {
			t.Errorf("%v: help does not start with its usage line: %.60q", d.path, d.text)
		}
	}
	if len(docs) != len(commands)+7 { // and firmware scan/unpack/formats, inspect diff, bench proxy, bench trunk, trunk keygen
		t.Errorf("%d help docs for %d commands", len(docs), len(commands))
	}
	var names []string
	for _, f := range byKey["egress "].flags {
		names = append(names, f.name)
		if f.name == "policy" && (f.arg != "FILE" || !strings.HasPrefix(f.usage, "policy YAML FILE")) {
			t.Errorf("egress --policy parsed as %+v", f)
		}
		if f.name == "stats" && f.arg != "" {
			t.Errorf("egress --stats (a boolean) has an argument: %+v", f)
		}
	}
	for _, want := range []string{"policy", "pcap", "iface", "netflow", "metrics", "stats"} {
		if !slices.Contains(names, want) {
			t.Errorf("egress flags %v lack %s", names, want)
		}
	}
	if d := byKey["firmware scan"]; !strings.HasPrefix(d.short, "prints the chunk map") {
		t.Errorf("firmware scan's summary is %q", d.short)
	}
}

// TestCompletionBash sources the script in bash, as the README says, and
// asks it for completions.
func TestCompletionBash(t *testing.T) {
	testutil.NeedTool(t, "bash")
	script := filepath.Join(t.TempDir(), "cordon.bash")
	if err := os.WriteFile(script, []byte(completionScript(t, "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		q := make([]string, len(words))
		for i, w := range words {
			q[i] = "'" + w + "'"
		}
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c",
			`source "$1"; complete -p cordon; COMP_WORDS=(`+strings.Join(q, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _cordon; echo "${COMPREPLY[*]}"`, "bash", script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if lines[0] != "complete -o default -o filenames -F _cordon cordon" {
			t.Fatalf("complete -p cordon: %q", lines[0])
		}
		return lines[len(lines)-1]
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"cordon", "fi"}, "firmware"},
		{[]string{"cordon", "firmware", ""}, "scan unpack formats"},
		{[]string{"cordon", "firmware", "scan", "--j"}, "--json"},
		{[]string{"cordon", "egress", "--pol"}, "--policy"},
		{[]string{"cordon", "proxy", "--check", "--pro"}, "--probe --probe-timeout"},
		{[]string{"cordon", "completion", ""}, "bash zsh fish"},
		{[]string{"cordon", "inspect", "diff", "--fail"}, "--fail-on-regression"},
	} {
		if got := complete(tc.words...); got != tc.want {
			t.Errorf("%q: completed %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestCompletionOtherShells checks the zsh and fish scripts' syntax with
// the shells themselves.
func TestCompletionOtherShells(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"zsh", "'*--policy[policy YAML FILE (required; see docs/egress.md)]:FILE:_files'"},
		{"fish", "complete -c cordon -n '__fish_seen_subcommand_from egress' -l policy -r -F"},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			s := completionScript(t, tc.shell)
			if !strings.Contains(s, tc.want) {
				t.Errorf("%s script lacks %q", tc.shell, tc.want)
			}
			testutil.NeedTool(t, tc.shell)
			f := filepath.Join(t.TempDir(), "cordon."+tc.shell)
			os.WriteFile(f, []byte(s), 0o644)
			if out, err := exec.Command(tc.shell, "-n", f).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", tc.shell, err, out)
			}
			// Loaded, the script registers (zsh) or answers (fish).
			var check, want string
			switch tc.shell {
			case "zsh":
				check, want = `autoload -Uz compinit; compinit -u -d "$2"; source "$1"; print -r -- ${_comps[cordon]}`, "_cordon"
			case "fish":
				check, want = `source $argv[1]; complete -C "cordon firmware scan --j"; complete -C "cordon firmware "`, "--json\tprint the scan report as JSON\nformats\nscan\nunpack"
			}
			args := []string{"-c", check, f, f, filepath.Join(t.TempDir(), "zcompdump")}
			if tc.shell == "zsh" {
				args = []string{"-f", "-c", check, "zsh", f, filepath.Join(t.TempDir(), "zcompdump")}
			}
			out, err := exec.Command(tc.shell, args...).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != want {
				t.Errorf("%s: %v: got %q, want %q", tc.shell, err, out, want)
			}
		})
	}
}

func TestCompletionUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"completion", "tcsh"}, nil, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d, %q", code, errb.String())
	}
}

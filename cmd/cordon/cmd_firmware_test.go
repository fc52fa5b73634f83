package main

import (
	"bytes"
	"flag"
	"slices"
	"testing"

	"github.com/cordon-vms/cordon/internal/humanize"
)

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true},
		{"512MiB", 512 << 20, true},
		{"8GiB", 8 << 30, true},
		{"1.5g", 3 << 29, true},
		{"100M", 100 << 20, true},
		{"10kb", 10000, true},
		{"2 GiB", 2 << 30, true},
		{"lots", 0, false},
		{"-1", 0, false},
		{"", 0, false},
	} {
		got, err := humanize.ParseBytes(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	var out bytes.Buffer
	e := &env{Stdout: &out, Stderr: &out}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o := fs.String("o", "", "")
	j := fs.Bool("json", false, "")
	pos, err := parseInterleaved(e, fs, []string{"image.bin", "-o", "out", "--json", "--", "-weird"})
	if err != nil || *o != "out" || !*j || !slices.Equal(pos, []string{"image.bin", "-weird"}) {
		t.Errorf("got %q %q %v %v", pos, *o, *j, err)
	}
}

package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type sub struct {
	Name string `yaml:"name"`
	Port int    `yaml:"port"`
}

type top struct {
	Listen string `yaml:"listen"`
	Items  []sub  `yaml:"items"`
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"unknown key", "listen: x\nlistn: y\n", `c.yml:2: unknown key "listn" (check its spelling and indentation)`},
		{"nested unknown", "items:\n  - name: a\n    prot: 1\n", `c.yml:3: unknown key "prot" (check its spelling and indentation)`},
		{"wrong type", "items:\n  - port: abc\n", `c.yml:2: value "abc" is not a valid whole number (it reads as a string)`},
		{"duplicate", "listen: a\nlisten: b\n", `c.yml:2: key "listen" appears twice (first at line 1)`},
		{"two docs", "listen: a\n---\nlisten: b\n", `c.yml:2: a second YAML document (---) is not allowed; put everything in one document`},
		{"syntax", "listen: [a\n", `c.yml:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v top
			err := Decode("c.yml", []byte(tc.in), &v)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got  %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestDecodeOK(t *testing.T) {
	var v top
	if err := Decode("c.yml", []byte("listen: ':1'\nitems:\n  - {name: a, port: 2}\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.Listen != ":1" || len(v.Items) != 1 || v.Items[0].Port != 2 {
		t.Fatalf("got %+v", v)
	}
	if err := Decode("c.yml", nil, &v); err != nil {
		t.Fatalf("empty: %v", err)
	}
}

func TestOneOf(t *testing.T) {
	type color string
	var c color
	node := &yaml.Node{Kind: yaml.ScalarNode, Value: "green", Line: 7}
	if err := OneOf(node, "color", &c, "red", "green"); err != nil || c != "green" {
		t.Fatalf("OneOf(green) = %v, %q", err, c)
	}
	node.Value = "blue"
	err := OneOf(node, "color", &c, "red", "green")
	te, ok := err.(*yaml.TypeError)
	if !ok || len(te.Errors) != 1 || te.Errors[0] != `line 7: color "blue" is not one of red, green` || c != "green" {
		t.Fatalf("OneOf(blue) = %v, left %q", err, c)
	}
}

type colored struct {
	A color2 `yaml:"a"`
	B color2 `yaml:"b"`
	N int    `yaml:"n"`
}

type color2 string

func (c *color2) UnmarshalYAML(n *yaml.Node) error { return OneOf(n, "color", c, "red", "green") }

// TestDecodeReportsEveryBadValue: a value rejected by an UnmarshalYAML does
// not stop decoding; every bad value is reported, with its line, and the
// good ones are decoded.
func TestDecodeReportsEveryBadValue(t *testing.T) {
	var v colored
	err := Decode("c.yml", []byte("a: blue\nb: pink\nn: 3\n"), &v)
	want := "c.yml:1: color \"blue\" is not one of red, green\nc.yml:2: color \"pink\" is not one of red, green"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if v.N != 3 {
		t.Errorf("n = %d, want 3 (decoding went on)", v.N)
	}
}

func TestKeyLines(t *testing.T) {
	var doc yaml.Node
	if err := Decode("c.yml", []byte("listen: ':1'\nitems:\n  - name: a\n    port: 2\n  - {name: b}\n"), &doc); err != nil {
		t.Fatal(err)
	}
	got := KeyLines(&doc)
	want := map[string]int{"listen": 1, "items": 2, "items[0]": 3, "items[0].name": 3, "items[0].port": 4, "items[1]": 5, "items[1].name": 5}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for k, l := range want {
		if got[k] != l {
			t.Errorf("%s: line %d, want %d", k, got[k], l)
		}
	}
}

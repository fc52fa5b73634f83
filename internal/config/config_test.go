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
	if err == nil || err.Error() != `line 7: color "blue" is not one of red, green` || c != "green" {
		t.Fatalf("OneOf(blue) = %v, left %q", err, c)
	}
}

// Package config decodes cordon's YAML files strictly: unknown keys, duplicate
// keys and values of the wrong type are errors that name the file and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the size of a configuration file (they are small; a larger
// file is a mistake such as pointing at a video file).
const MaxFileSize = 16 << 20

// Error is a configuration error at a position in a file.
type Error struct {
	File string // file name as given, or "" for in-memory data
	Line int    // 1-based line, or 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is a list of configuration errors, reported together so an administrator
// can fix them all in one pass.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// ReadFile reads a configuration file of at most MaxFileSize bytes.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d MiB; is this the right file?", MaxFileSize>>20)}
	}
	return data, nil
}

// KeyLines maps the key paths of a decoded YAML document to their 1-based
// lines: "listen.rtsp" for a key in a mapping, "cameras[2]" for an item of
// a list, "cameras[2].url" below it. It lets whole-file validation, which
// works on the decoded values, point at the line of the value it rejects.
func KeyLines(doc *yaml.Node) map[string]int {
	lines := map[string]int{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if path != "" {
					k = path + "." + k
				}
				lines[k] = n.Content[i].Line
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				k := fmt.Sprintf("%s[%d]", path, i)
				lines[k] = c.Line
				walk(c, k)
			}
		}
	}
	walk(doc, "")
	return lines
}

var (
	reLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
	reNotFound = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	reAlready  = regexp.MustCompile(`^mapping key "([^"]*)" already defined at line (\d+)$`)
	reCannot   = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// Decode strictly decodes YAML data into v. name is used in error messages.
// An empty document leaves v unchanged. Types in v may implement
// yaml.Unmarshaler to validate enum values; an error they return that starts
// with "line N: " is reported at that line.
func Decode(name string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return translate(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return &Error{File: name, Line: extra.Line, Msg: "a second YAML document (---) is not allowed; put everything in one document"}
	}
	return nil
}

func translate(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var es Errors
		for _, m := range te.Errors {
			es = append(es, lineError(name, m))
		}
		if len(es) == 1 {
			return es[0]
		}
		return es
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return lineError(name, msg)
}

func lineError(name, msg string) *Error {
	e := &Error{File: name, Msg: msg}
	if m := reLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	if m := reNotFound.FindStringSubmatch(e.Msg); m != nil {
		e.Msg = fmt.Sprintf("unknown key %q (check its spelling and indentation)", m[1])
	} else if m := reAlready.FindStringSubmatch(e.Msg); m != nil {
		e.Msg = fmt.Sprintf("key %q appears twice (first at line %s)", m[1], m[2])
	} else if m := reCannot.FindStringSubmatch(e.Msg); m != nil {
		e.Msg = fmt.Sprintf("value %q is not a valid %s (it reads as a %s)", m[2], friendlyType(m[3]), friendlyYAMLType(m[1]))
	}
	return e
}

func friendlyType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "list"
	case goType == "time.Duration":
		return "duration (like 10s or 1m30s)"
	case strings.HasPrefix(goType, "map["), strings.Contains(goType, "."):
		return "section"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "whole number"
	case strings.HasPrefix(goType, "float"):
		return "number"
	case goType == "bool":
		return "true/false value"
	case goType == "string":
		return "string"
	}
	return goType
}

func friendlyYAMLType(t string) string {
	switch t {
	case "seq":
		return "list"
	case "map":
		return "section"
	case "str":
		return "string"
	case "int":
		return "whole number"
	case "float":
		return "number"
	case "bool":
		return "true/false value"
	}
	return t
}

// At returns an error positioned at node's line, for validation in
// UnmarshalYAML. It is a *yaml.TypeError, so decoding goes on and every
// bad value of a file is reported in one pass (as Errors).
func At(node *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", node.Line, fmt.Sprintf(format, args...))}}
}

// OneOf decodes a scalar that must be one of values into dst. Otherwise it
// returns, at node's line, `<what> "<value>" is not one of <values>`.
func OneOf[T ~string](node *yaml.Node, what string, dst *T, values ...T) error {
	names := make([]string, len(values))
	for i, v := range values {
		if string(v) == node.Value {
			*dst = v
			return nil
		}
		names[i] = string(v)
	}
	return At(node, "%s %q is not one of %s", what, node.Value, strings.Join(names, ", "))
}

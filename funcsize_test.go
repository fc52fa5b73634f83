package cordon_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Limits on one function (issue 12: a newcomer can read any function in one
// screen and follow its branches). The line limit holds for tests too; the
// complexity limit only outside tests, where each check is an if and the
// count measures assertions, not paths. The cyclomatic complexity is
// gocyclo's: 1, plus one per if, for, range, non-default case or select
// case, && and ||, function literals counted in the function that holds them.
const (
	maxFuncLines = 80
	maxFuncCyclo = 25
)

// largeFuncs lists the functions allowed over a limit, by package folder and
// name, each with the reason it stays whole (docs/architecture.md, "Long
// functions", says the same). A new entry needs a reason that holds up in
// review: a protocol field switch, or a hot decode loop whose state lives in
// locals; anything else is split.
var largeFuncs = map[string]string{
	"egress/netflow.(*Decoder).record": "protocol field switch: one case per NetFlow v9/IPFIX information element " +
		"the collector reads into the flow record; it runs for every record, with the fields in locals",
	"firmware/formats/squashfs.(*lzState).decodeChunk": "hot decode loop: the LZMA literal/match state machine " +
		"keeps the range decoder and its state in locals; split, each call would reload them (BenchmarkXzBlockDecode)",
}

type funcSize struct {
	key, pos     string
	lines, cyclo int
	test         bool // declared in a _test.go file
}

// TestFunctionSize fails when a function is longer than maxFuncLines lines or
// more complex than maxFuncCyclo outside largeFuncs, and when an entry of
// largeFuncs no longer needs to be there.
func TestFunctionSize(t *testing.T) {
	sizes, err := measureFuncs(".")
	if err != nil {
		t.Fatal(err)
	}
	over := map[string]bool{}
	for _, s := range sizes {
		if s.lines <= maxFuncLines && (s.test || s.cyclo <= maxFuncCyclo) {
			continue
		}
		over[s.key] = true
		if _, ok := largeFuncs[s.key]; !ok {
			t.Errorf("%s: %s has %d lines and cyclomatic complexity %d (limits %d and %d): split it, or add it to "+
				"largeFuncs with the reason it stays whole", s.pos, s.key, s.lines, s.cyclo, maxFuncLines, maxFuncCyclo)
		}
	}
	for key := range largeFuncs {
		if !over[key] {
			t.Errorf("largeFuncs lists %s, which is within the limits now (or gone): remove the entry", key)
		}
	}
}

// measureFuncs measures every function declared in the Go files under root
// (testdata, vendor and hidden folders and generated files left out).
func measureFuncs(root string) ([]funcSize, error) {
	var sizes []funcSize
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if ast.IsGenerated(f) {
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start := fset.Position(fn.Pos())
			sizes = append(sizes, funcSize{
				key:   dir + "." + funcName(fn),
				pos:   fmt.Sprintf("%s:%d", filepath.ToSlash(path), start.Line),
				lines: fset.Position(fn.End()).Line - start.Line + 1,
				cyclo: cyclomatic(fn),
				test:  strings.HasSuffix(name, "_test.go"),
			})
		}
		return nil
	})
	sort.Slice(sizes, func(i, j int) bool { return sizes[i].pos < sizes[j].pos })
	return sizes, err
}

// funcName spells a function as gocyclo does: "(*T).m", "T.m" or "f".
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	typ := fn.Recv.List[0].Type
	star := ""
	if s, ok := typ.(*ast.StarExpr); ok {
		star, typ = "*", s.X
	}
	switch x := typ.(type) {
	case *ast.IndexExpr:
		typ = x.X
	case *ast.IndexListExpr:
		typ = x.X
	}
	name := "?"
	if id, ok := typ.(*ast.Ident); ok {
		name = id.Name
	}
	if star != "" {
		return "(" + star + name + ")." + fn.Name.Name
	}
	return name + "." + fn.Name.Name
}

// cyclomatic counts as gocyclo does.
func cyclomatic(fn *ast.FuncDecl) int {
	n := 1
	ast.Inspect(fn, func(node ast.Node) bool {
		switch x := node.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			n++
		case *ast.CaseClause:
			if x.List != nil {
				n++
			}
		case *ast.CommClause:
			if x.Comm != nil {
				n++
			}
		case *ast.BinaryExpr:
			if x.Op == token.LAND || x.Op == token.LOR {
				n++
			}
		}
		return true
	})
	return n
}

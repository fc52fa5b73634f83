package inspect

import (
	"debug/elf"
	"fmt"
	"io"
	"strings"
)

// Binary is the hardening of one ELF file.
type Binary struct {
	Path string `json:"path"`
	Arch string `json:"arch"`
	// Type is exec, pie, lib (a shared library) or object.
	Type string `json:"type"`
	NX   bool   `json:"nx"`
	PIE  bool   `json:"pie"`
	// RELRO is none, partial or full.
	RELRO    string `json:"relro"`
	Canary   bool   `json:"canary"`
	Fortify  bool   `json:"fortify"`
	Stripped bool   `json:"stripped"`
	Static   bool   `json:"static"`
	RPath    string `json:"rpath,omitempty"`
	RunPath  string `json:"runpath,omitempty"`
}

// checkELF records the hardening of an ELF file and reports what is missing.
// debug/elf has panicked on hostile input before, so a panic is a skip.
func (c *collector) checkELF(p string, r io.ReaderAt) {
	b, ok := analyzeELF(r, func(f *elf.File) { c.elfComponents(p, f) })
	if !ok {
		return
	}
	b.Path = p
	c.mu.Lock()
	defer c.mu.Unlock()
	c.binaries = append(c.binaries, b.Binary)
	if b.Type == "object" {
		return
	}
	add := func(rule string, sev Severity, ev string) {
		c.findings = append(c.findings, Finding{Rule: rule, Severity: sev, Path: p, Evidence: ev, Detail: b.Arch + " " + b.Type})
	}
	if !b.NX {
		add(RuleExecStack, SeverityMedium, "stack is executable (PT_GNU_STACK missing or RWX)")
	}
	if b.Type == "exec" {
		add(RuleNoPIE, SeverityLow, "ET_EXEC: not position-independent")
	}
	if b.RELRO == "none" && !b.Static {
		add(RuleNoRELRO, SeverityLow, "no PT_GNU_RELRO segment")
	}
	if !b.Canary && !b.Static && b.hasImports {
		add(RuleNoCanary, SeverityLow, "no __stack_chk_fail/__stack_chk_guard reference")
	}
	for _, rp := range []string{b.RPath, b.RunPath} {
		if rp == "" {
			continue
		}
		sev := SeverityLow
		for _, d := range strings.Split(rp, ":") {
			if d == "" || d == "." || !strings.HasPrefix(d, "/") && !strings.HasPrefix(d, "$ORIGIN") ||
				strings.HasPrefix(d, "/tmp") || strings.HasPrefix(d, "/var") || strings.HasPrefix(d, "/mnt") {
				sev = SeverityMedium
			}
		}
		add(RuleRPath, sev, "library search path "+rp)
	}
}

type binaryInfo struct {
	Binary
	hasImports bool
}

// analyzeELF reads the hardening of an ELF and passes the open file to
// also (when not nil).
func analyzeELF(r io.ReaderAt, also func(*elf.File)) (b binaryInfo, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return b, false
	}
	defer f.Close()
	if also != nil {
		also(f)
	}
	b.Arch = strings.TrimPrefix(f.Machine.String(), "EM_")
	if f.Class == elf.ELFCLASS64 {
		b.Arch += "/64"
	}
	interp := b.readSegments(f)
	b.readType(f, interp)
	if b.RELRO == "partial" && bindNow(f) {
		b.RELRO = "full"
	}
	b.Stripped = f.Section(".symtab") == nil
	b.Static = !interp && f.Section(".dynamic") == nil
	if v, err := f.DynString(elf.DT_RPATH); err == nil && len(v) > 0 {
		b.RPath = strings.Join(v, ":")
	}
	if v, err := f.DynString(elf.DT_RUNPATH); err == nil && len(v) > 0 {
		b.RunPath = strings.Join(v, ":")
	}
	b.readSymbols(f)
	return b, true
}

// readSegments sets NX and partial RELRO from the program headers, and
// reports whether the file names an interpreter.
func (b *binaryInfo) readSegments(f *elf.File) (interp bool) {
	gnuStack := false
	b.RELRO = "none"
	for _, ph := range f.Progs {
		switch ph.Type {
		case elf.PT_INTERP:
			interp = true
		case elf.PT_GNU_STACK:
			gnuStack = true
			b.NX = ph.Flags&elf.PF_X == 0
		case elf.PT_GNU_RELRO:
			b.RELRO = "partial"
		}
	}
	if !gnuStack {
		b.NX = false
	}
	return interp
}

// readType sets Type (exec, lib, pie, object) and PIE.
func (b *binaryInfo) readType(f *elf.File, interp bool) {
	switch f.Type {
	case elf.ET_EXEC:
		b.Type = "exec"
	case elf.ET_DYN:
		b.Type = "lib"
		if interp || hasFlag1PIE(f) {
			b.Type = "pie"
			b.PIE = true
		}
	default:
		b.Type = "object"
	}
}

// readSymbols sets Canary and Fortify from the symbols the file defines or
// imports, and hasImports.
func (b *binaryInfo) readSymbols(f *elf.File) {
	check := func(name string) {
		switch {
		case name == "__stack_chk_fail" || name == "__stack_chk_guard" || name == "__stack_chk_fail_local":
			b.Canary = true
		case strings.HasPrefix(name, "__") && strings.HasSuffix(name, "_chk") && name != "__stack_chk_fail":
			b.Fortify = true
		}
	}
	if syms, err := f.DynamicSymbols(); err == nil {
		for _, s := range syms {
			if s.Section == elf.SHN_UNDEF && s.Name != "" {
				b.hasImports = true
			}
			check(s.Name)
		}
	}
	if syms, err := f.Symbols(); err == nil {
		for _, s := range syms {
			check(s.Name)
		}
	}
}

func hasFlag1PIE(f *elf.File) bool {
	v, err := dynValue(f, elf.DT_FLAGS_1)
	return err == nil && v&uint64(elf.DF_1_PIE) != 0
}

func bindNow(f *elf.File) bool {
	if _, err := dynValue(f, elf.DT_BIND_NOW); err == nil {
		return true
	}
	if v, err := dynValue(f, elf.DT_FLAGS); err == nil && v&uint64(elf.DF_BIND_NOW) != 0 {
		return true
	}
	if v, err := dynValue(f, elf.DT_FLAGS_1); err == nil && v&uint64(elf.DF_1_NOW) != 0 {
		return true
	}
	return false
}

var errNoTag = fmt.Errorf("inspect: dynamic tag not present")

func dynValue(f *elf.File, tag elf.DynTag) (uint64, error) {
	vs, err := f.DynValue(tag)
	if err != nil {
		return 0, err
	}
	if len(vs) == 0 {
		return 0, errNoTag
	}
	return vs[0], nil
}

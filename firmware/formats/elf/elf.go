// Package elf carves ELF executables, shared objects and kernel modules out of
// images: the extent is the furthest of the ELF header, the program headers
// and their file contents, and the section headers and their contents, read
// from the headers with every offset bounds-checked. Nothing is extracted; class,
// byte order, machine, type and entry point go in Chunk.Meta.
package elf

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

const formatName = "elf"

// maxInterp bounds the program interpreter path read.
const maxInterp = 256

// maxOff bounds offsets and sizes taken from headers (1 TiB): anything larger is corruption.
const maxOff = 1 << 40

// Format declares the carve-only ELF format.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindCarve,
	Doc: "ELF executable, shared object or kernel module (\\x7fELF), carved, not extracted: the extent " +
		"is the furthest of the headers, segments and sections (every header offset bounds-checked); class, " +
		"byte order, machine, type, entry point, program interpreter (the C library), static or dynamic " +
		"linking and whether it is stripped are reported.",
	Magics:   []firmware.Magic{{Bytes: []byte("\x7fELF")}},
	Identify: identify,
}

// identify reads the headers itself rather than through debug/elf: NewFile
// rejects a file whose section headers lie past the end, which is exactly the
// truncated binary a carver must still report (with its extent clamped).
func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	avail := size - off
	if avail < 52 {
		return nil, fmt.Errorf("elf: %d bytes left: %w", avail, firmware.ErrNotFormat)
	}
	var h [64]byte
	hb := h[:min(64, avail)]
	if _, err := r.ReadAt(hb, off); err != nil {
		return nil, fmt.Errorf("elf: %w", err)
	}
	eh, err := parseHeader(&h, avail)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Meta: map[string]any{
			"class":    map[elf.Class]string{elf.ELFCLASS32: "32", elf.ELFCLASS64: "64"}[eh.class],
			"endian":   map[elf.Data]string{elf.ELFDATA2LSB: "little", elf.ELFDATA2MSB: "big"}[eh.data],
			"machine":  eh.machine.String(),
			"type":     eh.typ.String(),
			"entry":    fmt.Sprintf("%#x", eh.entry),
			"sections": eh.shnum,
			"segments": eh.phnum,
		},
	}
	x := &extent{r: r, off: off, avail: avail, end: int64(eh.ehsize)}
	f := x.tables(eh)
	// The program interpreter names the C library (ld-uClibc, ld-musl, ld-linux).
	if f.hasInterp && f.interpLen > 1 && f.interpLen <= maxInterp && f.interpOff+f.interpLen <= uint64(avail) {
		b := make([]byte, f.interpLen)
		if _, err := r.ReadAt(b, off+int64(f.interpOff)); err == nil {
			c.Meta["interpreter"] = strings.ToValidUTF8(strings.TrimRight(string(b), "\x00"), "?")
		}
	}
	if eh.typ == elf.ET_EXEC || eh.typ == elf.ET_DYN {
		c.Meta["linking"] = map[bool]string{true: "dynamic", false: "static"}[f.hasDynamic]
	}
	if eh.shnum > 0 {
		c.Meta["stripped"] = !f.hasSymtab
	}
	end := x.end
	c.Size = end
	if x.truncated || end > avail {
		c.Warnings = append(c.Warnings, fmt.Sprintf("truncated: headers say at least %#x bytes, %#x present", end, avail))
		c.Size = min(end, avail)
		c.Confidence = firmware.ConfidenceMedium
	}
	c.Desc = fmt.Sprintf("ELF %s-bit %s-endian %s, %s", c.Meta["class"], c.Meta["endian"], eh.typ, eh.machine)
	return c, nil
}

// header is the ELF file header, either class.
type header struct {
	class                              elf.Class
	data                               elf.Data
	bo                                 binary.ByteOrder
	typ                                elf.Type
	machine                            elf.Machine
	entry, phoff, shoff                uint64
	ehsize, phent, phnum, shent, shnum uint16
}

// parseHeader decodes the file header h (avail bytes are left in the file)
// and checks that its sizes and offsets agree with its class.
func parseHeader(h *[64]byte, avail int64) (*header, error) {
	class, data := elf.Class(h[elf.EI_CLASS]), elf.Data(h[elf.EI_DATA])
	if class != elf.ELFCLASS32 && class != elf.ELFCLASS64 || data != elf.ELFDATA2LSB && data != elf.ELFDATA2MSB ||
		h[elf.EI_VERSION] != byte(elf.EV_CURRENT) || class == elf.ELFCLASS64 && avail < 64 {
		return nil, fmt.Errorf("elf: bad ident % x: %w", h[4:7], firmware.ErrNotFormat)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if data == elf.ELFDATA2MSB {
		bo = binary.BigEndian
	}
	eh := &header{class: class, data: data, bo: bo, typ: elf.Type(bo.Uint16(h[16:])), machine: elf.Machine(bo.Uint16(h[18:]))}
	version := bo.Uint32(h[20:])
	wantEh, wantPh, wantSh := uint16(52), uint16(32), uint16(40)
	if class == elf.ELFCLASS64 {
		eh.entry, eh.phoff, eh.shoff = bo.Uint64(h[24:]), bo.Uint64(h[32:]), bo.Uint64(h[40:])
		eh.ehsize, eh.phent, eh.phnum, eh.shent, eh.shnum = bo.Uint16(h[52:]), bo.Uint16(h[54:]), bo.Uint16(h[56:]), bo.Uint16(h[58:]), bo.Uint16(h[60:])
		wantEh, wantPh, wantSh = 64, 56, 64
	} else {
		eh.entry, eh.phoff, eh.shoff = uint64(bo.Uint32(h[24:])), uint64(bo.Uint32(h[28:])), uint64(bo.Uint32(h[32:]))
		eh.ehsize, eh.phent, eh.phnum, eh.shent, eh.shnum = bo.Uint16(h[40:]), bo.Uint16(h[42:]), bo.Uint16(h[44:]), bo.Uint16(h[46:]), bo.Uint16(h[48:])
	}
	switch {
	case version != uint32(elf.EV_CURRENT), eh.ehsize != wantEh,
		eh.phnum > 0 && (eh.phent != wantPh || eh.phoff < uint64(eh.ehsize)), eh.shnum > 0 && (eh.shent != wantSh || eh.shoff < uint64(eh.ehsize)),
		eh.phnum == 0 && eh.shnum == 0, eh.phoff > maxOff, eh.shoff > maxOff:
		return nil, fmt.Errorf("elf: inconsistent header: %w", firmware.ErrNotFormat)
	}
	return eh, nil
}

// extent is the furthest byte the headers describe, found table by table.
type extent struct {
	r          io.ReaderAt
	off, avail int64
	end        int64
	truncated  bool // a header table lies past the end or could not be read
}

// facts are what the program and section headers say about linking.
type facts struct {
	interpOff, interpLen             uint64
	hasInterp, hasDynamic, hasSymtab bool
}

// table extends x over a header table of n entries of ent bytes at tabOff,
// then over the file ranges its entries describe (rng returns ok false for
// an entry that occupies no bytes).
func (x *extent) table(tabOff uint64, n, ent uint16, rng func(e []byte) (o, sz uint64, ok bool)) {
	if n == 0 {
		return
	}
	tabEnd := int64(tabOff) + int64(n)*int64(ent)
	x.end = max(x.end, tabEnd)
	if tabEnd > x.avail {
		x.truncated = true
		return
	}
	b := make([]byte, int64(n)*int64(ent))
	if _, err := x.r.ReadAt(b, x.off+int64(tabOff)); err != nil {
		x.truncated = true
		return
	}
	for i := 0; i < int(n); i++ {
		if o, sz, ok := rng(b[i*int(ent):]); ok && o <= maxOff && sz <= maxOff {
			x.end = max(x.end, int64(o+sz))
		}
	}
}

// tables extends x over the program and section header tables and their
// contents, and collects the linking facts on the way.
func (x *extent) tables(eh *header) facts {
	bo := eh.bo
	var f facts
	prog := func(typ elf.ProgType, o, sz uint64) {
		switch typ {
		case elf.PT_INTERP:
			f.hasInterp, f.interpOff, f.interpLen = true, o, sz
		case elf.PT_DYNAMIC:
			f.hasDynamic = true
		}
	}
	sect := func(typ elf.SectionType) {
		if typ == elf.SHT_SYMTAB {
			f.hasSymtab = true
		}
	}
	if eh.class == elf.ELFCLASS64 {
		x.table(eh.phoff, eh.phnum, eh.phent, func(e []byte) (uint64, uint64, bool) {
			o, sz := bo.Uint64(e[8:]), bo.Uint64(e[32:])
			prog(elf.ProgType(bo.Uint32(e)), o, sz)
			return o, sz, true
		})
		x.table(eh.shoff, eh.shnum, eh.shent, func(e []byte) (uint64, uint64, bool) {
			t := elf.SectionType(bo.Uint32(e[4:]))
			sect(t)
			return bo.Uint64(e[24:]), bo.Uint64(e[32:]), t != elf.SHT_NOBITS && t != elf.SHT_NULL
		})
	} else {
		x.table(eh.phoff, eh.phnum, eh.phent, func(e []byte) (uint64, uint64, bool) {
			o, sz := uint64(bo.Uint32(e[4:])), uint64(bo.Uint32(e[16:]))
			prog(elf.ProgType(bo.Uint32(e)), o, sz)
			return o, sz, true
		})
		x.table(eh.shoff, eh.shnum, eh.shent, func(e []byte) (uint64, uint64, bool) {
			t := elf.SectionType(bo.Uint32(e[4:]))
			sect(t)
			return uint64(bo.Uint32(e[16:])), uint64(bo.Uint32(e[20:])), t != elf.SHT_NOBITS && t != elf.SHT_NULL
		})
	}
	return f
}

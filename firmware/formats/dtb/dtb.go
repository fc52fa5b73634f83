// Package dtb parses flattened device tree blobs (DTB, magic 0xd00dfeed) with
// bounds on every offset, size, depth and count. Large property values are
// not read into memory: their offset and length are kept so that callers (the
// FIT image reader) can stream them. A DTB chunk is extracted as its source
// form (tree.dts), which shows the board's model, compatible strings and
// memory map.
package dtb

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

// Magic is the FDT header magic (big-endian).
const Magic = 0xd00dfeed

const (
	headerSize = 40
	// MaxInline is the largest property value Parse reads into memory.
	MaxInline = 64 << 10
	// maxInlineTotal bounds all values read into memory; later values keep
	// only their offset and length.
	maxInlineTotal = 16 << 20
	maxDepth       = 64
	maxNodes       = 100000
	maxProps       = 1000000
	maxName        = 1024
	// maxStrings bounds the strings block read into memory.
	maxStrings = 4 << 20
)

// FDT structure tokens.
const (
	tokBeginNode = 1
	tokEndNode   = 2
	tokProp      = 3
	tokNop       = 4
	tokEnd       = 9
)

// Header is the FDT header.
type Header struct {
	TotalSize, OffStruct, OffStrings, OffMemRsv uint32
	Version, LastCompVersion, BootCPU           uint32
	SizeStrings, SizeStruct                     uint32
}

// Prop is one property. Value holds the data when it is at most MaxInline
// bytes; Off and Len locate it in the blob either way.
type Prop struct {
	Name  string
	Off   int64 // relative to the blob start
	Len   int64
	Value []byte
}

// Node is one tree node.
type Node struct {
	Name     string
	Props    []Prop
	Children []*Node
}

// Prop returns the property named name, or nil.
func (n *Node) Prop(name string) *Prop {
	for i := range n.Props {
		if n.Props[i].Name == name {
			return &n.Props[i]
		}
	}
	return nil
}

// Child returns the child node named name, or nil.
func (n *Node) Child(name string) *Node {
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// String returns a property's value as a string (the first of a string list).
func (p *Prop) String() string {
	if p == nil {
		return ""
	}
	s, _, _ := strings.Cut(string(p.Value), "\x00")
	return strings.ToValidUTF8(s, "?")
}

// Strings returns a string-list property's values.
func (p *Prop) Strings() []string {
	if p == nil || len(p.Value) == 0 {
		return nil
	}
	v := strings.TrimSuffix(string(p.Value), "\x00")
	return strings.Split(strings.ToValidUTF8(v, "?"), "\x00")
}

// Uint returns a 32- or 64-bit cell property, and whether it is one.
func (p *Prop) Uint() (uint64, bool) {
	if p == nil {
		return 0, false
	}
	switch len(p.Value) {
	case 4:
		return uint64(binary.BigEndian.Uint32(p.Value)), true
	case 8:
		return binary.BigEndian.Uint64(p.Value), true
	}
	return 0, false
}

// Tree is a parsed blob.
type Tree struct {
	Header Header
	Root   *Node
	Nodes  int
}

// FormatError reports a parse failure at a blob offset.
func ferr(off int64, msg string, err error) error {
	return &firmware.FormatError{Format: formatName, Off: off, Msg: msg, Err: err}
}

// ReadHeader reads and checks the header of the blob at off in r (total size
// size). Errors wrap firmware.ErrNotFormat.
func ReadHeader(r io.ReaderAt, off, size int64) (*Header, error) {
	if size-off < headerSize {
		return nil, ferr(0, "header", firmware.ErrNotFormat)
	}
	var b [headerSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return nil, ferr(0, "read header", err)
	}
	be := binary.BigEndian
	if be.Uint32(b[:]) != Magic {
		return nil, ferr(0, "magic", firmware.ErrNotFormat)
	}
	h := &Header{
		TotalSize: be.Uint32(b[4:]), OffStruct: be.Uint32(b[8:]), OffStrings: be.Uint32(b[12:]),
		OffMemRsv: be.Uint32(b[16:]), Version: be.Uint32(b[20:]), LastCompVersion: be.Uint32(b[24:]),
		BootCPU: be.Uint32(b[28:]), SizeStrings: be.Uint32(b[32:]), SizeStruct: be.Uint32(b[36:]),
	}
	total := int64(h.TotalSize)
	switch {
	case h.Version < 16 || h.Version > 17 || h.LastCompVersion > 17:
		return nil, ferr(20, fmt.Sprintf("version %d (last compatible %d)", h.Version, h.LastCompVersion), firmware.ErrNotFormat)
	case total < headerSize:
		return nil, ferr(4, fmt.Sprintf("total size %d", total), firmware.ErrNotFormat)
	case total > size-off:
		return nil, ferr(4, fmt.Sprintf("total size %d, %d bytes present", total, size-off), firmware.ErrTruncated)
	case int64(h.OffMemRsv) < headerSize || int64(h.OffMemRsv) > total,
		int64(h.OffStruct) < headerSize || int64(h.OffStruct) > total,
		int64(h.OffStrings) < headerSize || int64(h.OffStrings)+int64(h.SizeStrings) > total,
		h.Version >= 17 && int64(h.OffStruct)+int64(h.SizeStruct) > total,
		h.OffStruct%4 != 0:
		return nil, ferr(8, "block offsets outside the blob", firmware.ErrNotFormat)
	case h.SizeStrings > maxStrings:
		return nil, ferr(32, fmt.Sprintf("strings block of %d bytes", h.SizeStrings), firmware.ErrNotFormat)
	}
	return h, nil
}

// Parse parses the blob at off in r (total size size).
func Parse(r io.ReaderAt, off, size int64) (*Tree, error) {
	h, err := ReadHeader(r, off, size)
	if err != nil {
		return nil, err
	}
	blob := io.NewSectionReader(r, off, int64(h.TotalSize))
	strs := make([]byte, h.SizeStrings)
	if len(strs) > 0 {
		if _, err := blob.ReadAt(strs, int64(h.OffStrings)); err != nil {
			return nil, ferr(int64(h.OffStrings), "read strings: "+err.Error(), firmware.ErrTruncated)
		}
	}
	end := int64(h.TotalSize)
	if h.Version >= 17 {
		end = int64(h.OffStruct) + int64(h.SizeStruct)
	}
	p := &parser{
		r:    bufio.NewReaderSize(io.NewSectionReader(blob, int64(h.OffStruct), end-int64(h.OffStruct)), 32<<10),
		pos:  int64(h.OffStruct),
		strs: strs,
	}
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	if tok != tokBeginNode {
		return nil, ferr(p.pos-4, fmt.Sprintf("token %#x before the root node", tok), firmware.ErrNotFormat)
	}
	root, err := p.node(0)
	if err != nil {
		return nil, err
	}
	if tok, err := p.token(); err != nil || tok != tokEnd {
		return nil, ferr(p.pos-4, "no FDT_END after the root node", firmware.ErrNotFormat)
	}
	return &Tree{Header: *h, Root: root, Nodes: p.nodes}, nil
}

type parser struct {
	r       *bufio.Reader
	pos     int64
	strs    []byte
	nodes   int
	props   int
	inlined int64
}

func (p *parser) u32() (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(p.r, b[:]); err != nil {
		return 0, ferr(p.pos, "structure block ends early", firmware.ErrNotFormat)
	}
	p.pos += 4
	return binary.BigEndian.Uint32(b[:]), nil
}

// token reads the next structure token, skipping FDT_NOP.
func (p *parser) token() (uint32, error) {
	for {
		tok, err := p.u32()
		if err != nil || tok != tokNop {
			return tok, err
		}
	}
}

func (p *parser) align() error {
	if pad := (4 - p.pos%4) % 4; pad > 0 {
		if _, err := p.r.Discard(int(pad)); err != nil {
			return ferr(p.pos, "padding", firmware.ErrNotFormat)
		}
		p.pos += pad
	}
	return nil
}

func (p *parser) name() (string, error) {
	var b []byte
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			return "", ferr(p.pos, "node name", firmware.ErrNotFormat)
		}
		p.pos++
		if c == 0 {
			break
		}
		if len(b) >= maxName {
			return "", ferr(p.pos, "node name too long", firmware.ErrNotFormat)
		}
		b = append(b, c)
	}
	return strings.ToValidUTF8(string(b), "?"), p.align()
}

func (p *parser) node(depth int) (*Node, error) {
	if depth > maxDepth {
		return nil, ferr(p.pos, fmt.Sprintf("nodes nested deeper than %d", maxDepth), firmware.ErrNotFormat)
	}
	p.nodes++
	if p.nodes > maxNodes {
		return nil, ferr(p.pos, fmt.Sprintf("more than %d nodes", maxNodes), firmware.ErrNotFormat)
	}
	name, err := p.name()
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name}
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case tokEndNode:
			return n, nil
		case tokBeginNode:
			c, err := p.node(depth + 1)
			if err != nil {
				return nil, err
			}
			n.Children = append(n.Children, c)
		case tokProp:
			l, err := p.u32()
			if err != nil {
				return nil, err
			}
			nameOff, err := p.u32()
			if err != nil {
				return nil, err
			}
			if int64(nameOff) >= int64(len(p.strs)) {
				return nil, ferr(p.pos-4, "property name offset outside the strings block", firmware.ErrNotFormat)
			}
			s := p.strs[nameOff:]
			i := strings.IndexByte(string(s[:min(len(s), maxName)]), 0)
			if i < 0 {
				return nil, ferr(p.pos-4, "property name not terminated", firmware.ErrNotFormat)
			}
			p.props++
			if p.props > maxProps {
				return nil, ferr(p.pos, fmt.Sprintf("more than %d properties", maxProps), firmware.ErrNotFormat)
			}
			prop := Prop{Name: strings.ToValidUTF8(string(s[:i]), "?"), Off: p.pos, Len: int64(l)}
			if l <= MaxInline && p.inlined+int64(l) <= maxInlineTotal {
				p.inlined += int64(l)
				prop.Value = make([]byte, l)
				if _, err := io.ReadFull(p.r, prop.Value); err != nil {
					return nil, ferr(p.pos, "property "+prop.Name+" value", firmware.ErrNotFormat)
				}
			} else if _, err := p.r.Discard(int(l)); err != nil {
				return nil, ferr(p.pos, "property "+prop.Name+" value", firmware.ErrNotFormat)
			}
			p.pos += int64(l)
			if err := p.align(); err != nil {
				return nil, err
			}
			n.Props = append(n.Props, prop)
		default:
			return nil, ferr(p.pos-4, fmt.Sprintf("unknown token %#x", tok), firmware.ErrNotFormat)
		}
	}
}

const formatName = "dtb"

// Format declares the device tree blob.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindContainer,
	Doc: "Flattened device tree blob (magic 0xd00dfeed, versions 16-17): the header's block offsets " +
		"are checked and the whole structure parsed within limits. The board model and compatible strings " +
		"go in the chunk's meta; the tree is extracted as tree.dts (device tree source).",
	Magics:   []firmware.Magic{{Bytes: []byte{0xd0, 0x0d, 0xfe, 0xed}}},
	Identify: identify,
	Extract:  extract,
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	t, err := Parse(r, off, size)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       int64(t.Header.TotalSize),
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Meta:       map[string]any{"version": t.Header.Version, "nodes": t.Nodes},
	}
	model := t.Root.Prop("model").String()
	compat := t.Root.Prop("compatible").Strings()
	if model != "" {
		c.Meta["model"] = model
	}
	if len(compat) > 0 {
		c.Meta["compatible"] = compat
	}
	c.Desc = fmt.Sprintf("device tree blob v%d, %d nodes", t.Header.Version, t.Nodes)
	if model != "" {
		c.Desc += fmt.Sprintf(", model %q", model)
	}
	return c, nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	t, err := Parse(src, 0, src.Size())
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		_, _ = io.WriteString(bw, "/dts-v1/;\n\n")
		err := writeNode(ctx, bw, t.Root, 0)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	err = out.Add(&firmware.Header{Name: "tree.dts", Type: firmware.TypeFile, Mode: 0o644, Size: -1}, pr)
	pr.CloseWithError(errors.New("dtb: reader closed"))
	if err != nil {
		return fmt.Errorf("dtb: tree.dts: %w", err)
	}
	return nil
}

// WriteDTS writes n and its children in device tree source syntax.
func WriteDTS(w io.Writer, n *Node) error {
	bw := bufio.NewWriter(w)
	if err := writeNode(context.Background(), bw, n, 0); err != nil {
		return err
	}
	return bw.Flush()
}

func writeNode(ctx context.Context, w *bufio.Writer, n *Node, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ind := strings.Repeat("\t", depth)
	name := n.Name
	if depth == 0 {
		name = "/"
	}
	fmt.Fprintf(w, "%s%s {\n", ind, name)
	for _, p := range n.Props {
		fmt.Fprintf(w, "%s\t%s", ind, p.Name)
		switch {
		case p.Len == 0:
		case p.Value == nil:
			fmt.Fprintf(w, " = /* %d bytes at offset %#x */ [ ]", p.Len, p.Off)
		case isStrings(p.Value):
			w.WriteString(" = ")
			for i, s := range p.Strings() {
				if i > 0 {
					w.WriteString(", ")
				}
				fmt.Fprintf(w, "%q", s)
			}
		case len(p.Value)%4 == 0 && len(p.Value) <= 1024:
			w.WriteString(" = <")
			for i := 0; i < len(p.Value); i += 4 {
				if i > 0 {
					w.WriteByte(' ')
				}
				fmt.Fprintf(w, "%#x", binary.BigEndian.Uint32(p.Value[i:]))
			}
			w.WriteByte('>')
		default:
			fmt.Fprintf(w, " = [% x]", p.Value)
		}
		w.WriteString(";\n")
	}
	for _, c := range n.Children {
		if err := writeNode(ctx, w, c, depth+1); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "%s};\n", ind)
	return nil
}

// isStrings reports whether b is a list of printable NUL-terminated strings.
func isStrings(b []byte) bool {
	if len(b) == 0 || b[len(b)-1] != 0 || b[0] == 0 {
		return false
	}
	for i, c := range b {
		if c == 0 {
			if i > 0 && b[i-1] == 0 {
				return false
			}
			continue
		}
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

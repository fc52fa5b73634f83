// Package entropyplot draws an image's entropy curve as a PNG, the picture
// labs know from binwalk -E, with the chunks the firmware engine identified
// shaded and labelled by format, and a strip that marks each block as
// padding, text, compressed/encrypted or other data.
package entropyplot

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"path"
	"slices"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/internal/humanize"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Plot is what Draw draws.
type Plot struct {
	// Title names the image (its file name, for example).
	Title string
	// Size is the image size in bytes.
	Size int64
	// Block is the block size of Blocks.
	Block int64
	// Blocks is the entropy profile (firmware.EntropyProfile).
	Blocks []firmware.EntropyBlock
	// Chunks are the image's chunks (a ScanReport's); chunks embedded in
	// them (same file) are drawn too, labelled one row lower.
	Chunks []*firmware.ChunkReport
	// Padding are the image's regions no chunk claims (a ScanReport's
	// Unknown). Unless Linear, runs of padding (Padding set) that would
	// take more than a tenth of the plot are folded to a narrow band marked
	// with their size (Folds), so that a flash dump that is mostly 0xff
	// still shows its chunks; wide unknown data is labelled "unknown".
	Padding []firmware.Region
	// Linear keeps the offset axis linear (no folding), as binwalk -E draws.
	Linear bool
	// Width and Height of the picture in pixels. They default to 1400 and 560.
	Width, Height int
}

// Folds returns the padding runs Draw folds: those that would take more
// than a tenth of the plot at the scale of the bytes left unfolded (found
// by repeating the test as runs are folded), none when linear.
func Folds(size int64, padding []firmware.Region, linear bool) []firmware.Region {
	if linear {
		return nil
	}
	folded := make([]bool, len(padding))
	rest := size
	for changed := true; changed; {
		changed = false
		for i, r := range padding {
			if !folded[i] && r.Padding != "" && r.Offset >= 0 && r.Offset+r.Size <= size && r.Size*10 >= rest-r.Size {
				folded[i], changed = true, true
				rest -= r.Size
			}
		}
	}
	var out []firmware.Region
	for i, r := range padding {
		if folded[i] {
			out = append(out, r)
		}
	}
	return out
}

// VisibleBytes is the part of the image Draw does not fold.
func VisibleBytes(size int64, padding []firmware.Region, linear bool) int64 {
	for _, f := range Folds(size, padding, linear) {
		size -= f.Size
	}
	return size
}

// segment is a stretch of the offset axis drawn over w pixels from x.
type segment struct {
	off, size int64
	x, w      int
	folded    bool
}

const foldWidth = 48 // pixels of a folded padding run

// axis cuts [0, size) into segments over [left, right]: folded padding runs
// get foldWidth pixels each, the other bytes share the rest linearly.
func axis(p *Plot, left, right int) []segment {
	folds := Folds(p.Size, p.Padding, p.Linear)
	span := right - left
	if len(folds)*foldWidth > span/2 {
		folds = nil
	}
	rest := p.Size
	for _, f := range folds {
		rest -= f.Size
	}
	perByte := float64(span-len(folds)*foldWidth) / float64(max(rest, 1))
	var out []segment
	x, off := float64(left), int64(0)
	addLinear := func(end int64) {
		if end > off {
			w := float64(end-off) * perByte
			out = append(out, segment{off: off, size: end - off, x: int(math.Round(x)), w: int(math.Round(x+w)) - int(math.Round(x))})
			x += w
			off = end
		}
	}
	for _, f := range folds {
		addLinear(f.Offset)
		out = append(out, segment{off: f.Offset, size: f.Size, x: int(math.Round(x)), w: foldWidth, folded: true})
		x += foldWidth
		off = f.Offset + f.Size
	}
	addLinear(p.Size)
	return out
}

// Colours.
var (
	white     = color.RGBA{255, 255, 255, 255}
	ink       = color.RGBA{33, 33, 33, 255}
	grid      = color.RGBA{225, 225, 225, 255}
	curve     = color.RGBA{20, 60, 160, 255}
	area      = color.RGBA{6, 19, 50, 80} // premultiplied (a third of curve): the chunk bands show through
	boundary  = color.RGBA{120, 120, 120, 255}
	classInk  = map[firmware.BlockClass]color.RGBA{firmware.ClassPadding: {190, 190, 190, 255}, firmware.ClassText: {60, 160, 70, 255}, firmware.ClassCompressed: {205, 50, 45, 255}, firmware.ClassData: {70, 120, 200, 255}}
	classList = []firmware.BlockClass{firmware.ClassCompressed, firmware.ClassData, firmware.ClassText, firmware.ClassPadding}
	// shades of the chunk bands, by format name (stable across pictures).
	shades = []color.RGBA{{255, 236, 200, 255}, {214, 236, 255, 255}, {220, 245, 215, 255}, {240, 222, 250, 255}, {255, 220, 220, 255}, {230, 230, 205, 255}}
)

const (
	labelRows = 3  // rows of chunk labels above the plot
	rowHeight = 15 // pixels per label row
	charWidth = 7  // basicfont.Face7x13
)

// canvas is one picture being drawn: the plot area spans [left, right] ×
// [top, bottom], and segs maps offsets to x.
type canvas struct {
	img                      *image.RGBA
	p                        *Plot
	width, height            int
	left, right, top, bottom int
	segs                     []segment
}

// labelled is a chunk (or unknown data) spanning [x0, x1) with its label.
type labelled struct {
	x0, x1 int
	name   string
	depth  int
}

// Draw writes p as a PNG to w.
func Draw(w io.Writer, p *Plot) error {
	if p.Size <= 0 {
		return fmt.Errorf("entropyplot: empty image")
	}
	width, height := p.Width, p.Height
	if width <= 0 {
		width = 1400
	}
	if height <= 0 {
		height = 560
	}
	if width < 400 || height < 300 || width > 20000 || height > 10000 {
		return fmt.Errorf("entropyplot: %dx%d pixels outside 400x300..20000x10000", width, height)
	}
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, width, height)), p: p, width: width, height: height}
	draw.Draw(c.img, c.img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)

	// The plot area and what sits around it.
	c.left, c.right = 56, width-20
	c.top = 34 + labelRows*rowHeight + 6
	c.bottom = height - 76 // class strip, x labels and legend below
	c.segs = axis(p, c.left, c.right)

	text(c.img, 8, 18, ink, fmt.Sprintf("%s: %s, Shannon entropy per %s block (bits per byte)", p.Title, humanize.Bytes(p.Size), humanize.Bytes(p.Block)))
	c.chunks()
	c.axes()
	c.foldedPadding()
	c.classStrip()
	c.curve()
	c.legend()
	return png.Encode(w, c.img)
}

func (c *canvas) xOf(off int64) int {
	for _, sg := range c.segs {
		if off < sg.off+sg.size {
			return sg.x + int(math.Round(float64(max(off-sg.off, 0))/float64(sg.size)*float64(sg.w)))
		}
	}
	return c.right
}

func (c *canvas) yOf(e float64) int {
	return c.bottom - int(math.Round(e/8*float64(c.bottom-c.top)))
}

// chunks draws the chunk bands, their boundaries and labels.
func (c *canvas) chunks() {
	var labels []labelled
	var walk func(cs []*firmware.ChunkReport, file string, depth int)
	walk = func(cs []*firmware.ChunkReport, file string, depth int) {
		for _, ch := range cs {
			if ch.File != file {
				continue
			}
			x0, x1 := c.xOf(ch.Offset), max(c.xOf(ch.Offset+ch.Size), c.xOf(ch.Offset)+3)
			if depth == 0 {
				fillRect(c.img, x0, c.top, x1, c.bottom, shade(ch.Format))
			} else {
				fillRect(c.img, x0, c.top+(c.bottom-c.top)/2, x1, c.bottom, shade(ch.Format+"/embedded"))
			}
			labels = append(labels, labelled{x0, x1, ch.Format + " " + shortBytes(ch.Size), depth})
			walk(ch.Children, file, depth+1)
		}
	}
	walk(c.p.Chunks, "", 0)
	// Unknown data (not padding) is labelled too, in grey, when it has room.
	var unknownLabels []labelled
	for _, r := range c.p.Padding {
		if r.Padding == "" {
			if x0, x1 := c.xOf(r.Offset), c.xOf(r.Offset+r.Size); x1-x0 >= 8*charWidth {
				unknownLabels = append(unknownLabels, labelled{x0, x1, "unknown", 0})
			}
		}
	}
	for _, l := range labels {
		dashed(c.img, l.x0, c.top, c.bottom, boundary)
		if l.depth == 0 && l.x1-l.x0 > 6 {
			dashed(c.img, l.x1, c.top, c.bottom, boundary)
		}
	}
	c.labels(unknownLabels, labels)
}

// labels places the labels in the first row where they fit, from the
// chunk's start; embedded chunks start one row lower.
func (c *canvas) labels(unknownLabels, labels []labelled) {
	rowEnd := make([]int, labelRows)
	for i := range rowEnd {
		rowEnd[i] = -1
	}
	for _, l := range unknownLabels {
		if l.x0 > rowEnd[0]+4 {
			text(c.img, l.x0+2, 34+11, boundary, l.name)
			rowEnd[0] = l.x0 + 2 + len(l.name)*charWidth
		}
	}
	for _, l := range labels {
		name := l.name
		wpx := len(name) * charWidth
		row := -1
		for r := min(l.depth, labelRows-1); r < labelRows; r++ {
			if l.x0 > rowEnd[r]+4 {
				row = r
				break
			}
		}
		if row < 0 {
			continue // no room: the band and its boundary still show it
		}
		x := min(l.x0+2, c.width-wpx-2)
		y := 34 + row*rowHeight + 11
		text(c.img, x, y, ink, name)
		rowEnd[row] = x + wpx
		vline(c.img, l.x0, y+2, c.top, boundary)
	}
}

// axes draws the grid, the axes and the offset ticks with their labels.
func (c *canvas) axes() {
	for e := 0; e <= 8; e += 2 {
		y := c.yOf(float64(e))
		hline(c.img, c.left, c.right, y, grid)
		text(c.img, c.left-14, y+4, ink, fmt.Sprint(e))
	}
	vline(c.img, c.left, c.top, c.bottom, ink)
	hline(c.img, c.left, c.right, c.bottom, ink)
	// Offset ticks: evenly spaced on a linear axis; with folds, at 0, the
	// end, and where each fold ends (the offset the data resumes at).
	var tickOffs []int64
	if len(c.segs) == 1 {
		for i := int64(0); i <= 8; i++ {
			tickOffs = append(tickOffs, c.p.Size*i/8)
		}
	} else {
		tickOffs = append(tickOffs, 0)
		for _, sg := range c.segs {
			if sg.folded && sg.off+sg.size < c.p.Size {
				tickOffs = append(tickOffs, sg.off+sg.size)
			}
		}
		tickOffs = append(tickOffs, c.p.Size)
	}
	// Labels in order, each where it does not overlap one already placed:
	// where data resumes matters more than the image's end.
	last := len(tickOffs) - 1
	var placed [][2]int
	for i := range tickOffs {
		off := tickOffs[i]
		x := c.xOf(off)
		if i == last {
			x = c.right
		}
		s := fmt.Sprintf("%#x", off)
		tx := min(max(x-len(s)*charWidth/2, 2), c.width-len(s)*charWidth-2)
		span := [2]int{tx - 6, tx + len(s)*charWidth + 6}
		if slices.ContainsFunc(placed, func(p [2]int) bool { return span[0] < p[1] && p[0] < span[1] }) {
			continue
		}
		placed = append(placed, span)
		vline(c.img, x, c.bottom, c.bottom+4, ink)
		text(c.img, tx, c.bottom+30, ink, s)
	}
}

// foldedPadding draws folded padding: hatched, with its size, and break
// marks on the axis.
func (c *canvas) foldedPadding() {
	top, bottom := c.top, c.bottom
	for _, sg := range c.segs {
		if !sg.folded {
			continue
		}
		fillRect(c.img, sg.x+1, top, sg.x+sg.w, bottom, white)
		for y := top; y < bottom; y += 8 {
			line(c.img, sg.x+4, y+6, sg.x+sg.w-4, y, grid)
		}
		fillRect(c.img, sg.x+1, (top+bottom)/2-24, sg.x+sg.w, (top+bottom)/2+10, white)
		size := shortBytes(sg.size)
		text(c.img, sg.x+(sg.w-len(size)*charWidth)/2, (top+bottom)/2-10, ink, size)
		text(c.img, sg.x+(sg.w-4*charWidth)/2, (top+bottom)/2+4, ink, "pad.")
		for _, bx := range []int{sg.x + 2, sg.x + sg.w - 6} {
			line(c.img, bx, bottom+5, bx+4, bottom-5, ink)
		}
	}
}

// classStrip draws the strip that marks each block's class.
func (c *canvas) classStrip() {
	for _, b := range c.p.Blocks {
		fillRect(c.img, c.xOf(b.Offset), c.bottom+6, max(c.xOf(b.Offset+b.Size), c.xOf(b.Offset)+1), c.bottom+16, classInk[b.Class])
	}
}

// curve draws the entropy curve over the bands: per pixel column, the range
// of the blocks that fall in it (so a one-block spike in a wide image still
// shows), the area under it filled, the tops joined.
func (c *canvas) curve() {
	left := c.left
	cols := c.right - left + 1
	lo, hi := make([]float64, cols), make([]float64, cols)
	seen := make([]bool, cols)
	for _, b := range c.p.Blocks {
		x0, x1 := c.xOf(b.Offset)-left, max(c.xOf(b.Offset+b.Size)-left, c.xOf(b.Offset)-left+1)
		for x := max(x0, 0); x < min(x1, cols); x++ {
			if !seen[x] {
				lo[x], hi[x], seen[x] = b.Entropy, b.Entropy, true
				continue
			}
			lo[x], hi[x] = min(lo[x], b.Entropy), max(hi[x], b.Entropy)
		}
	}
	px, py := -1, -1
	for x := range cols {
		if !seen[x] {
			continue
		}
		draw.Draw(c.img, image.Rect(left+x, c.yOf(lo[x]), left+x+1, c.bottom), image.NewUniform(area), image.Point{}, draw.Over)
		vline(c.img, left+x, c.yOf(hi[x]), c.yOf(lo[x]), curve)
		if px >= 0 {
			line(c.img, px, py, left+x, c.yOf(hi[x]), curve)
		}
		px, py = left+x, c.yOf(hi[x])
	}
}

// legend draws the block classes and what the shading means.
func (c *canvas) legend() {
	x, y := c.left, c.height-14
	text(c.img, x, y, ink, "blocks:")
	x += 8 * charWidth
	for _, cl := range classList {
		fillRect(c.img, x, y-9, x+12, y+1, classInk[cl])
		text(c.img, x+16, y, ink, string(cl))
		x += 16 + len(cl)*charWidth + 18
	}
	note := "shaded: chunks identified by cordon (labels: format)"
	if len(c.segs) > 1 {
		note += "; hatched: long padding runs, folded"
	}
	text(c.img, x+10, y, ink, note)
}

// shortBytes is a size in at most six characters: 10M, 224K, 512.
func shortBytes(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%dG", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 10<<20:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprint(n)
}

// shade picks a stable band colour for a format name.
func shade(name string) color.RGBA {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return shades[h%uint32(len(shades))]
}

// TitleOf is the title for an image path: its base name.
func TitleOf(p string) string {
	return path.Base(strings.ReplaceAll(p, "\\", "/"))
}

func text(img *image.RGBA, x, y int, c color.Color, s string) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fillRect(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1).Intersect(img.Bounds()), image.NewUniform(c), image.Point{}, draw.Src)
}

// dashed draws a vertical dashed line.
func dashed(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y < y1; y += 6 {
		vline(img, x, y, min(y+3, y1), c)
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) { fillRect(img, x0, y, x1+1, y+1, c) }
func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	fillRect(img, x, min(y0, y1), x+1, max(y0, y1)+1, c)
}

// line draws a two-pixel line from (x0, y0) to (x1, y1) (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		img.SetRGBA(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

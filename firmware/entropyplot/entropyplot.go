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
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)

	// The plot area and what sits around it.
	left, right := 56, width-20
	top := 34 + labelRows*rowHeight + 6
	bottom := height - 76 // class strip, x labels and legend below
	segs := axis(p, left, right)
	xOf := func(off int64) int {
		for _, sg := range segs {
			if off < sg.off+sg.size {
				return sg.x + int(math.Round(float64(max(off-sg.off, 0))/float64(sg.size)*float64(sg.w)))
			}
		}
		return right
	}
	yOf := func(e float64) int {
		return bottom - int(math.Round(e/8*float64(bottom-top)))
	}

	text(img, 8, 18, ink, fmt.Sprintf("%s: %s, Shannon entropy per %s block (bits per byte)", p.Title, humanize.Bytes(p.Size), humanize.Bytes(p.Block)))

	// Chunk bands, boundaries and labels.
	type labelled struct {
		x0, x1 int
		name   string
		depth  int
	}
	var labels []labelled
	var walk func(cs []*firmware.ChunkReport, file string, depth int)
	walk = func(cs []*firmware.ChunkReport, file string, depth int) {
		for _, c := range cs {
			if c.File != file {
				continue
			}
			x0, x1 := xOf(c.Offset), max(xOf(c.Offset+c.Size), xOf(c.Offset)+3)
			if depth == 0 {
				fillRect(img, x0, top, x1, bottom, shade(c.Format))
			} else {
				fillRect(img, x0, top+(bottom-top)/2, x1, bottom, shade(c.Format+"/embedded"))
			}
			labels = append(labels, labelled{x0, x1, c.Format + " " + shortBytes(c.Size), depth})
			walk(c.Children, file, depth+1)
		}
	}
	walk(p.Chunks, "", 0)
	// Unknown data (not padding) is labelled too, in grey, when it has room.
	var unknownLabels []labelled
	for _, r := range p.Padding {
		if r.Padding == "" {
			if x0, x1 := xOf(r.Offset), xOf(r.Offset+r.Size); x1-x0 >= 8*charWidth {
				unknownLabels = append(unknownLabels, labelled{x0, x1, "unknown", 0})
			}
		}
	}
	for _, l := range labels {
		dashed(img, l.x0, top, bottom, boundary)
		if l.depth == 0 && l.x1-l.x0 > 6 {
			dashed(img, l.x1, top, bottom, boundary)
		}
	}
	// Labels go in the first row where they fit, from the chunk's start;
	// embedded chunks start one row lower.
	rowEnd := make([]int, labelRows)
	for i := range rowEnd {
		rowEnd[i] = -1
	}
	for _, l := range unknownLabels {
		if l.x0 > rowEnd[0]+4 {
			text(img, l.x0+2, 34+11, boundary, l.name)
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
		x := min(l.x0+2, width-wpx-2)
		y := 34 + row*rowHeight + 11
		text(img, x, y, ink, name)
		rowEnd[row] = x + wpx
		vline(img, l.x0, y+2, top, boundary)
	}

	// Grid and axes.
	for e := 0; e <= 8; e += 2 {
		y := yOf(float64(e))
		hline(img, left, right, y, grid)
		text(img, left-14, y+4, ink, fmt.Sprint(e))
	}
	vline(img, left, top, bottom, ink)
	hline(img, left, right, bottom, ink)
	// Offset ticks: evenly spaced on a linear axis; with folds, at 0, the
	// end, and where each fold ends (the offset the data resumes at).
	var tickOffs []int64
	if len(segs) == 1 {
		for i := int64(0); i <= 8; i++ {
			tickOffs = append(tickOffs, p.Size*i/8)
		}
	} else {
		tickOffs = append(tickOffs, 0)
		for _, sg := range segs {
			if sg.folded && sg.off+sg.size < p.Size {
				tickOffs = append(tickOffs, sg.off+sg.size)
			}
		}
		tickOffs = append(tickOffs, p.Size)
	}
	// Labels in order, each where it does not overlap one already placed:
	// where data resumes matters more than the image's end.
	last := len(tickOffs) - 1
	var placed [][2]int
	for i := range tickOffs {
		off := tickOffs[i]
		x := xOf(off)
		if i == last {
			x = right
		}
		s := fmt.Sprintf("%#x", off)
		tx := min(max(x-len(s)*charWidth/2, 2), width-len(s)*charWidth-2)
		span := [2]int{tx - 6, tx + len(s)*charWidth + 6}
		if slices.ContainsFunc(placed, func(p [2]int) bool { return span[0] < p[1] && p[0] < span[1] }) {
			continue
		}
		placed = append(placed, span)
		vline(img, x, bottom, bottom+4, ink)
		text(img, tx, bottom+30, ink, s)
	}
	// Folded padding: hatched, with its size, and break marks on the axis.
	for _, sg := range segs {
		if !sg.folded {
			continue
		}
		fillRect(img, sg.x+1, top, sg.x+sg.w, bottom, white)
		for y := top; y < bottom; y += 8 {
			line(img, sg.x+4, y+6, sg.x+sg.w-4, y, grid)
		}
		fillRect(img, sg.x+1, (top+bottom)/2-24, sg.x+sg.w, (top+bottom)/2+10, white)
		size := shortBytes(sg.size)
		text(img, sg.x+(sg.w-len(size)*charWidth)/2, (top+bottom)/2-10, ink, size)
		text(img, sg.x+(sg.w-4*charWidth)/2, (top+bottom)/2+4, ink, "pad.")
		for _, bx := range []int{sg.x + 2, sg.x + sg.w - 6} {
			line(img, bx, bottom+5, bx+4, bottom-5, ink)
		}
	}

	// The class strip, then the curve over the bands.
	for _, b := range p.Blocks {
		fillRect(img, xOf(b.Offset), bottom+6, max(xOf(b.Offset+b.Size), xOf(b.Offset)+1), bottom+16, classInk[b.Class])
	}
	// The curve: per pixel column, the range of the blocks that fall in it
	// (so a one-block spike in a wide image still shows), the area under it
	// filled, the tops joined.
	cols := right - left + 1
	lo, hi := make([]float64, cols), make([]float64, cols)
	seen := make([]bool, cols)
	for _, b := range p.Blocks {
		x0, x1 := xOf(b.Offset)-left, max(xOf(b.Offset+b.Size)-left, xOf(b.Offset)-left+1)
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
		draw.Draw(img, image.Rect(left+x, yOf(lo[x]), left+x+1, bottom), image.NewUniform(area), image.Point{}, draw.Over)
		vline(img, left+x, yOf(hi[x]), yOf(lo[x]), curve)
		if px >= 0 {
			line(img, px, py, left+x, yOf(hi[x]), curve)
		}
		px, py = left+x, yOf(hi[x])
	}

	// Legend.
	x, y := left, height-14
	text(img, x, y, ink, "blocks:")
	x += 8 * charWidth
	for _, c := range classList {
		fillRect(img, x, y-9, x+12, y+1, classInk[c])
		text(img, x+16, y, ink, string(c))
		x += 16 + len(c)*charWidth + 18
	}
	note := "shaded: chunks identified by cordon (labels: format)"
	if len(segs) > 1 {
		note += "; hatched: long padding runs, folded"
	}
	text(img, x+10, y, ink, note)
	return png.Encode(w, img)
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

package flash

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

// nandReader reads a raw NAND dump (each page followed by its spare bytes)
// as the data pages alone: logical offset o is page o/page, byte o%page.
type nandReader struct {
	r    io.ReaderAt
	base int64 // raw offset of the first page
	l    nandLayout
	buf  []byte
}

func (n *nandReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("flash: negative NAND offset %d", off)
	}
	stride := n.l.page + n.l.oob
	done := 0
	for done < len(p) {
		// Read whole raw pages, up to 256 KiB of them at a time.
		o := off + int64(done)
		first := o / n.l.page
		last := (off + int64(len(p)) - 1) / n.l.page
		last = min(last, first+max(1, (256<<10)/stride)-1)
		span := (last - first + 1) * stride
		if int64(cap(n.buf)) < span {
			n.buf = make([]byte, span)
		}
		buf := n.buf[:span]
		m, err := n.r.ReadAt(buf, n.base+first*stride)
		for pg := int64(0); pg <= last-first && done < len(p); pg++ {
			start := pg * stride
			if pg == 0 {
				start += o % n.l.page
			}
			end := pg*stride + n.l.page
			if start >= int64(m) {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return done, err
			}
			end = min(end, int64(m))
			done += copy(p[done:], buf[start:end])
			if end < pg*stride+n.l.page && done < len(p) {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return done, err
			}
		}
	}
	return done, nil
}

type ubiVID struct {
	volType  byte
	copyFlag bool
	volID    uint32
	lnum     uint32
	dataSize uint32
	usedEBs  uint32
	dataPad  uint32
	dataCRC  uint32
	sqnum    uint64
}

// readUBIVID reads a CRC-checked volume-ID header at off.
func readUBIVID(w *window, off int64) (ubiVID, bool) {
	b := w.at(off, ubiVIDHdrSize)
	if b == nil || string(b[:4]) != "UBI!" || b[4] != 1 || crcRaw(0xFFFFFFFF, b[:60]) != binary.BigEndian.Uint32(b[60:]) {
		return ubiVID{}, false
	}
	be := binary.BigEndian
	return ubiVID{
		volType: b[5], copyFlag: b[6] != 0, volID: be.Uint32(b[8:]), lnum: be.Uint32(b[12:]),
		dataSize: be.Uint32(b[20:]), usedEBs: be.Uint32(b[24:]), dataPad: be.Uint32(b[28:]),
		dataCRC: be.Uint32(b[32:]), sqnum: be.Uint64(b[40:]),
	}, true
}

// ubiPEB is one erase block that holds a logical erase block of a volume.
type ubiPEB struct {
	index int64 // erase block number in the image
	vid   ubiVID
}

// ubiImage is a UBI image as the extractor sees it.
type ubiImage struct {
	*ubiScan
	r    io.ReaderAt // logical (OOB removed), relative to the image start
	size int64
	w    *window
	lebs map[uint32]map[uint32][]ubiPEB // volume id → LEB → candidates, newest first
	warn func(string)
}

func extractUBI(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	s, err := scanUBI(src, 0, src.Size())
	if err != nil {
		return err
	}
	r, size := s.logical(src, 0, src.Size())
	img := &ubiImage{ubiScan: s, r: r, size: size, w: newWindow(r, size), warn: out.Warn,
		lebs: map[uint32]map[uint32][]ubiPEB{}}
	if err := img.mapLEBs(ctx, src, out); err != nil {
		return err
	}
	vols, err := img.volumeTable()
	if err != nil {
		out.Warn(err.Error())
	}
	if vols == nil {
		vols = img.volumesFromVIDs(out)
	}
	if n := len(img.lebs[ubiFastmapSB]) + len(img.lebs[ubiFastmapData]); n > 0 {
		out.Warn(fmt.Sprintf("ubi: %d fastmap erase blocks ignored (logical erase blocks are mapped from the volume-ID headers)", n))
	}
	inTable := map[uint32]bool{ubiLayoutVol: true, ubiFastmapSB: true, ubiFastmapData: true}
	names := map[string]bool{}
	for _, v := range vols {
		inTable[uint32(v.id)] = true
		if err := img.extractVolume(ctx, v, names, out); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(img.lebs)) {
		if !inTable[id] {
			out.Warn(fmt.Sprintf("ubi: %d erase blocks of volume %d, which is not in the volume table, skipped", len(img.lebs[id]), id))
		}
	}
	return nil
}

// mapLEBs reads the volume-ID header of every erase block and files the
// block under its volume and LEB number, the copies of one LEB newest first.
func (img *ubiImage) mapLEBs(ctx context.Context, src *io.SectionReader, out firmware.Sink) error {
	raw := newWindow(src, src.Size())
	var badVID int
	for i := range img.blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		ec, ok := readUBIEC(raw, i*img.rawPEB)
		if !ok {
			continue // counted by the scan
		}
		pos := i*img.peb + int64(ec.vidOff)
		vid, ok := readUBIVID(img.w, pos)
		if !ok {
			// All 0xFF: a free erase block of UBI's pool.
			if b := img.w.at(pos, ubiVIDHdrSize); b == nil || !allFF(b) {
				badVID++
			}
			continue
		}
		m := img.lebs[vid.volID]
		if m == nil {
			m = map[uint32][]ubiPEB{}
			img.lebs[vid.volID] = m
		}
		m[vid.lnum] = append(m[vid.lnum], ubiPEB{index: i, vid: vid})
	}
	for _, m := range img.lebs {
		for _, c := range m {
			slices.SortStableFunc(c, func(a, b ubiPEB) int {
				switch {
				case a.vid.sqnum > b.vid.sqnum:
					return -1
				case a.vid.sqnum < b.vid.sqnum:
					return 1
				}
				return 0
			})
		}
	}
	if badVID > 0 {
		out.Warn(fmt.Sprintf("ubi: %d erase blocks with a corrupt volume-ID header, skipped", badVID))
	}
	return nil
}

// volumesFromVIDs lists the volumes the VID headers name, for an image
// without a usable volume table: they are extracted without names or sizes.
func (img *ubiImage) volumesFromVIDs(out firmware.Sink) []ubiVol {
	var vols []ubiVol
	for _, id := range slices.Sorted(maps.Keys(img.lebs)) {
		if id == ubiLayoutVol || id >= ubiMaxVolumes {
			continue
		}
		c := img.lebs[id][slices.Min(slices.Collect(maps.Keys(img.lebs[id])))][0]
		vols = append(vols, ubiVol{id: int(id), static: c.vid.volType == 2, name: fmt.Sprintf("vol%d", id)})
	}
	if len(vols) > 0 {
		out.Warn(fmt.Sprintf("ubi: no volume table; %d volumes found by their volume-ID headers, extracted without names or sizes", len(vols)))
	}
	return vols
}

// volumeTable reads the volume table from the newest copy of layout LEB 0,
// else LEB 1.
func (img *ubiImage) volumeTable() ([]ubiVol, error) {
	layout := img.lebs[ubiLayoutVol]
	if layout == nil {
		return nil, fmt.Errorf("ubi: no layout volume (volume table) found")
	}
	usable := img.peb - int64(img.first.data)
	var firstErr error
	var tables [][]ubiVol
	for lnum := uint32(0); lnum < 2; lnum++ {
		for _, c := range layout[lnum] {
			vt, err := readUBIVtbl(img.r, c.index*img.peb+int64(img.first.data), usable)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("ubi: volume table copy %d in erase block %d: %w", lnum, c.index, err)
				}
				continue
			}
			tables = append(tables, vt)
			break
		}
	}
	if len(tables) == 0 {
		return nil, firstErr
	}
	if len(tables) == 2 && !slices.Equal(tables[0], tables[1]) {
		img.warn("ubi: the two copies of the volume table differ; the first is used")
	}
	return tables[0], nil
}

// sanitizeVolName turns a volume name into a safe file name.
func sanitizeVolName(name string, id int) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), ".")
	if s == "" {
		s = fmt.Sprintf("vol%d", id)
	}
	return s
}

// lebPart is where one logical erase block of a volume comes from: n bytes
// at off in the logical image, or n bytes of 0xFF when off < 0.
type lebPart struct {
	off int64
	n   int64
}

func (img *ubiImage) extractVolume(ctx context.Context, v ubiVol, names map[string]bool, out firmware.Sink) error {
	usable := img.peb - int64(img.first.data) - int64(v.dataPad)
	if usable <= 0 {
		out.Warn(fmt.Sprintf("ubi: volume %d %q: data padding %d leaves no room in the erase block, skipped", v.id, v.name, v.dataPad))
		return nil
	}
	if v.updMarker != 0 {
		out.Warn(fmt.Sprintf("ubi: volume %d %q has its update marker set: an update was interrupted, the content may be incomplete", v.id, v.name))
	}
	lebs := img.lebs[uint32(v.id)]
	if len(lebs) == 0 {
		out.Warn(fmt.Sprintf("ubi: volume %d %q: no mapped erase blocks (empty), nothing extracted", v.id, v.name))
		return nil
	}
	limit, maxLEB := img.volumeBound(v, lebs, out)
	var parts []lebPart
	var missing, badCRC int
	if v.static {
		parts, missing, badCRC = img.staticParts(v, lebs, limit, usable, out)
	} else {
		n := limit
		if int64(v.reserved) > img.blocks {
			n = maxLEB + 1
		}
		parts, badCRC = img.dynamicParts(lebs, n, usable)
	}
	if missing > 0 {
		out.Warn(fmt.Sprintf("ubi: static volume %d %q: %d logical erase blocks missing, filled with 0xFF", v.id, v.name, missing))
	}
	if badCRC > 0 {
		out.Warn(fmt.Sprintf("ubi: volume %d %q: %d logical erase blocks fail their data CRC and have no good copy; used as found", v.id, v.name, badCRC))
	}
	name := img.volumeFileName(v, parts, names)
	var total int64
	for _, p := range parts {
		total += p.n
	}
	h := &firmware.Header{Name: name, Type: firmware.TypeFile, Mode: 0o644, Size: total}
	return out.Add(h, &lebReader{ctx: ctx, r: img.r, parts: parts})
}

// volumeBound bounds the volume: the table's reservation, but never more
// than the image holds. It returns that limit and the highest mapped LEB
// below it (-1 when none).
func (img *ubiImage) volumeBound(v ubiVol, lebs map[uint32][]ubiPEB, out firmware.Sink) (limit, maxLEB int64) {
	limit = int64(v.reserved)
	if limit > img.blocks || limit == 0 {
		limit = img.blocks
		if v.reserved != 0 {
			out.Warn(fmt.Sprintf("ubi: volume %d %q reserves %d erase blocks, the image has %d", v.id, v.name, v.reserved, img.blocks))
		}
	}
	var beyond int
	maxLEB = -1
	for lnum := range lebs {
		if int64(lnum) >= limit {
			beyond++
			continue
		}
		maxLEB = max(maxLEB, int64(lnum))
	}
	if beyond > 0 {
		out.Warn(fmt.Sprintf("ubi: volume %d %q: %d logical erase blocks beyond its %d reserved, skipped", v.id, v.name, beyond, limit))
	}
	return limit, maxLEB
}

// staticParts maps the LEBs of a static volume: as many as its headers say
// are used (bounded by limit), each holding the data size its header
// states; a missing one is usable bytes of 0xFF.
func (img *ubiImage) staticParts(v ubiVol, lebs map[uint32][]ubiPEB, limit, usable int64, out firmware.Sink) (parts []lebPart, missing, badCRC int) {
	used := int64(0)
	for lnum := range lebs {
		if int64(lnum) < limit {
			used = max(used, int64(lebs[lnum][0].vid.usedEBs))
		}
	}
	if used > limit {
		out.Warn(fmt.Sprintf("ubi: volume %d %q: static volume claims %d used erase blocks, %d reserved", v.id, v.name, used, limit))
		used = limit
	}
	for lnum := range used {
		c, ok := lebs[uint32(lnum)]
		if !ok {
			missing++
			parts = append(parts, lebPart{off: -1, n: usable})
			continue
		}
		best, good := img.pick(c, true)
		n := min(int64(best.vid.dataSize), usable)
		if !good {
			badCRC++
		}
		parts = append(parts, lebPart{off: best.index*img.peb + int64(img.first.data), n: n})
	}
	return parts, missing, badCRC
}

// dynamicParts maps the first n LEBs of a dynamic volume, each usable bytes
// long; an unmapped one reads as 0xFF, as UBI returns it.
func (img *ubiImage) dynamicParts(lebs map[uint32][]ubiPEB, n, usable int64) (parts []lebPart, badCRC int) {
	for lnum := range n {
		c, ok := lebs[uint32(lnum)]
		if !ok {
			parts = append(parts, lebPart{off: -1, n: usable})
			continue
		}
		best, good := img.pick(c, false)
		if !good {
			badCRC++
		}
		parts = append(parts, lebPart{off: best.index*img.peb + int64(img.first.data), n: usable})
	}
	return parts, badCRC
}

// volumeFileName names the file of volume v: its name, .ubifs when it
// starts with a UBIFS superblock node, else .bin; prefixed with its ID when
// another volume took that name.
func (img *ubiImage) volumeFileName(v ubiVol, parts []lebPart, names map[string]bool) string {
	name := sanitizeVolName(v.name, v.id)
	if len(parts) > 0 && parts[0].off >= 0 {
		if b := img.w.at(parts[0].off, 24); b != nil && binary.LittleEndian.Uint32(b) == 0x06101831 && b[20] == ubifsSBNode {
			name += ".ubifs"
		} else {
			name += ".bin"
		}
	} else {
		name += ".bin"
	}
	if names[name] {
		name = fmt.Sprintf("%d-%s", v.id, name)
	}
	names[name] = true
	return name
}

// pick chooses the copy of a LEB to use: the newest whose data CRC holds
// when the CRC is meaningful (static volumes, and copies made by wear
// levelling, which set copy_flag). good is false when no copy passes.
func (img *ubiImage) pick(c []ubiPEB, static bool) (best ubiPEB, good bool) {
	for _, p := range c {
		if !static && !p.vid.copyFlag {
			return p, true
		}
		n := int64(p.vid.dataSize)
		if n > img.peb-int64(img.first.data) {
			continue
		}
		buf := make([]byte, n)
		if m, _ := img.r.ReadAt(buf, p.index*img.peb+int64(img.first.data)); int64(m) == n && crcRaw(0xFFFFFFFF, buf) == p.vid.dataCRC {
			return p, true
		}
	}
	return c[0], false
}

// lebReader streams a volume's logical erase blocks.
type lebReader struct {
	ctx   context.Context
	r     io.ReaderAt
	parts []lebPart
	pos   int64 // within parts[0]
}

func (l *lebReader) Read(p []byte) (int, error) {
	for len(l.parts) > 0 && l.pos >= l.parts[0].n {
		l.parts, l.pos = l.parts[1:], 0
	}
	if len(l.parts) == 0 {
		return 0, io.EOF
	}
	if err := l.ctx.Err(); err != nil {
		return 0, err
	}
	cur := l.parts[0]
	n := min(int64(len(p)), cur.n-l.pos)
	if cur.off < 0 {
		for i := range p[:n] {
			p[i] = 0xFF
		}
		l.pos += n
		return int(n), nil
	}
	m, err := l.r.ReadAt(p[:n], cur.off+l.pos)
	l.pos += int64(m)
	if m < int(n) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return m, fmt.Errorf("ubi: reading erase block data at %#x: %w", cur.off+l.pos, err)
	}
	return m, nil
}

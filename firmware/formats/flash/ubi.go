package flash

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
)

// UBI declares UBI images (raw NAND/NOR partitions managed by the UBI layer).
var UBI = &firmware.Format{
	Name: "ubi",
	Kind: firmware.KindContainer,
	Doc: "UBI, the erase-block management layer under UBIFS on NAND cameras. The physical " +
		"erase-block size is found from consecutive erase-counter headers (magic \"UBI#\", " +
		"CRC-checked, same image sequence number); a raw NAND dump with the spare (OOB) bytes " +
		"interleaved after every page (512+16, 2048+64, 2048+128, 4096+128, 4096+224, ...) or " +
		"after every 512- or 1024-byte ECC sector is recognised and read de-interleaved. Bad and erased blocks inside the image are " +
		"skipped and counted. Each volume of the volume table is extracted as one file named " +
		"after it (rootfs.ubifs for a UBIFS volume, name.bin otherwise), its logical erase " +
		"blocks mapped by the volume-ID headers (highest sequence number wins, copies checked " +
		"by their data CRC, static volumes cut to their data size).",
	Magics:   []firmware.Magic{{Bytes: []byte("UBI#")}},
	Identify: identifyUBI,
	Extract:  extractUBI,
}

const (
	ubiECHdrSize  = 64
	ubiVIDHdrSize = 64
	ubiLayoutVol  = 0x7FFFEFFF
	// Fastmap's internal volumes (a cache of the erase-block map).
	ubiFastmapSB   = 0x7FFFF000
	ubiFastmapData = 0x7FFFF001
	ubiVtblRecord  = 172
	ubiMaxVolumes  = 128
	// ubiMaxGap is how many bad or erased erase blocks in a row an image may
	// hold before the walk decides the image has ended.
	ubiMaxGap = 16
)

type ubiEC struct {
	version      byte
	ec           uint64
	vidOff, data uint32
	imageSeq     uint32
}

func readUBIEC(w *window, off int64) (ubiEC, bool) {
	b := w.at(off, ubiECHdrSize)
	if b == nil || string(b[:4]) != "UBI#" || b[4] != 1 {
		return ubiEC{}, false
	}
	if crcRaw(0xFFFFFFFF, b[:60]) != binary.BigEndian.Uint32(b[60:]) {
		return ubiEC{}, false
	}
	return ubiEC{
		version: b[4], ec: binary.BigEndian.Uint64(b[8:]),
		vidOff: binary.BigEndian.Uint32(b[16:]), data: binary.BigEndian.Uint32(b[20:]),
		imageSeq: binary.BigEndian.Uint32(b[24:]),
	}, true
}

// nandLayout is the geometry of a raw NAND dump whose spare (OOB) bytes
// follow every page (or every ECC sector: page is then the sector size).
// The zero value means no OOB.
type nandLayout struct {
	page, oob, pagesPerBlock int64
}

// nandLayouts are the unit+spare sizes tried, in order, when no power-of-two
// erase block fits: small-page and the common large-page parts, then the
// sector layouts of controllers that interleave ECC per sector.
var nandLayouts = []struct{ page, oob int64 }{
	{2048, 64}, {4096, 224}, {2048, 128}, {4096, 128}, {4096, 256}, {512, 16}, {8192, 448}, {8192, 640},
	// Per-sector ECC: 2048+64 or 4096+128 as 512+16, 2048+64 as 1024+32,
	// 4096+224 as 512+28 or 1024+56.
	{1024, 32}, {512, 28}, {1024, 56},
}

// ubiScan is what a walk over a UBI image's erase-counter headers found.
type ubiScan struct {
	peb      int64 // logical erase-block size (without OOB)
	rawPEB   int64 // bytes per erase block in the dump (with OOB)
	nand     nandLayout
	first    ubiEC
	blocks   int64 // erase blocks in the image, gaps included
	bad      int64 // blocks inside the image without a valid EC header
	erased   int64 // of which all 0xFF (erased, never written)
	maxEC    uint64
	layoutAt int64 // raw offset of the first layout-volume block, or -1
}

// scanUBI walks the UBI image that starts at off.
func scanUBI(r io.ReaderAt, off, size int64) (*ubiScan, error) {
	w := newWindow(r, size)
	first, ok := readUBIEC(w, off)
	if !ok {
		return nil, formatErr("ubi", 0, "erase-counter header invalid (magic, version or CRC)", firmware.ErrNotFormat)
	}
	s := &ubiScan{first: first, layoutAt: -1}
	// Find the PEB size: the nearest power of two (16 KiB .. 2 MiB) where the
	// next erase-counter header of the same image sits.
	for p := int64(16 << 10); p <= 2<<20; p *= 2 {
		if next, ok := readUBIEC(w, off+p); ok && next.imageSeq == first.imageSeq {
			s.peb, s.rawPEB = p, p
			break
		}
	}
	if s.peb == 0 {
		s.findNANDLayout(w, r, off, size)
	}
	if s.peb == 0 {
		return nil, formatErr("ubi", 0, "no second erase block found: erase-block size unknown", firmware.ErrNotFormat)
	}
	if int64(first.vidOff)+ubiVIDHdrSize > s.peb || int64(first.data) >= s.peb || int64(first.vidOff) < ubiECHdrSize {
		return nil, formatErr("ubi", 16, "header offsets outside the erase block", firmware.ErrNotFormat)
	}
	if s.nand.page != 0 && (first.vidOff%8 != 0 || (first.vidOff%uint32(s.nand.page))+ubiVIDHdrSize > uint32(s.nand.page)) {
		return nil, formatErr("ubi", 16, "volume-ID header crosses a NAND page", firmware.ErrNotFormat)
	}
	s.countBlocks(w, r, off, size)
	return s, nil
}

// findNANDLayout sets the layout of a raw NAND dump with OOB, when one
// fits: the next header is units × (unit + spare) away, a unit being a page
// or, for controllers that keep ECC per sector, a 512- or 1024-byte sector.
// A multiple of the real block matches too, so the smallest distance wins;
// the first block's volume-ID header (or its erased place) must be where the
// layout puts it. Layouts of the same raw block size are told apart by the
// volume table, which only reads with valid CRCs through the right one.
func (s *ubiScan) findNANDLayout(w *window, r io.ReaderAt, off, size int64) {
	first := s.first
	var cands []nandLayout
	var best int64
	for _, l := range nandLayouts {
		for _, ppb := range []int64{32, 64, 128, 256, 512} {
			raw := ppb * (l.page + l.oob)
			if best != 0 && raw > best {
				continue
			}
			next, ok := readUBIEC(w, off+raw)
			if !ok || next.imageSeq != first.imageSeq || int64(first.vidOff)+ubiVIDHdrSize > l.page*ppb {
				continue
			}
			nl := nandLayout{page: l.page, oob: l.oob, pagesPerBlock: ppb}
			vw := newWindow(&nandReader{r: r, base: off, l: nl}, int64(first.vidOff)+ubiVIDHdrSize)
			if _, ok := readUBIVID(vw, int64(first.vidOff)); !ok {
				if b := vw.at(int64(first.vidOff), ubiVIDHdrSize); b == nil || !allFF(b) {
					continue
				}
			}
			if raw < best {
				cands = cands[:0]
			}
			best = raw
			cands = append(cands, nl)
		}
	}
	if len(cands) == 0 {
		return
	}
	s.nand = cands[0]
	for _, nl := range cands[1:] {
		if ubiVtblReadable(r, off, size, first, nl) && !ubiVtblReadable(r, off, size, first, s.nand) {
			s.nand = nl
		}
	}
	s.peb, s.rawPEB = s.nand.pagesPerBlock*s.nand.page, best
}

// countBlocks walks the erase blocks of the image: it counts them (up to
// the next image, or a run of more than ubiMaxGap blocks without a header),
// the bad and erased ones among them, the highest erase counter, and finds
// the first layout-volume block.
func (s *ubiScan) countBlocks(w *window, r io.ReaderAt, off, size int64) {
	first := s.first
	lr, lsize := s.logical(r, off, size)
	lw := newWindow(lr, lsize)
	var gapBad, gapErased, gap int64
	for i := int64(0); off+(i+1)*s.rawPEB <= size; i++ {
		pos := off + i*s.rawPEB
		ec, ok := readUBIEC(w, pos)
		if ok && (ec.imageSeq != first.imageSeq || ec.vidOff != first.vidOff || ec.data != first.data) {
			break // the next image
		}
		if !ok {
			if gap++; gap > ubiMaxGap {
				break
			}
			if b := w.at(pos, ubiECHdrSize); b != nil && allFF(b) {
				gapErased++
			}
			gapBad++
			continue
		}
		s.bad += gapBad
		s.erased += gapErased
		gap, gapBad, gapErased = 0, 0, 0
		s.blocks = i + 1
		s.maxEC = max(s.maxEC, ec.ec)
		if s.layoutAt < 0 {
			if vid, ok := readUBIVID(lw, i*s.peb+int64(ec.vidOff)); ok && vid.volID == ubiLayoutVol {
				s.layoutAt = i * s.peb
			}
		}
	}
}

// ubiVtblReadable tells whether, read through NAND layout nl, one of the
// image's first 64 erase blocks is a layout-volume block whose volume table
// has valid CRCs.
func ubiVtblReadable(r io.ReaderAt, off, size int64, first ubiEC, nl nandLayout) bool {
	s := &ubiScan{nand: nl, peb: nl.pagesPerBlock * nl.page}
	lr, lsize := s.logical(r, off, size)
	w := newWindow(lr, lsize)
	for i := int64(0); i < 64 && (i+1)*s.peb <= lsize; i++ {
		if vid, ok := readUBIVID(w, i*s.peb+int64(first.vidOff)); ok && vid.volID == ubiLayoutVol {
			_, err := readUBIVtbl(lr, i*s.peb+int64(first.data), s.peb-int64(first.data))
			return err == nil
		}
	}
	return false
}

// logicalSize is how many bytes of data (without OOB) n raw bytes hold.
func (s *ubiScan) logicalSize(n int64) int64 {
	if s.nand.page == 0 {
		return n
	}
	stride := s.nand.page + s.nand.oob
	return n/stride*s.nand.page + min(n%stride, s.nand.page)
}

// logical returns the image's data as UBI sees it (OOB removed), relative to
// the image start off, and its size.
func (s *ubiScan) logical(r io.ReaderAt, off, size int64) (io.ReaderAt, int64) {
	if s.nand.page == 0 {
		return io.NewSectionReader(r, off, size-off), size - off
	}
	return &nandReader{r: r, base: off, l: s.nand}, s.logicalSize(size - off)
}

func allFF(b []byte) bool {
	for _, c := range b {
		if c != 0xFF {
			return false
		}
	}
	return true
}

func identifyUBI(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	s, err := scanUBI(r, off, size)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       s.blocks * s.rawPEB,
		Format:     "ubi",
		Confidence: firmware.ConfidenceHigh,
		Desc:       fmt.Sprintf("UBI image, %d erase blocks of %d bytes", s.blocks, s.peb),
		Meta: map[string]any{
			"peb_size":        s.peb,
			"erase_blocks":    s.blocks,
			"vid_hdr_offset":  s.first.vidOff,
			"data_offset":     s.first.data,
			"image_seq":       s.first.imageSeq,
			"max_erase_count": s.maxEC,
		},
	}
	if s.nand.page != 0 {
		c.Desc += fmt.Sprintf(", raw NAND with OOB (%d+%d bytes per page, %d pages per block)", s.nand.page, s.nand.oob, s.nand.pagesPerBlock)
		c.Meta["nand_page_size"] = s.nand.page
		c.Meta["nand_oob_size"] = s.nand.oob
		c.Meta["nand_pages_per_block"] = s.nand.pagesPerBlock
		c.Warnings = append(c.Warnings, fmt.Sprintf("raw NAND dump: %d spare (OOB) bytes after every %d-byte page, read de-interleaved (ECC not checked)", s.nand.oob, s.nand.page))
	}
	if s.bad > 0 {
		c.Meta["bad_blocks"] = s.bad
		c.Meta["erased_blocks"] = s.erased
		c.Warnings = append(c.Warnings, fmt.Sprintf("%d erase blocks without a valid erase-counter header (%d of them erased), skipped", s.bad, s.erased))
	}
	if s.layoutAt >= 0 {
		lr, _ := s.logical(r, off, size)
		if vt, err := readUBIVtbl(lr, s.layoutAt+int64(s.first.data), s.peb-int64(s.first.data)); err == nil {
			var vols []map[string]any
			var names []string
			for _, v := range vt {
				vol := map[string]any{"id": v.id, "name": v.name, "reserved_pebs": v.reserved, "type": v.typeName()}
				if v.flags&1 != 0 {
					vol["autoresize"] = true
				}
				vols = append(vols, vol)
				names = append(names, v.name)
			}
			if len(vols) > 0 {
				c.Meta["volumes"] = vols
				c.Desc += ", volumes " + strings.Join(names, ", ")
			}
		}
	}
	return c, nil
}

// ubiVol is one record of the volume table.
type ubiVol struct {
	id       int
	reserved uint32
	dataPad  uint32
	static   bool
	// updMarker is set while a volume update is in progress.
	updMarker byte
	name      string
	flags     byte
}

func (v ubiVol) typeName() string {
	if v.static {
		return "static"
	}
	return "dynamic"
}

// readUBIVtbl reads the volume table at off (the data area of a layout
// volume block of usable bytes): the valid records, in id order. A record
// whose CRC does not match is an error.
func readUBIVtbl(r io.ReaderAt, off, usable int64) ([]ubiVol, error) {
	n := min(ubiMaxVolumes, usable/ubiVtblRecord)
	if n <= 0 {
		return nil, formatErr("ubi", off, "erase block too small for a volume table", firmware.ErrNotFormat)
	}
	tbl := make([]byte, n*ubiVtblRecord)
	if m, _ := r.ReadAt(tbl, off); m < len(tbl) {
		return nil, formatErr("ubi", off, "volume table truncated", firmware.ErrTruncated)
	}
	var vols []ubiVol
	for i := range int(n) {
		rec := tbl[i*ubiVtblRecord : (i+1)*ubiVtblRecord]
		if crcRaw(0xFFFFFFFF, rec[:168]) != binary.BigEndian.Uint32(rec[168:]) {
			return nil, formatErr("ubi", off+int64(i*ubiVtblRecord), fmt.Sprintf("volume table record %d CRC mismatch", i), firmware.ErrNotFormat)
		}
		reserved := binary.BigEndian.Uint32(rec[0:])
		if reserved == 0 {
			continue
		}
		nameLen := int(binary.BigEndian.Uint16(rec[14:]))
		if nameLen > 127 {
			return nil, formatErr("ubi", off+int64(i*ubiVtblRecord)+14, fmt.Sprintf("volume %d name length %d", i, nameLen), firmware.ErrNotFormat)
		}
		vols = append(vols, ubiVol{
			id: i, reserved: reserved, dataPad: binary.BigEndian.Uint32(rec[8:]), static: rec[12] == 2,
			updMarker: rec[13], name: string(rec[16 : 16+nameLen]), flags: rec[144],
		})
	}
	return vols, nil
}

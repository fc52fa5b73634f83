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
		"CRC-checked, same image sequence number); the chunk spans every such block, and the " +
		"volume table's names and sizes are reported. Identified only: not extracted yet.",
	Magics:   []firmware.Magic{{Bytes: []byte("UBI#")}},
	Identify: identifyUBI,
}

const (
	ubiECHdrSize  = 64
	ubiVIDHdrSize = 64
	ubiLayoutVol  = 0x7FFFEFFF
	ubiVtblRecord = 172
	ubiMaxVolumes = 128
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

func identifyUBI(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	w := newWindow(r, size)
	first, ok := readUBIEC(w, off)
	if !ok {
		return nil, formatErr("ubi", 0, "erase-counter header invalid (magic, version or CRC)", firmware.ErrNotFormat)
	}
	// Find the PEB size: the nearest power of two (16 KiB .. 2 MiB) where the
	// next erase-counter header of the same image sits.
	var peb int64
	for p := int64(16 << 10); p <= 2<<20; p *= 2 {
		if next, ok := readUBIEC(w, off+p); ok && next.imageSeq == first.imageSeq {
			peb = p
			break
		}
	}
	if peb == 0 {
		return nil, formatErr("ubi", 0, "no second erase block found: erase-block size unknown", firmware.ErrNotFormat)
	}
	if int64(first.vidOff)+ubiVIDHdrSize > peb || int64(first.data) >= peb {
		return nil, formatErr("ubi", 16, "header offsets outside the erase block", firmware.ErrNotFormat)
	}
	n := int64(0)
	var vols []map[string]any
	var maxEC uint64
	for pos := off; pos+peb <= size; pos += peb {
		ec, ok := readUBIEC(w, pos)
		if !ok || ec.imageSeq != first.imageSeq {
			break
		}
		n++
		maxEC = max(maxEC, ec.ec)
		if vols == nil {
			vols = ubiVolumes(r, w, pos, ec)
		}
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       n * peb,
		Format:     "ubi",
		Confidence: firmware.ConfidenceHigh,
		Desc:       fmt.Sprintf("UBI image, %d erase blocks of %d bytes", n, peb),
		Meta: map[string]any{
			"peb_size":        peb,
			"erase_blocks":    n,
			"vid_hdr_offset":  first.vidOff,
			"data_offset":     first.data,
			"image_seq":       first.imageSeq,
			"max_erase_count": maxEC,
		},
	}
	if len(vols) > 0 {
		c.Meta["volumes"] = vols
		var names []string
		for _, v := range vols {
			names = append(names, v["name"].(string))
		}
		c.Desc += ", volumes " + strings.Join(names, ", ")
	}
	return c, nil
}

// ubiVolumes reads the volume table if the erase block at pos belongs to the
// layout volume; it returns nil otherwise.
func ubiVolumes(r io.ReaderAt, w *window, pos int64, ec ubiEC) []map[string]any {
	vid := w.at(pos+int64(ec.vidOff), ubiVIDHdrSize)
	if vid == nil || string(vid[:4]) != "UBI!" || crcRaw(0xFFFFFFFF, vid[:60]) != binary.BigEndian.Uint32(vid[60:]) {
		return nil
	}
	if binary.BigEndian.Uint32(vid[8:]) != ubiLayoutVol {
		return nil
	}
	tbl := make([]byte, ubiMaxVolumes*ubiVtblRecord)
	if m, _ := r.ReadAt(tbl, pos+int64(ec.data)); m < len(tbl) {
		return nil
	}
	vols := []map[string]any{}
	for i := range ubiMaxVolumes {
		rec := tbl[i*ubiVtblRecord : (i+1)*ubiVtblRecord]
		reserved := binary.BigEndian.Uint32(rec[0:])
		if reserved == 0 || crcRaw(0xFFFFFFFF, rec[:168]) != binary.BigEndian.Uint32(rec[168:]) {
			continue
		}
		nameLen := int(binary.BigEndian.Uint16(rec[14:]))
		if nameLen > 127 {
			continue
		}
		typ := "dynamic"
		if rec[12] == 2 {
			typ = "static"
		}
		vols = append(vols, map[string]any{
			"id": i, "name": string(rec[16 : 16+nameLen]), "reserved_pebs": reserved, "type": typ,
		})
	}
	return vols
}

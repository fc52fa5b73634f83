// Package xiongmai reads XiongMai (XMEye) camera and recorder firmware: a plain
// zip with an InstallDesc JSON file that lists the partitions to burn. The
// partitions are U-Boot legacy images whose load address and entry point hold
// the partition's start and end in flash, so the package's flash map is
// reported in Chunk.Meta. Entries are extracted and unpacked by recursion.
package xiongmai

import (
	stdzip "archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/dahua"
	"github.com/cordon-vms/cordon/firmware/formats/zip"
)

const formatName = "xiongmai"

// maxInstallDesc bounds the InstallDesc file.
const maxInstallDesc = 64 << 10

// maxCommands bounds the commands read from InstallDesc.
const maxCommands = 256

// InstallDesc is the package's description file.
type InstallDesc struct {
	UpgradeCommand []struct {
		Command  string `json:"Command"`
		FileName string `json:"FileName"`
	} `json:"UpgradeCommand"`
	Hardware          string          `json:"Hardware"`
	Vendor            string          `json:"Vendor"`
	DevID             string          `json:"DevID"`
	CompatibleVersion json.RawMessage `json:"CompatibleVersion"`
}

// trailingComma matches the commas before a closing bracket that some
// packagers leave in InstallDesc.
var trailingComma = regexp.MustCompile(`,\s*([\]}])`)

// ParseInstallDesc decodes an InstallDesc file, tolerating a UTF-8 byte
// order mark and trailing commas.
func ParseInstallDesc(b []byte) (*InstallDesc, error) {
	var d InstallDesc
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if err := json.Unmarshal(b, &d); err != nil {
		if err2 := json.Unmarshal(trailingComma.ReplaceAll(b, []byte("$1")), &d); err2 != nil {
			return nil, fmt.Errorf("xiongmai: InstallDesc: %w", err)
		}
	}
	if len(d.UpgradeCommand) > maxCommands {
		return nil, fmt.Errorf("xiongmai: InstallDesc: %d commands, more than %d", len(d.UpgradeCommand), maxCommands)
	}
	return &d, nil
}

// FlashPart is one partition of the flash map.
type FlashPart struct {
	File    string `json:"file"`
	Command string `json:"command"`
	Name    string `json:"name"`
	Start   string `json:"start"` // uImage load address: flash offset where the partition starts
	End     string `json:"end"`   // uImage entry point: flash offset where it ends
	Size    uint32 `json:"size"`  // payload bytes in the package
	start   uint32
	end     uint32
}

// Format declares the XiongMai package.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindVendor,
	Doc: "XiongMai (XMEye) firmware package: a zip holding an InstallDesc JSON (UpgradeCommand list, " +
		"Hardware, Vendor) and uImage-wrapped partitions (u-boot, romfs-x.cramfs.img, user-x.cramfs.img, " +
		"web-x.cramfs.img, mtd-x.jffs2.img, ...). The uImage load and entry fields give each partition's " +
		"flash start and end: the flash map goes in the chunk's meta. All entries are extracted.",
	Magics:   []firmware.Magic{{Bytes: []byte("PK\x03\x04")}},
	Identify: identify,
	Extract:  extract,
}

func findDesc(zr *stdzip.Reader) *stdzip.File {
	for _, f := range zr.File {
		if f.Name == "InstallDesc" {
			return f
		}
	}
	return nil
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	ext, zr, err := zip.IdentifyAt(r, off, size, []byte("PK\x03\x04"))
	if err != nil {
		return nil, fmt.Errorf("xiongmai: %w", err)
	}
	df := findDesc(zr)
	if df == nil {
		return nil, fmt.Errorf("xiongmai: zip without InstallDesc: %w", firmware.ErrNotFormat)
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       ext.Size,
		Format:     formatName,
		Confidence: firmware.ConfidenceMedium,
		Meta:       map[string]any{"entries": len(zr.File)},
	}
	b, err := zip.ReadSmall(df, maxInstallDesc)
	if err != nil {
		c.Warnings = append(c.Warnings, fmt.Sprintf("InstallDesc: %v", err))
		c.Desc = "XiongMai firmware package (unreadable InstallDesc)"
		return c, nil
	}
	desc, err := ParseInstallDesc(b)
	if err != nil {
		c.Warnings = append(c.Warnings, err.Error())
		c.Desc = "XiongMai firmware package (unparsable InstallDesc)"
		return c, nil
	}
	c.Confidence = firmware.ConfidenceHigh
	for k, v := range map[string]string{"hardware": desc.Hardware, "vendor": desc.Vendor, "dev_id": desc.DevID} {
		if v != "" {
			c.Meta[k] = v
		}
	}
	files := map[string]*stdzip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
	}
	var flash []FlashPart
	for _, cmd := range desc.UpgradeCommand {
		if cmd.FileName == "" {
			continue
		}
		f := files[cmd.FileName]
		if f == nil {
			c.Warnings = append(c.Warnings, fmt.Sprintf("InstallDesc names %q, not in the package", cmd.FileName))
			continue
		}
		h, ok := dahua.UImageHeader(f)
		if !ok {
			continue
		}
		flash = append(flash, FlashPart{File: cmd.FileName, Command: cmd.Command, Name: h.Name,
			Start: fmt.Sprintf("%#08x", h.Load), End: fmt.Sprintf("%#08x", h.Entry), Size: h.DataSize,
			start: h.Load, end: h.Entry})
	}
	sort.SliceStable(flash, func(i, j int) bool { return flash[i].start < flash[j].start })
	for i := range flash {
		p := flash[i]
		if p.end < p.start {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: flash end %s before start %s", p.File, p.End, p.Start))
		} else if p.Size > p.end-p.start {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: %d bytes do not fit its flash partition %s-%s", p.File, p.Size, p.Start, p.End))
		}
		if i > 0 && p.start < flash[i-1].end {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s overlaps %s in flash", p.File, flash[i-1].File))
		}
	}
	if len(flash) > 0 {
		c.Meta["flash_map"] = flash
	}
	c.Desc = fmt.Sprintf("XiongMai firmware package for %q, %d entries, %d partitions in the flash map", desc.Hardware, len(zr.File), len(flash))
	return c, nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	zr, err := zip.Open(src, src.Size())
	if err != nil {
		return fmt.Errorf("xiongmai: %w", err)
	}
	return zip.ExtractFiles(ctx, zr, out, formatName)
}

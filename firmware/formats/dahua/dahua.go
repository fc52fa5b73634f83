// Package dahua reads Dahua camera and recorder firmware packages: zip
// archives whose first local header starts "DH\x03\x04" instead of
// "PK\x03\x04" (the central directory is standard). The entries (Install or
// Install.lua, check.img/sign.img, kernel.img, romfs-x.squashfs.img, ...)
// are extracted; most are U-Boot legacy images around squashfs or cramfs and
// are unpacked further by recursion. Their uImage headers are listed in
// Chunk.Meta.
package dahua

import (
	stdzip "archive/zip"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/uimage"
	"github.com/cordon-vms/cordon/firmware/formats/zip"
)

const formatName = "dahua"

// maxListed bounds the partitions listed in Chunk.Meta.
const maxListed = 256

// Format declares the Dahua "DH" zip package.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindVendor,
	Doc: "Dahua firmware package: a zip whose first local header is patched to \"DH\\x03\\x04\" (or, in newer " +
		"packages, a plain zip with an Install.lua script and uImage partitions). " +
		"Identified by its standard central directory; the install script (Install, Install.lua) and " +
		"each uImage-wrapped partition (name, type, load address, size) are listed in the chunk's meta. " +
		"All entries are extracted; the partitions (squashfs, cramfs, kernel) are unpacked by recursion.",
	Magics:   []firmware.Magic{{Bytes: []byte("DH\x03\x04")}, {Bytes: []byte("PK\x03\x04")}},
	Identify: identify,
	Extract:  extract,
}

// Partition is a uImage-wrapped entry of a vendor package.
type Partition struct {
	File  string `json:"file"`
	Name  string `json:"name"`
	Type  string `json:"type"`
	Load  string `json:"load"`
	Entry string `json:"entry"`
	Size  uint32 `json:"size"`
}

// UImageHeader reads the legacy uImage header at the start of f, if there is
// one with a valid CRC.
func UImageHeader(f *stdzip.File) (*uimage.Header, bool) {
	if f.UncompressedSize64 < uimage.HeaderSize {
		return nil, false
	}
	rc, err := f.Open()
	if err != nil {
		return nil, false
	}
	defer rc.Close()
	var b [uimage.HeaderSize]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return nil, false
	}
	h, err := uimage.ParseHeader(b[:])
	if err != nil || !h.CRCValid {
		return nil, false
	}
	return h, true
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	var sig [4]byte
	if size-off < 4 {
		return nil, fmt.Errorf("dahua: %w", firmware.ErrNotFormat)
	}
	if _, err := r.ReadAt(sig[:], off); err != nil {
		return nil, fmt.Errorf("dahua: %w", err)
	}
	patched := string(sig[:]) == "DH\x03\x04"
	if !patched && string(sig[:]) != "PK\x03\x04" {
		return nil, fmt.Errorf("dahua: signature %q: %w", sig[:], firmware.ErrNotFormat)
	}
	ext, zr, err := zip.IdentifyAt(r, off, size, sig[:])
	if err != nil {
		return nil, fmt.Errorf("dahua: %w", err)
	}
	meta := map[string]any{"entries": len(zr.File)}
	var parts []Partition
	var install []string
	for _, f := range zr.File {
		base := path.Base(f.Name)
		if strings.EqualFold(base, "Install") || strings.EqualFold(base, "Install.lua") {
			install = append(install, f.Name)
		}
		if len(parts) >= maxListed {
			continue
		}
		if h, ok := UImageHeader(f); ok {
			parts = append(parts, Partition{File: f.Name, Name: h.Name, Type: h.TypeName(),
				Load: fmt.Sprintf("%#08x", h.Load), Entry: fmt.Sprintf("%#08x", h.Entry), Size: h.DataSize})
		}
	}
	if !patched && (len(install) == 0 || len(parts) == 0) {
		// A plain zip is a Dahua package only with its install script and
		// uImage-wrapped partitions (newer packages dropped the DH patch).
		return nil, fmt.Errorf("dahua: plain zip without Install script and uImage partitions: %w", firmware.ErrNotFormat)
	}
	meta["dh_header"] = patched
	if len(install) > 0 {
		meta["install_script"] = install
	}
	if len(parts) > 0 {
		meta["partitions"] = parts
	}
	c := &firmware.Chunk{
		Offset:     off,
		Size:       ext.Size,
		Format:     formatName,
		Desc:       fmt.Sprintf("Dahua firmware package (%s zip), %d entries, %d uImage partitions", map[bool]string{true: "DH", false: "PK"}[patched], len(zr.File), len(parts)),
		Confidence: firmware.ConfidenceHigh,
		Meta:       meta,
	}
	if len(install) == 0 {
		c.Warnings = append(c.Warnings, "no Install or Install.lua script")
	}
	return c, nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	zr, err := zip.Open(src, src.Size())
	if err != nil {
		return fmt.Errorf("dahua: %w", err)
	}
	return zip.ExtractFiles(ctx, zr, out, formatName)
}

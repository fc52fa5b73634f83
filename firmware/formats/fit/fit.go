// Package fit reads U-Boot Flattened Image Tree (FIT) images: a device tree
// blob whose /images node holds kernels, ramdisks, device trees and firmware,
// either embedded ("data") or placed after the blob ("data-offset" or
// "data-position" with "data-size", from mkimage -E). Each image is extracted
// under its node name, its hash nodes (crc32, md5, sha1, sha256) verified.
package fit

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/dtb"
)

const formatName = "fit"

// maxImages bounds the images listed and extracted.
const maxImages = 256

// Format declares the FIT image.
var Format = &firmware.Format{
	Name: formatName,
	Kind: firmware.KindContainer,
	Doc: "U-Boot FIT image (mkimage -f): a device tree blob with an /images node. Each image " +
		"(kernel, ramdisk, fdt, firmware, ...) is extracted under its node name, whether embedded or " +
		"stored after the blob (mkimage -E); its description, type, arch, OS, compression, load and entry " +
		"go in the chunk's meta and its hash nodes (crc32, md5, sha1, sha256) are verified.",
	Magics:   []firmware.Magic{{Bytes: []byte{0xd0, 0x0d, 0xfe, 0xed}}},
	Identify: identify,
	Extract:  extract,
}

// Image is one entry of /images.
type Image struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Type        string `json:"type,omitempty"`
	Arch        string `json:"arch,omitempty"`
	OS          string `json:"os,omitempty"`
	Compression string `json:"compression,omitempty"`
	Load        string `json:"load,omitempty"`
	Entry       string `json:"entry,omitempty"`
	Size        int64  `json:"size"`
	External    bool   `json:"external,omitempty"`
	off         int64  // data offset relative to the chunk start
	hashes      []hashSpec
}

type hashSpec struct {
	algo  string
	value []byte
}

// images lists the images of t, whose blob is followed by external data at
// extBase (relative to the chunk start).
func images(t *dtb.Tree) ([]Image, []string, error) {
	imgs := t.Root.Child("images")
	if imgs == nil || len(imgs.Children) == 0 {
		return nil, nil, fmt.Errorf("fit: no /images node: %w", firmware.ErrNotFormat)
	}
	extBase := (int64(t.Header.TotalSize) + 3) &^ 3
	var out []Image
	var warns []string
	for _, n := range imgs.Children {
		if len(out) >= maxImages {
			warns = append(warns, fmt.Sprintf("more than %d images; the rest are ignored", maxImages))
			break
		}
		im := Image{
			Name:        n.Name,
			Description: n.Prop("description").String(),
			Type:        n.Prop("type").String(),
			Arch:        n.Prop("arch").String(),
			OS:          n.Prop("os").String(),
			Compression: n.Prop("compression").String(),
		}
		if v, ok := n.Prop("load").Uint(); ok {
			im.Load = fmt.Sprintf("%#x", v)
		}
		if v, ok := n.Prop("entry").Uint(); ok {
			im.Entry = fmt.Sprintf("%#x", v)
		}
		if d := n.Prop("data"); d != nil {
			im.off, im.Size = d.Off, d.Len
		} else {
			size, okSize := n.Prop("data-size").Uint()
			if pos, ok := n.Prop("data-position").Uint(); ok && okSize {
				im.off, im.Size, im.External = int64(pos), int64(size), true
			} else if off, ok := n.Prop("data-offset").Uint(); ok && okSize {
				im.off, im.Size, im.External = extBase+int64(off), int64(size), true
			} else {
				warns = append(warns, fmt.Sprintf("image %s has no data", n.Name))
				continue
			}
			if im.off < 0 || im.Size < 0 || im.off > 1<<40 || im.Size > 1<<40 {
				warns = append(warns, fmt.Sprintf("image %s: data at %#x+%#x out of range", n.Name, im.off, im.Size))
				continue
			}
		}
		for _, h := range n.Children {
			algo, val := h.Prop("algo").String(), h.Prop("value")
			if algo != "" && val != nil {
				im.hashes = append(im.hashes, hashSpec{algo: algo, value: val.Value})
			}
		}
		out = append(out, im)
	}
	if len(out) == 0 {
		return nil, warns, fmt.Errorf("fit: /images holds no image data: %w", firmware.ErrNotFormat)
	}
	return out, warns, nil
}

func identify(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
	t, err := dtb.Parse(r, off, size)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	ims, warns, err := images(t)
	if err != nil {
		return nil, err
	}
	c := &firmware.Chunk{
		Offset:     off,
		Format:     formatName,
		Confidence: firmware.ConfidenceHigh,
		Warnings:   warns,
	}
	end := int64(t.Header.TotalSize)
	for i := range ims {
		im := &ims[i]
		if e := im.off + im.Size; e > size-off {
			c.Warnings = append(c.Warnings, fmt.Sprintf("image %s: data runs past the end of the image", im.Name))
			im.Size = max(size-off-im.off, 0)
		}
		end = max(end, im.off+im.Size)
	}
	c.Size = min(end, size-off)
	meta := map[string]any{"images": ims}
	if d := t.Root.Prop("description").String(); d != "" {
		meta["description"] = d
	}
	if cf := t.Root.Child("configurations"); cf != nil {
		if d := cf.Prop("default").String(); d != "" {
			meta["default_configuration"] = d
		}
		var confs []map[string]string
		for _, n := range cf.Children {
			if len(confs) >= maxImages {
				break
			}
			conf := map[string]string{"name": n.Name}
			for _, k := range []string{"description", "kernel", "ramdisk", "fdt", "firmware", "loadables"} {
				if v := n.Prop(k).String(); v != "" {
					conf[k] = v
				}
			}
			if n.Child("signature-1") != nil || n.Child("signature") != nil {
				conf["signed"] = "yes"
			}
			confs = append(confs, conf)
		}
		if len(confs) > 0 {
			meta["configurations"] = confs
		}
	}
	c.Meta = meta
	c.Desc = fmt.Sprintf("FIT image %q, %d images", t.Root.Prop("description").String(), len(ims))
	return c, nil
}

func newHash(algo string) hash.Hash {
	switch algo {
	case "crc32":
		return crc32.NewIEEE()
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	}
	return nil
}

func extract(ctx context.Context, src *io.SectionReader, _ *firmware.Chunk, out firmware.Sink) error {
	t, err := dtb.Parse(src, 0, src.Size())
	if err != nil {
		return fmt.Errorf("fit: %w", err)
	}
	ims, warns, err := images(t)
	if err != nil {
		return err
	}
	for _, w := range warns {
		out.Warn("fit: " + w)
	}
	for _, im := range ims {
		if err := ctx.Err(); err != nil {
			return err
		}
		if im.off >= src.Size() {
			out.Warn(fmt.Sprintf("fit: image %s: data outside the chunk", im.Name))
			continue
		}
		n := min(im.Size, src.Size()-im.off)
		var hs []hash.Hash
		var ws []io.Writer
		var specs []hashSpec
		for _, h := range im.hashes {
			if hh := newHash(h.algo); hh != nil {
				hs, ws, specs = append(hs, hh), append(ws, hh), append(specs, h)
			}
		}
		var r io.Reader = io.NewSectionReader(src, im.off, n)
		if len(ws) > 0 {
			r = io.TeeReader(r, io.MultiWriter(ws...))
		}
		cr := &counter{r: r}
		hdr := &firmware.Header{Name: im.Name, Type: firmware.TypeFile, Mode: 0o644, Size: n}
		if err := out.Add(hdr, cr); err != nil {
			return fmt.Errorf("fit: image %s: %w", im.Name, err)
		}
		if cr.n != im.Size {
			continue // cut short: nothing to verify
		}
		for i, h := range hs {
			got := h.Sum(nil)
			want := specs[i].value
			// crc32's Sum is big-endian, as the FIT value cell.
			if !bytes.Equal(got, want) {
				out.Warn(fmt.Sprintf("fit: image %s: %s %x, node says %x", im.Name, specs[i].algo, got, want))
			}
		}
	}
	return nil
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

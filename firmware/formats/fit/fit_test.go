package fit

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestFIT(t *testing.T) {
	var kernels [][]byte
	for _, name := range []string{"fit.itb", "fit-external.itb"} {
		t.Run(name, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, name)
			img := append(append(bytes.Repeat([]byte{0xff}, 256), data...), bytes.Repeat([]byte{0xff}, 256)...)
			res := firmwaretest.MustRun(t, Format, img, 256)
			c, s := res.Chunk, res.Sink
			if c.Size != int64(len(data)) || len(c.Warnings) != 0 {
				t.Errorf("chunk size %d (want %d), warnings %v", c.Size, len(data), c.Warnings)
			}
			confs := c.Meta["configurations"].([]map[string]string)
			if len(confs) != 1 || confs[0]["kernel"] != "kernel-1" || confs[0]["fdt"] != "fdt-1" || confs[0]["ramdisk"] != "ramdisk-1" {
				t.Errorf("configurations %v", confs)
			}
			if c.Meta["default_configuration"] != "conf-1" || c.Meta["description"] != "Cordon test camera FIT" {
				t.Errorf("meta %v", c.Meta)
			}
			ims := c.Meta["images"].([]Image)
			if len(ims) != 3 || ims[0].Name != "kernel-1" || ims[0].Load != "0x80008000" || ims[0].Compression != "gzip" || ims[2].Type != "flat_dt" {
				t.Errorf("images %+v", ims)
			}
			if len(s.Warnings) != 0 {
				t.Errorf("hash warnings %v", s.Warnings)
			}
			if got := s.Names(); len(got) != 3 || got[0] != "fdt-1" || got[1] != "kernel-1" || got[2] != "ramdisk-1" {
				t.Errorf("names %v", got)
			}
			k, _ := s.File("kernel-1")
			if !bytes.HasPrefix(k, []byte{0x1f, 0x8b}) {
				t.Errorf("kernel-1 is not the gzip stream: % x", k[:min(4, len(k))])
			}
			kernels = append(kernels, k)
			if d, _ := s.File("fdt-1"); !bytes.HasPrefix(d, []byte{0xd0, 0x0d, 0xfe, 0xed}) {
				t.Errorf("fdt-1 is not a device tree")
			}
		})
	}
	if len(kernels) == 2 && !bytes.Equal(kernels[0], kernels[1]) {
		t.Errorf("embedded and external kernels differ")
	}
}

func TestHashMismatch(t *testing.T) {
	data := bytes.Clone(firmwaretest.ReadFixture(t, "fit-external.itb"))
	data[len(data)-8] ^= 0xff // in the last external image
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	if len(res.Sink.Warnings) != 1 {
		t.Errorf("warnings %v, want one hash mismatch", res.Sink.Warnings)
	}
	// Cut inside the external data: identified, clamped, warned.
	res, err = firmwaretest.Run(Format, data[:len(data)-100], 0)
	if err != nil || res.Chunk == nil || len(res.Chunk.Warnings) == 0 {
		t.Errorf("truncated: %v %+v", err, res.Chunk)
	}
}

func TestPlainDTBIsNotFIT(t *testing.T) {
	d := firmwaretest.ReadFixture(t, "../../dtb/testdata/dtb.dtb")
	if _, err := Format.Identify(bytes.NewReader(d), 0, int64(len(d))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("plain dtb: %v", err)
	}
}

func FuzzFIT(f *testing.F) {
	for _, name := range []string{"fit.itb", "fit-external.itb"} {
		f.Add(firmwaretest.ReadFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

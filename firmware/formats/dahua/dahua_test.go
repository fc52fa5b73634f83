package dahua

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats/uimage"
)

func TestPackage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "dahua.bin")
	res := firmwaretest.MustRun(t, Format, data, 0)
	c, s := res.Chunk, res.Sink
	if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || len(c.Warnings) != 0 {
		t.Errorf("chunk %+v", c)
	}
	if got := c.Meta["install_script"].([]string); len(got) != 1 || got[0] != "Install.lua" {
		t.Errorf("install script %v", got)
	}
	parts := c.Meta["partitions"].([]Partition)
	want := []Partition{
		{File: "kernel.img", Name: "kernel", Type: "kernel", Load: "0x80008000", Entry: "0x80008000"},
		{File: "romfs-x.squashfs.img", Name: "romfs", Type: "filesystem", Load: "0x00580000", Entry: "0x00f80000"},
		{File: "web-x.squashfs.img", Name: "web", Type: "filesystem", Load: "0x00f80000", Entry: "0x01380000"},
	}
	if len(parts) != len(want) {
		t.Fatalf("partitions %+v", parts)
	}
	for i := range want {
		want[i].Size = parts[i].Size
		if parts[i] != want[i] || parts[i].Size == 0 {
			t.Errorf("partition %d = %+v, want %+v", i, parts[i], want[i])
		}
	}
	if got := s.Names(); len(got) != 5 {
		t.Errorf("entries %v", got)
	}
	romfs, _ := s.File("romfs-x.squashfs.img")
	h, err := uimage.ParseHeader(romfs)
	if err != nil || !h.CRCValid || !bytes.HasPrefix(romfs[uimage.HeaderSize:], []byte("hsqs")) {
		t.Errorf("romfs partition is not a uImage-wrapped squashfs: %v", err)
	}
}

func TestPlainZip(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "dahua.bin")
	// The same package without the DH patch, as newer firmware ships it.
	d := bytes.Clone(data)
	copy(d, "PK")
	res := firmwaretest.MustRun(t, Format, d, 0)
	if res.Chunk.Meta["dh_header"] != false || len(res.Sink.Entries) != 5 {
		t.Errorf("plain Dahua zip: %+v", res.Chunk)
	}
	// An ordinary zip is not a Dahua package.
	z, err := os.ReadFile("../zip/testdata/zip-deflate.zip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Format.Identify(bytes.NewReader(z), 0, int64(len(z))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("plain zip identified as dahua: %v", err)
	}
}

func FuzzDahua(f *testing.F) {
	firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "dahua.bin")...)
}

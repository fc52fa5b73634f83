package xiongmai

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestPackage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "xiongmai.zip")
	res := firmwaretest.MustRun(t, Format, data, 0)
	c := res.Chunk
	if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || len(c.Warnings) != 0 {
		t.Errorf("chunk %+v", c)
	}
	if c.Meta["hardware"] != "HI3518EV200_50H10L_S38" || c.Meta["vendor"] != "General" {
		t.Errorf("meta %v", c.Meta)
	}
	fm := c.Meta["flash_map"].([]FlashPart)
	want := []struct{ file, start, end string }{
		{"u-boot.bin.img", "0x00000000", "0x00040000"},
		{"uImage.img", "0x00040000", "0x00330000"},
		{"romfs-x.cramfs.img", "0x00330000", "0x00640000"},
		{"web-x.cramfs.img", "0x00640000", "0x00800000"},
	}
	if len(fm) != len(want) {
		t.Fatalf("flash map %+v", fm)
	}
	for i, w := range want {
		if fm[i].File != w.file || fm[i].Start != w.start || fm[i].End != w.end || fm[i].Command != "Burn" || fm[i].Size == 0 {
			t.Errorf("flash map %d = %+v, want %+v", i, fm[i], w)
		}
	}
	if n := len(res.Sink.Names()); n != 5 {
		t.Errorf("entries %v", res.Sink.Names())
	}
}

func TestParseInstallDesc(t *testing.T) {
	d := &InstallDesc{}
	if err := jsonRoundTrip(`{"UpgradeCommand":[{"Command":"Burn","FileName":"x"}],"Hardware":"h"}`, d); err != nil {
		t.Fatal(err)
	}
	lax := "\xef\xbb\xbf{\"UpgradeCommand\":[{\"Command\":\"Burn\",\"FileName\":\"x\",},],\"Hardware\":\"h\",}"
	if d, err := ParseInstallDesc([]byte(lax)); err != nil || len(d.UpgradeCommand) != 1 || d.Hardware != "h" {
		t.Errorf("BOM and trailing commas: %v %+v", err, d)
	}
	if _, err := ParseInstallDesc([]byte(`{"UpgradeCommand": 3}`)); err == nil {
		t.Error("bad InstallDesc accepted")
	}
	many := `{"UpgradeCommand":[` + string(bytes.Repeat([]byte(`{},`), 300)) + `{}]}`
	if _, err := ParseInstallDesc([]byte(many)); err == nil {
		t.Error("300 commands accepted")
	}
}

func jsonRoundTrip(s string, d *InstallDesc) error {
	x, err := ParseInstallDesc([]byte(s))
	if err != nil {
		return err
	}
	*d = *x
	if len(d.UpgradeCommand) != 1 || d.UpgradeCommand[0].FileName != "x" || d.Hardware != "h" {
		return errors.New("fields not decoded")
	}
	return nil
}

func TestPlainZipIsNotXiongMai(t *testing.T) {
	zipData, err := os.ReadFile("../zip/testdata/zip-deflate.zip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Format.Identify(bytes.NewReader(zipData), 0, int64(len(zipData))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("plain zip: %v", err)
	}
}

func FuzzInstallDesc(f *testing.F) {
	f.Add([]byte(`{"UpgradeCommand":[{"Command":"Burn","FileName":"romfs-x.cramfs.img"}],"Hardware":"HI3518"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseInstallDesc(b)
		if err == nil && len(d.UpgradeCommand) > maxCommands {
			t.Fatal("too many commands accepted")
		}
	})
}

func FuzzXiongMai(f *testing.F) {
	firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "xiongmai.zip")...)
}

package hikvision

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats/uimage"
)

func TestXORKnownMagics(t *testing.T) {
	for plain, enc := range map[string][]byte{"SWKH": magicSWKH, "02KH": magic02KH, "03KH": magic03KH, "USKH": magicHKSUXor} {
		b := []byte(plain)
		XOR(b, 0)
		if !bytes.Equal(b, enc) {
			t.Errorf("%s obfuscates to % x, want % x", plain, b, enc)
		}
		XOR(b, 0)
		if string(b) != plain {
			t.Errorf("XOR is not its own inverse for %s", plain)
		}
	}
}

func TestSWKH(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "hikvision-dav-swkh.dav")
	img := append(append([]byte("junk"), data...), 0xff, 0xff)
	res := firmwaretest.MustRun(t, Format, img, 4)
	c, s := res.Chunk, res.Sink
	if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || c.Encrypted || len(c.Warnings) != 0 {
		t.Errorf("chunk %+v", c)
	}
	if c.Meta["version"] != "V5.5.0 build 170725" || c.Meta["device"] != uint32(2) {
		t.Errorf("meta %v", c.Meta)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings %v", s.Warnings)
	}
	if got := s.Names(); len(got) != 3 || got[0] != "_cfgUpgClass" || got[1] != "app.img" || got[2] != "uImage" {
		t.Errorf("names %v", got)
	}
	if b, _ := s.File("_cfgUpgClass"); string(b) != "class=IPC\n" {
		t.Errorf("_cfgUpgClass %q", b)
	}
	if b, _ := s.File("uImage"); len(b) < uimage.HeaderSize {
		t.Errorf("uImage %d bytes", len(b))
	} else if h, err := uimage.ParseHeader(b); err != nil || !h.CRCValid || h.Name != "Linux-3.18.20" {
		t.Errorf("uImage header %+v %v", h, err)
	}
	if b, _ := s.File("app.img"); !bytes.HasPrefix(b, []byte("hsqs")) {
		t.Errorf("app.img is not a squashfs")
	}
}

func TestSWKHDamage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "hikvision-dav-swkh.dav")
	// A flipped content byte: a checksum warning on that file only.
	d := bytes.Clone(data)
	d[len(d)-1] ^= 0x55
	res, err := firmwaretest.Run(Format, d, 0)
	if err != nil || res.ExtractErr != nil || len(res.Sink.Warnings) != 1 {
		t.Errorf("content damage: %v %v %v", err, res.ExtractErr, res.Sink.Warnings)
	}
	// A flipped byte in the header's version string: header checksum warning.
	d = bytes.Clone(data)
	d[0x30] ^= 0x01
	res, _ = firmwaretest.Run(Format, d, 0)
	if res.Chunk == nil || res.Chunk.Confidence != firmware.ConfidenceMedium || len(res.Chunk.Warnings) != 1 {
		t.Errorf("header damage: %+v", res.Chunk)
	}
	// Truncated: the extent is clamped and the last file is cut.
	res, _ = firmwaretest.Run(Format, data[:len(data)-100], 0)
	if res.Chunk == nil || len(res.Chunk.Warnings) != 1 || len(res.Sink.Warnings) != 1 {
		t.Errorf("truncated: %+v %v", res.Chunk, res.Sink.Warnings)
	}
	// A file count that does not match the header length.
	d = bytes.Clone(data)
	d[12] ^= 0x07
	if _, err := Format.Identify(bytes.NewReader(d), 0, int64(len(d))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("bad count: %v", err)
	}
}

func TestEncrypted(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "hikvision-dav-03kh.dav")
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.IdentifyErr != nil {
		t.Fatal(err, res.IdentifyErr)
	}
	c := res.Chunk
	if !c.Encrypted || c.Meta["magic"] != "03KH" || c.Meta["file_count"] != uint32(3) || c.Size != int64(len(data)) {
		t.Errorf("chunk %+v", c)
	}
	if len(res.Sink.Entries) != 0 {
		t.Errorf("encrypted package extracted %v", res.Sink.Names())
	}
}

// TestHKSU builds the first words of an HKSU package (plain "USKH" magic, a
// 128-byte header and two 96-byte entries) in front of opaque bytes.
func TestHKSU(t *testing.T) {
	b := make([]byte, 2048)
	copy(b, "USKH")
	binary.LittleEndian.PutUint32(b[8:], 0x80+2*96)
	binary.LittleEndian.PutUint32(b[12:], 2)
	for i := 16; i < len(b); i++ {
		b[i] = byte(i*131 + i>>3)
	}
	res, err := firmwaretest.Run(Format, b, 0)
	if err != nil || res.Chunk == nil {
		t.Fatal(err, res.IdentifyErr)
	}
	if c := res.Chunk; !c.Encrypted || c.Meta["magic"] != "HKSU" || c.Meta["file_count"] != uint32(2) || c.Size != int64(len(b)) {
		t.Errorf("chunk %+v", c)
	}
}

func TestEncryptedHeaderWords(t *testing.T) {
	data := bytes.Clone(firmwaretest.ReadFixture(t, "hikvision-dav-03kh.dav"))
	copy(data[8:16], []byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef}) // unreadable length and count
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.Chunk == nil || !res.Chunk.Encrypted || res.Chunk.Confidence != firmware.ConfidenceLow {
		t.Errorf("at file start: %v %+v", err, res.Chunk)
	}
	img := append([]byte("prefix"), data...)
	if _, err := Format.Identify(bytes.NewReader(img), 6, int64(len(img))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("inside an image: %v", err)
	}
}

func FuzzHikvision(f *testing.F) {
	firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "*.dav")...)
}

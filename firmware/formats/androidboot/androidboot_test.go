package androidboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestImages(t *testing.T) {
	for _, tt := range []struct {
		file     string
		version  uint32
		sections []string
	}{
		{"androidboot-v0.img", 0, []string{"kernel", "ramdisk", "second"}},
		{"androidboot-v2.img", 2, []string{"kernel", "ramdisk", "dtb"}},
		{"androidboot-v3.img", 3, []string{"kernel", "ramdisk"}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			img := append(append(bytes.Repeat([]byte{0}, 512), data...), bytes.Repeat([]byte{0xff}, 512)...)
			res := firmwaretest.MustRun(t, Format, img, 512)
			c, s := res.Chunk, res.Sink
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || c.Meta["header_version"] != tt.version {
				t.Errorf("chunk %+v", c)
			}
			if c.Meta["os_version"] != "11.0.0 (patch level 2023-11)" {
				t.Errorf("os version %v", c.Meta["os_version"])
			}
			if len(s.Entries) != len(tt.sections) {
				t.Fatalf("sections %v", s.Names())
			}
			for i, name := range tt.sections {
				if s.Entries[i].Header.Name != name {
					t.Errorf("section %d = %s, want %s", i, s.Entries[i].Header.Name, name)
				}
			}
			if k, _ := s.File("kernel"); !bytes.HasPrefix(k, []byte{0x1f, 0x8b}) {
				t.Errorf("kernel is not the gzip stream")
			}
			if r, _ := s.File("ramdisk"); !bytes.HasPrefix(r, []byte("070701")) {
				t.Errorf("ramdisk is not the cpio archive")
			}
			if d, ok := s.File("dtb"); ok && !bytes.HasPrefix(d, []byte{0xd0, 0x0d, 0xfe, 0xed}) {
				t.Errorf("dtb is not a device tree")
			}
		})
	}
}

func TestV0Fields(t *testing.T) {
	res, err := firmwaretest.Run(Format, firmwaretest.ReadFixture(t, "androidboot-v0.img"), 0)
	if err != nil || res.Chunk == nil {
		t.Fatal(err, res.IdentifyErr)
	}
	m := res.Chunk.Meta
	if m["name"] != "camera" || m["cmdline"] != "console=ttyS0 androidboot.hardware=cam" || m["page_size"] != uint32(2048) {
		t.Errorf("meta %v", m)
	}
	if a := m["addresses"].(map[string]string); a["kernel"] != "0x10008000" {
		t.Errorf("addresses %v", a)
	}
}

// TestV4 builds a v4 header by the AOSP layout (Debian's mkbootimg stops at v3).
func TestV4(t *testing.T) {
	b := make([]byte, 4096*5)
	copy(b, magic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], 5000) // kernel: 2 pages
	le.PutUint32(b[12:], 100) // ramdisk: 1 page
	le.PutUint32(b[20:], 1584)
	le.PutUint32(b[40:], 4)
	copy(b[44:], "console=ttyS0")
	le.PutUint32(b[1580:], 16) // signature: 1 page, unpadded at the end
	b = b[:4096*4+16]
	copy(b[4096:], "KERNEL")
	copy(b[3*4096:], "RAMDISK")
	copy(b[4*4096:], "SIGNATURE-BYTES!")
	res := firmwaretest.MustRun(t, Format, b, 0)
	if res.Chunk.Size != int64(len(b)) {
		t.Errorf("size %d, want %d", res.Chunk.Size, len(b))
	}
	if sig, _ := res.Sink.File("boot_signature"); string(sig) != "SIGNATURE-BYTES!" {
		t.Errorf("signature %q", sig)
	}
	if r, _ := res.Sink.File("ramdisk"); len(r) != 100 || !bytes.HasPrefix(r, []byte("RAMDISK")) {
		t.Errorf("ramdisk %q", r)
	}
}

func TestHostile(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "androidboot-v2.img")
	d := bytes.Clone(data)
	binary.LittleEndian.PutUint32(d[36:], 3000) // page size not a power of two
	if _, err := Format.Identify(bytes.NewReader(d), 0, int64(len(d))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("bad page size: %v", err)
	}
	d = bytes.Clone(data)
	binary.LittleEndian.PutUint32(d[16:], 0xffffffff) // huge ramdisk
	res, err := firmwaretest.Run(Format, d, 0)
	if err != nil || res.Chunk == nil || len(res.Chunk.Warnings) != 1 || len(res.Sink.Warnings) == 0 {
		t.Errorf("huge ramdisk: %v %+v %v", err, res.Chunk, res.Sink.Warnings)
	}
}

func FuzzAndroidBoot(f *testing.F) {
	firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "*.img")...)
}

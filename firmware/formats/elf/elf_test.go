package elf

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestCarve(t *testing.T) {
	for _, tt := range []struct{ file, typ string }{
		{"elf-exec.elf", "ET_DYN"},
		{"elf-object.o", "ET_REL"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			// Carve from between random-looking bytes: the extent must be exact.
			img := append(append(bytes.Repeat([]byte{0x5a}, 123), data...), bytes.Repeat([]byte{0xa5}, 4096)...)
			res, err := firmwaretest.Run(Format, img, 123)
			if err != nil || res.IdentifyErr != nil {
				t.Fatal(err, res.IdentifyErr)
			}
			c := res.Chunk
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh {
				t.Errorf("chunk size %d (want %d), %s %v", c.Size, len(data), c.Confidence, c.Warnings)
			}
			if c.Meta["class"] != "64" || c.Meta["endian"] != "little" || c.Meta["machine"] != "EM_X86_64" || c.Meta["type"] != tt.typ {
				t.Errorf("meta %v", c.Meta)
			}
			if tt.typ == "ET_DYN" {
				if in, _ := c.Meta["interpreter"].(string); !strings.HasPrefix(in, "/lib") || c.Meta["linking"] != "dynamic" || c.Meta["stripped"] != true {
					t.Errorf("executable meta %v", c.Meta)
				}
			} else if c.Meta["stripped"] != false {
				t.Errorf("object meta %v", c.Meta)
			}
		})
	}
}

func TestDamage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "elf-exec.elf")
	res, err := firmwaretest.Run(Format, data[:8000], 0)
	if err != nil || res.Chunk == nil || res.Chunk.Size != 8000 || len(res.Chunk.Warnings) != 1 {
		t.Errorf("truncated: %v %v %+v", err, res.IdentifyErr, res.Chunk)
	}
	d := bytes.Clone(data)
	d[4] = 9 // class
	if _, err := Format.Identify(bytes.NewReader(d), 0, int64(len(d))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("bad class: %v", err)
	}
	if _, err := Format.Identify(bytes.NewReader([]byte("\x7fELF")), 0, 4); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("magic only: %v", err)
	}
}

func FuzzELF(f *testing.F) {
	f.Add(firmwaretest.ReadFixture(f, "elf-object.o"))
	f.Add(firmwaretest.ReadFixture(f, "elf-exec.elf")[:4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

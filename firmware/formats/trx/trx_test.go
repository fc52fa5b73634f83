package trx

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestTRX(t *testing.T) {
	for _, tt := range []struct {
		file  string
		parts []string // expected magic prefix of each partition
	}{
		{"trx-v1.trx", []string{"\x5d\x00\x00", "\x1f\x8b", "hsqs"}},
		{"trx-v2.trx", []string{"\x1f\x8b", "hsqs"}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			img := append(append(bytes.Repeat([]byte{0xff}, 40), data...), 1, 2, 3)
			res := firmwaretest.MustRun(t, Format, img, 40)
			c, s := res.Chunk, res.Sink
			if c.Size != int64(len(data)) || c.Confidence != firmware.ConfidenceHigh || len(c.Warnings) != 0 {
				t.Errorf("chunk %+v", c)
			}
			if len(s.Entries) != len(tt.parts) {
				t.Fatalf("partitions %v", s.Names())
			}
			for i, magic := range tt.parts {
				if !bytes.HasPrefix(s.Entries[i].Data, []byte(magic)) {
					t.Errorf("partition %d starts % x, want % x", i, s.Entries[i].Data[:4], magic)
				}
			}
		})
	}
}

func TestDamage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "trx-v1.trx")
	d := bytes.Clone(data)
	d[len(d)-5] ^= 1
	res, err := firmwaretest.Run(Format, d, 0)
	if err != nil || res.Chunk == nil || res.Chunk.Confidence != firmware.ConfidenceMedium || len(res.Chunk.Warnings) != 1 {
		t.Errorf("bad CRC: %v %+v", err, res.Chunk)
	}
	res, err = firmwaretest.Run(Format, data[:2000], 0)
	if err != nil || res.Chunk == nil || res.Chunk.Size != 2000 || len(res.Chunk.Warnings) != 1 {
		t.Errorf("truncated: %v %+v", err, res.Chunk)
	}
	d = bytes.Clone(data)
	d[0x14] = 0xff // kernel offset beyond the length
	d[0x17] = 0x7f
	if _, err := Format.Identify(bytes.NewReader(d), 0, int64(len(d))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("bad offset: %v", err)
	}
}

func FuzzTRX(f *testing.F) {
	firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "trx-v1.trx", "trx-v2.trx")...)
}

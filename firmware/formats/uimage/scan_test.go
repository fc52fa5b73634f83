package uimage_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestScanComposite lays fixtures of the container, archive, vendor and carve
// formats end to end in one image, between runs of 0xff like erased flash,
// and checks that a scan with every format maps each at its offset and size.
func TestScanComposite(t *testing.T) {
	parts := []struct{ file, format string }{
		{"uimage-kernel.img", "uimage"},
		{"../../trx/testdata/trx-v1.trx", "trx"},
		{"../../fit/testdata/fit.itb", "fit"},
		{"../../dtb/testdata/dtb.dtb", "dtb"},
		{"../../androidboot/testdata/androidboot-v2.img", "androidboot"},
		{"../../dahua/testdata/dahua.bin", "dahua"},
		{"../../hikvision/testdata/hikvision-dav-swkh.dav", "hikvision-dav"},
		{"../../cpio/testdata/cpio-odc.cpio", "cpio"},
		{"../../sevenzip/testdata/7z-lzma2.7z", "7z"},
		{"../../ar/testdata/ar-lib.a", "ar"},
		{"../../elf/testdata/elf-exec.elf", "elf"},
		{"../../pem/testdata/pem-cert.pem", "pem"},
		{"../../pem/testdata/der-rsa-key.der", "der"},
	}
	var img bytes.Buffer
	type want struct {
		off, size int64
		format    string
	}
	var wants []want
	for _, p := range parts {
		b := firmwaretest.ReadFixture(t, p.file)
		img.Write(bytes.Repeat([]byte{0xff}, 4096-img.Len()%4096))
		wants = append(wants, want{int64(img.Len()), int64(len(b)), p.format})
		img.Write(b)
	}
	img.Write(bytes.Repeat([]byte{0xff}, 4096))
	rep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img.Bytes()), int64(img.Len()), firmware.Options{
		Formats: formats.All,
		Logger:  testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]*firmware.ChunkReport{}
	for _, c := range rep.Chunks {
		got[c.Offset] = c
	}
	for _, w := range wants {
		c := got[w.off]
		switch {
		case c == nil:
			t.Errorf("%s at %#x not found", w.format, w.off)
		case c.Format != w.format || c.Size != w.size:
			t.Errorf("at %#x: %s of %d bytes, want %s of %d", w.off, c.Format, c.Size, w.format, w.size)
		}
	}
	if len(rep.Chunks) != len(wants) {
		t.Errorf("%d chunks, want %d", len(rep.Chunks), len(wants))
	}
	if t.Failed() {
		for _, c := range rep.Chunks {
			t.Logf("chunk %#x %s %d", c.Offset, c.Format, c.Size)
		}
	}
}

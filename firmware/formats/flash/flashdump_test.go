package flash_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// dumpDir holds the parts of the 16 MiB flash dump and their layout.
const dumpDir = "../../../testdata/firmware/flashdump"

// assembleDump writes the flash dump to a temporary file, as assemble.sh does.
func assembleDump(t testing.TB) (string, []firmwaretest.DumpPart) {
	return firmwaretest.AssembleDump(t, dumpDir)
}

// TestFlashDump maps the camera-like 16 MiB flash dump (bootloader | uImage
// kernel | squashfs rootfs | jffs2 config, 0xFF between) and checks the exact
// chunk list and the regions between the chunks.
func TestFlashDump(t *testing.T) {
	path, parts := assembleDump(t)
	rep, err := firmware.Scan(context.Background(), path, firmware.Options{Formats: formats.All, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		off    int64
		format string
		size   int64 // 0: not checked
		desc   string
	}
	wants := []want{
		{0x040000, "uimage", parts[1].Size, "Linux-4.9.37-hi3518ev300"},
		{0x240000, "squashfs", 9374, "squashfs 4.0 filesystem, xz, 32 inodes"},
		{0xc40000, "jffs2", parts[3].Size, "JFFS2 filesystem, little-endian"},
	}
	var got []string
	for _, c := range rep.Chunks {
		got = append(got, fmt.Sprintf("%#x %s %d", c.Offset, c.Format, c.Size))
	}
	if len(rep.Chunks) != len(wants) {
		t.Fatalf("chunks:\n%s\nwant %d chunks", strings.Join(got, "\n"), len(wants))
	}
	for i, w := range wants {
		c := rep.Chunks[i]
		if c.Offset != w.off || c.Format != w.format || (w.size != 0 && c.Size != w.size) || !strings.Contains(c.Desc, w.desc) {
			t.Errorf("chunk %d = %#x %s %d %q, want %#x %s %d %q", i, c.Offset, c.Format, c.Size, c.Desc, w.off, w.format, w.size, w.desc)
		}
		if c.Confidence != firmware.ConfidenceHigh {
			t.Errorf("chunk %d (%s) confidence %s", i, c.Format, c.Confidence)
		}
	}
	// The bootloader is unknown data at 0; the rest between chunks is padding
	// (0xFF erased flash, plus mksquashfs's zero padding to 4 KiB).
	if len(rep.Unknown) == 0 || rep.Unknown[0].Offset != 0 || rep.Unknown[0].Padding != "" || rep.Unknown[0].Size < parts[0].Size-64 {
		t.Fatalf("first region = %+v, want the bootloader", rep.Unknown)
	}
	var padding int64
	for _, r := range rep.Unknown[1:] {
		if r.Padding == "" && r.Offset > parts[0].Size {
			t.Errorf("unexpected unknown data %+v", r)
		}
		padding += r.Size
	}
	var chunks int64
	for _, c := range rep.Chunks {
		chunks += c.Size
	}
	if total := rep.Unknown[0].Size + padding + chunks; total != firmwaretest.DumpSize {
		t.Errorf("chunks and regions cover %d bytes, want %d", total, firmwaretest.DumpSize)
	}
}

// TestFlashDumpUnpack unpacks the dump: the rootfs files land below
// 0x240000-squashfs.extract, the configuration files below
// 0xc40000-jffs2.extract, the kernel's gzip below the uImage's folder,
// and the manifest keeps the setuid bit the disk copy lost.
func TestFlashDumpUnpack(t *testing.T) {
	path, _ := assembleDump(t)
	out := filepath.Join(t.TempDir(), "out")
	rep, err := firmware.Unpack(context.Background(), path, out, firmware.Options{Formats: formats.All, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	passwd, err := os.ReadFile(filepath.Join(out, "0x240000-squashfs.extract", "etc", "passwd"))
	if err != nil || !strings.HasPrefix(string(passwd), "root:x:0:0:") {
		t.Fatalf("etc/passwd: %q, %v", passwd, err)
	}
	var upgrade *firmware.ManifestEntry
	for i, m := range rep.Manifest {
		if m.Path == "0x240000-squashfs.extract/usr/bin/upgrade" {
			upgrade = &rep.Manifest[i]
		}
	}
	if upgrade == nil || upgrade.Mode != "4755" {
		t.Errorf("manifest entry of usr/bin/upgrade = %+v", upgrade)
	}
	// The JFFS2 configuration partition is extracted, not carved.
	account, err := os.ReadFile(filepath.Join(out, "0xc40000-jffs2.extract", "Config", "Account1"))
	if err != nil || string(account) != "admin:21232f297a57a5a743894a0e4a801fc3\n" {
		t.Errorf("jffs2 Config/Account1: %q, %v", account, err)
	}
	if st, err := os.Stat(filepath.Join(out, "0xc40000-jffs2.extract", "Log", ".keep")); err != nil || st.Size() != 0 {
		t.Errorf("jffs2 Log/.keep: %v", err)
	}
	if len(rep.Chunks) != 3 || len(rep.Chunks[0].Children) != 1 || rep.Chunks[0].Children[0].Format != "gzip" {
		t.Errorf("chunk tree: %d chunks, uImage children %+v", len(rep.Chunks), rep.Chunks[0].Children)
	}
}

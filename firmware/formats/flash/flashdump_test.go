package flash_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// dumpDir holds the parts of the 16 MiB flash dump and their layout.
const dumpDir = "../../../testdata/firmware/flashdump"

const dumpSize = 16 << 20

type part struct {
	off  int64
	file string
	size int64
}

// assembleDump writes the flash dump to a temporary file, as assemble.sh does:
// each part at its layout.txt offset, 0xFF everywhere else.
func assembleDump(t testing.TB) (string, []part) {
	t.Helper()
	layout, err := os.Open(filepath.Join(dumpDir, "layout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer layout.Close()
	img := bytes.Repeat([]byte{0xFF}, dumpSize)
	var parts []part
	sc := bufio.NewScanner(layout)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var offs, file string
		if _, err := fmt.Sscan(line, &offs, &file); err != nil {
			t.Fatalf("layout.txt: %q: %v", line, err)
		}
		off, err := strconv.ParseInt(offs, 0, 64)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dumpDir, file))
		if err != nil {
			t.Fatal(err)
		}
		copy(img[off:], data)
		parts = append(parts, part{off, file, int64(len(data))})
	}
	path := filepath.Join(t.TempDir(), "flash.bin")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, parts
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
		{0x040000, "uimage", parts[1].size, "Linux-4.9.37-hi3518ev300"},
		{0x240000, "squashfs", 9374, "squashfs 4.0 filesystem, xz, 32 inodes"},
		{0xc40000, "jffs2", parts[3].size, "JFFS2 filesystem, little-endian"},
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
	if len(rep.Unknown) == 0 || rep.Unknown[0].Offset != 0 || rep.Unknown[0].Padding != "" || rep.Unknown[0].Size < parts[0].size-64 {
		t.Fatalf("first region = %+v, want the bootloader", rep.Unknown)
	}
	var padding int64
	for _, r := range rep.Unknown[1:] {
		if r.Padding == "" && r.Offset > parts[0].size {
			t.Errorf("unexpected unknown data %+v", r)
		}
		padding += r.Size
	}
	var chunks int64
	for _, c := range rep.Chunks {
		chunks += c.Size
	}
	if total := rep.Unknown[0].Size + padding + chunks; total != dumpSize {
		t.Errorf("chunks and regions cover %d bytes, want %d", total, dumpSize)
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

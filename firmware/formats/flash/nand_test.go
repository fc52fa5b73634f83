package flash

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// TestUBINAND builds a NAND-style UBI image (2 KiB pages, 128 KiB erase
// blocks, sub-page VID headers, two volumes) with mkfs.ubifs and ubinize,
// and checks the erase-block size, count and volume names.
func TestUBINAND(t *testing.T) {
	testutil.NeedTool(t, "mkfs.ubifs", "ubinize")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	fsImg := filepath.Join(dir, "fs.ubifs")
	if out, err := exec.Command("mkfs.ubifs", "-r", root, "-m", "2048", "-e", "126976", "-c", "40", "-o", fsImg).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ubifs: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "ubi.cfg")
	os.WriteFile(cfg, []byte("[rootfs]\nmode=ubi\nimage="+fsImg+"\nvol_id=0\nvol_type=dynamic\nvol_name=rootfs\n"+
		"[data]\nmode=ubi\nvol_id=1\nvol_type=dynamic\nvol_name=userdata\nvol_size=1MiB\nvol_flags=autoresize\n"), 0o644)
	img := filepath.Join(dir, "ubi.img")
	if out, err := exec.Command("ubinize", "-o", img, "-m", "2048", "-p", "128KiB", "-s", "512", cfg).CombinedOutput(); err != nil {
		t.Fatalf("ubinize: %v\n%s", err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dump := append(bytes.Repeat([]byte{0xFF}, 128<<10), data...)
	c, err := UBI.Identify(bytes.NewReader(dump), 128<<10, int64(len(dump)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != int64(len(data)) || c.Meta["peb_size"] != int64(128<<10) || c.Meta["vid_hdr_offset"] != uint32(512) ||
		c.Confidence != firmware.ConfidenceHigh {
		t.Fatalf("chunk = %+v", c)
	}
	vols, _ := c.Meta["volumes"].([]map[string]any)
	if len(vols) != 2 || vols[0]["name"] != "rootfs" || vols[1]["name"] != "userdata" {
		t.Fatalf("volumes %v", c.Meta["volumes"])
	}
	// Both volumes are extracted: rootfs as the mkfs.ubifs image, byte for
	// byte up to its size (the rest is unmapped, 0xFF), and the empty
	// userdata reported, not written.
	res := firmwaretest.MustRun(t, UBI, dump, 128<<10)
	vol, _ := res.Sink.File("rootfs.ubifs")
	fsImg0, _ := os.ReadFile(fsImg)
	if len(res.Sink.Entries) != 1 || !bytes.Equal(vol[:len(fsImg0)], fsImg0) || len(res.Sink.Warnings) != 1 {
		t.Fatalf("entries %v, warnings %q", res.Sink.Names(), res.Sink.Warnings)
	}
	if passwd, _ := firmwaretest.MustRun(t, UBIFS, vol, 0).Sink.File("etc/passwd"); string(passwd) != "root:x:0:0::/root:/bin/sh\n" {
		t.Fatalf("etc/passwd %q", passwd)
	}
	// The bare UBIFS image is identified too, with its NAND geometry.
	fsData, _ := os.ReadFile(fsImg)
	u, err := UBIFS.Identify(bytes.NewReader(fsData), 0, int64(len(fsData)))
	if err != nil || u.Meta["min_io_size"] != uint32(2048) || u.Meta["leb_size"] != uint32(126976) || u.Size != int64(len(fsData)) {
		t.Fatalf("ubifs: %+v %v", u, err)
	}
}

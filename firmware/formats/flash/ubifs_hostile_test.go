package flash

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// ubifs.img geometry (mkfs.ubifs -e 16256).
const fsLEB = 16256

// fixNodeCRC recomputes the CRC of the UBIFS node at b[0:].
func fixNodeCRC(b []byte) {
	n := binary.LittleEndian.Uint32(b[16:])
	binary.LittleEndian.PutUint32(b[4:], crcRaw(0xFFFFFFFF, b[8:n]))
}

// fsRoot returns the offset of ubifs.img's index root node.
func fsRoot(img []byte) int {
	mst := img[1*fsLEB:]
	return int(binary.LittleEndian.Uint32(mst[48:]))*fsLEB + int(binary.LittleEndian.Uint32(mst[52:]))
}

func TestUBIFSHostile(t *testing.T) {
	orig := firmwaretest.ReadFixture(t, "ubifs.img")
	base := firmwaretest.MustRun(t, UBIFS, orig, 0)
	if len(base.Sink.Entries) < 30 || len(base.Sink.Warnings) > 0 {
		t.Fatalf("baseline: %d entries, warnings %q", len(base.Sink.Entries), base.Sink.Warnings)
	}
	// The first data node in the image, for corruption.
	firstData := firstNodeOf(orig, ubifsDataNode, 48)
	firstDent := firstNodeOf(orig, ubifsDentNode, 56)
	for _, tc := range []struct {
		name    string
		edit    func(img []byte)
		warning string // "" with fail: Extract must fail
		fail    bool
	}{
		// mkfs.ubifs here writes no extended attributes (-a has no effect):
		// a directory entry made an extended-attribute entry stands in.
		{"xattr entry", func(img []byte) {
			img[firstDent+20] = ubifsXentNode
			kw := binary.LittleEndian.Uint32(img[firstDent+28:])
			binary.LittleEndian.PutUint32(img[firstDent+28:], kw&(1<<29-1)|ubifsKeyXent<<29)
			fixNodeCRC(img[firstDent:])
		}, "ubifs: 1 extended attributes ignored", false},
		{"index branch duplicated", func(img []byte) {
			root := img[fsRoot(img):]
			if binary.LittleEndian.Uint16(root[26:]) == 0 {
				t.Fatal("index root is a leaf level")
			}
			copy(root[28+20:28+40], root[28:48])
			fixNodeCRC(root)
		}, "index loop at LEB", false},
		{"index level wrong", func(img []byte) {
			root := img[fsRoot(img):]
			child := img[int(binary.LittleEndian.Uint32(root[28:]))*fsLEB+int(binary.LittleEndian.Uint32(root[32:])):]
			binary.LittleEndian.PutUint16(child[26:], 9)
			fixNodeCRC(child)
		}, "inconsistent", false},
		{"data node corrupt", func(img []byte) {
			img[firstData+60] ^= 0xFF
		}, "index entries point at missing or corrupt nodes", false},
		{"data node undecompressible", func(img []byte) {
			n := binary.LittleEndian.Uint32(img[firstData+16:])
			for i := firstData + 48; i < firstData+int(n); i++ {
				img[i] = 0xEE
			}
			binary.LittleEndian.PutUint16(img[firstData+44:], 2) // zlib
			fixNodeCRC(img[firstData:])
		}, "data blocks unreadable, zero-filled", false},
		{"masters corrupt", func(img []byte) {
			img[1*fsLEB+40] ^= 1
			img[2*fsLEB+40] ^= 1
		}, "", true},
		{"index root outside", func(img []byte) {
			for _, l := range []int{1, 2} {
				binary.LittleEndian.PutUint32(img[l*fsLEB+48:], 1<<20)
				fixNodeCRC(img[l*fsLEB:])
			}
		}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := slices.Clone(orig)
			tc.edit(img)
			checkUBIFSEdit(t, img, tc.warning, tc.fail)
		})
	}
}

// checkUBIFSEdit runs the edited image: Extract fails when fail is set, and
// otherwise succeeds with warning among the warnings.
func checkUBIFSEdit(t *testing.T, img []byte, warning string, fail bool) {
	t.Helper()
	res, err := firmwaretest.Run(UBIFS, img, 0)
	if err != nil || res.Chunk == nil {
		t.Fatalf("%v %v", err, res.IdentifyErr)
	}
	if fail {
		if res.ExtractErr == nil {
			t.Errorf("Extract succeeded: %d entries", len(res.Sink.Entries))
		}
		return
	}
	if res.ExtractErr != nil {
		t.Fatal(res.ExtractErr)
	}
	if !hasWarning(res, warning) {
		t.Errorf("warnings %q, want %q", res.Sink.Warnings, warning)
	}
}

// firstNodeOf is the offset of the first node of type typ from LEB 3 on
// with at least minLen bytes of the image after it, or -1.
func firstNodeOf(img []byte, typ byte, minLen int) int {
	for off := 3 * fsLEB; off+minLen < len(img); off += 8 {
		if binary.LittleEndian.Uint32(img[off:]) == ubifsMagic && img[off+20] == typ {
			return off
		}
	}
	return -1
}

// TestUBIFSDepth: a directory chain deeper than the limit is cut with a
// warning.
func TestUBIFSDepth(t *testing.T) {
	testutil.NeedTool(t, "mkfs.ubifs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	deep := root
	for range ubifsMaxPathDepth + 5 {
		deep = filepath.Join(deep, "d")
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "file.txt"), bytes.Repeat([]byte("depth test\n"), 500), 0o644)
	img := filepath.Join(dir, "fs.ubifs")
	run(t, "mkfs.ubifs", "-r", root, "-m", "1", "-e", "16256", "-c", "64", "-o", img)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	res := firmwaretest.MustRun(t, UBIFS, data, 0)
	if got, _ := res.Sink.File("file.txt"); !bytes.Equal(got, bytes.Repeat([]byte("depth test\n"), 500)) {
		t.Error("file.txt differs")
	}
	if !hasWarning(res, "too deep") || !hasWarning(res, "4 inodes not reachable") {
		t.Errorf("warnings %q", res.Sink.Warnings)
	}
	var deepest int
	for _, e := range res.Sink.Entries {
		deepest = max(deepest, strings.Count(e.Header.Name, "/")+1)
		if e.Header.Type != firmware.TypeDir && e.Header.Name != "file.txt" {
			t.Errorf("entry %+v", e.Header)
		}
	}
	if deepest != ubifsMaxPathDepth+1 {
		t.Errorf("deepest entry at depth %d", deepest)
	}
}

func fuzzSeeds(f *testing.F, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
}

// FuzzUBIExtract: UBI images with two volumes, static and dynamic, plain
// and as a raw NAND dump.
func FuzzUBIExtract(f *testing.F) {
	vols := firmwaretest.ReadFixture(f, "ubi-volumes.img")
	fuzzSeeds(f, vols, interleaveOOB(firmwaretest.ReadFixture(f, "ubi.img")[:6*16384], 512, 16), vols[:3*16384])
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(UBI, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzUBIFSExtract: UBIFS images, zlib and zstd.
func FuzzUBIFSExtract(f *testing.F) {
	vols := firmwaretest.ReadFixture(f, "ubi-volumes.img")
	var zstdFS []byte
	for i := 2; i < 17; i++ { // rootfs LEBs 0..14 are erase blocks 2..16
		zstdFS = append(zstdFS, vols[i*16384+128:(i+1)*16384]...)
	}
	fuzzSeeds(f, firmwaretest.ReadFixture(f, "ubifs-zlib.img"), zstdFS)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(UBIFS, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}

package squashfs

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
	"github.com/therootcompany/xz"
)

// xzImageBlocks returns the compressed data and metadata blocks of an xz
// image, each with the length it decodes to at most.
func xzImageBlocks(t testing.TB, data []byte) (blocks [][]byte) {
	t.Helper()
	sb, err := readSuper(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil || sb.Compressor != compXZ {
		t.Fatalf("not an xz image: %v", err)
	}
	// Metadata blocks from the inode table to the end of the fragment
	// index: header words, then the block.
	bo := sb.order()
	for pos := int64(sb.InodeTable); pos+2 < int64(sb.FragmentTable); {
		hdr := bo.Uint16(data[pos:])
		n := int64(hdr & 0x7fff)
		if hdr&0x8000 == 0 {
			blocks = append(blocks, data[pos+2:pos+2+n])
		}
		pos += 2 + n
	}
	// Data blocks: from the end of the superblock to the inode table, the
	// xz streams one after the other.
	rest := data[superSize:sb.InodeTable]
	for {
		i := bytes.Index(rest, []byte("\xfd7zXZ\x00"))
		if i < 0 {
			break
		}
		j := bytes.Index(rest[i+6:], []byte("\xfd7zXZ\x00"))
		end := len(rest)
		if j >= 0 {
			end = i + 6 + j
		}
		blocks = append(blocks, rest[i:end])
		rest = rest[end:]
	}
	return blocks
}

// checkFastPath decodes every block with xzBlockDecode and with the general
// decoder: the fast path must take each mksquashfs block and agree.
func checkFastPath(t *testing.T, data []byte) {
	t.Helper()
	blocks := xzImageBlocks(t, data)
	if len(blocks) == 0 {
		t.Fatal("no xz blocks")
	}
	a, b := make([]byte, maxBlockSize), make([]byte, maxBlockSize)
	for i, blk := range blocks {
		// Data blocks may carry trailing padding up to the next stream:
		// the general decoder stops at the stream's end.
		zr, err := xz.NewReader(bytes.NewReader(blk), maxDict)
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		m, err := readAllBounded(b, zr)
		if err != nil {
			t.Fatalf("block %d: general decoder: %v", i, err)
		}
		n, err := xzBlockDecode(a, blk)
		if err != nil || n != m || !bytes.Equal(a[:n], b[:m]) {
			t.Fatalf("block %d: fast path %d bytes, %v; general %d bytes", i, n, err, m)
		}
	}
}

func TestXzFastPath(t *testing.T) {
	checkFastPath(t, firmwaretest.ReadFixture(t, "squashfs-xz.img"))
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		if testutil.InCI() {
			t.Fatal("mksquashfs is not installed; scripts/deps should have installed it")
		}
		t.Skip("mksquashfs is not installed: only the committed fixture was checked")
	}
	root := filepath.Join(t.TempDir(), "root")
	writeMixedTree(t, root)
	for _, args := range [][]string{{}, {"-b", "1M"}, {"-b", "4096"}, {"-Xdict-size", "8192"}} {
		img := filepath.Join(t.TempDir(), "x.img")
		cmd := exec.Command("mksquashfs", append([]string{root, img, "-noappend", "-quiet", "-no-progress", "-comp", "xz"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mksquashfs: %v\n%s", err, out)
		}
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		checkFastPath(t, data)
	}
}

// FuzzXzBlock: the fast path never panics, never writes past dst, and when
// it accepts a stream the general decoder agrees.
func FuzzXzBlock(f *testing.F) {
	for _, blk := range xzImageBlocks(f, firmwaretest.ReadFixture(f, "squashfs-xz.img")) {
		f.Add(blk)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		a := make([]byte, 64<<10)
		n, err := xzBlockDecode(a[:32<<10:32<<10], src)
		if err != nil {
			return
		}
		zr, err := xz.NewReader(bytes.NewReader(src), maxDict)
		if err != nil {
			t.Fatalf("fast path took %d bytes the general decoder refuses: %v", n, err)
		}
		zr.Multistream(false)
		b := make([]byte, 32<<10)
		m, err := readAllBounded(b, zr)
		if err != nil && err != io.ErrUnexpectedEOF {
			t.Fatalf("fast path took what the general decoder refuses: %v", err)
		}
		if !bytes.Equal(a[:n], b[:m]) {
			t.Fatalf("fast %d bytes, general %d", n, m)
		}
	})
}

// BenchmarkXzBlockDecode decodes every xz block of the fixture with the
// fast path: the cost of the block and LZMA2 chunk headers and of the
// decode loop, without the rest of Extract.
//
//	go test -run '^$' -bench XzBlockDecode ./firmware/formats/squashfs
func BenchmarkXzBlockDecode(b *testing.B) {
	blocks := xzImageBlocks(b, firmwaretest.ReadFixture(b, "squashfs-xz.img"))
	dst := make([]byte, maxBlockSize)
	var total int64
	for _, blk := range blocks {
		n, err := xzBlockDecode(dst, blk)
		if err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	b.SetBytes(total)
	for b.Loop() {
		for _, blk := range blocks {
			if _, err := xzBlockDecode(dst, blk); err != nil {
				b.Fatal(err)
			}
		}
	}
}

package flash

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// ubi-volumes.img geometry (ubinize -m 1 -p 16KiB): VID header at 64, data at 128.
const (
	volPEB     = 16 << 10
	volVIDOff  = 64
	volDataOff = 128
	volUsable  = volPEB - volDataOff
)

// pebOf returns the index of the erase block of img holding LEB lnum of vol.
func pebOf(t *testing.T, img []byte, vol, lnum uint32) int {
	t.Helper()
	for i := 0; (i+1)*volPEB <= len(img); i++ {
		v := img[i*volPEB+volVIDOff:]
		if string(v[:4]) == "UBI!" && binary.BigEndian.Uint32(v[8:]) == vol && binary.BigEndian.Uint32(v[12:]) == lnum {
			return i
		}
	}
	t.Fatalf("no erase block for volume %d LEB %d", vol, lnum)
	return 0
}

// editVID changes the VID header of erase block i and fixes its CRC.
func editVID(img []byte, i int, fn func(v []byte)) {
	v := img[i*volPEB+volVIDOff : i*volPEB+volVIDOff+64]
	fn(v)
	binary.BigEndian.PutUint32(v[60:], crcRaw(0xFFFFFFFF, v[:60]))
}

// editVtbl changes volume-table record id in both layout copies (or in copy
// only when only >= 0) and, when fix is set, fixes its CRC.
func editVtbl(t *testing.T, img []byte, id, only int, fix bool, fn func(rec []byte)) {
	t.Helper()
	for c := range 2 {
		if only >= 0 && c != only {
			continue
		}
		p := pebOf(t, img, ubiLayoutVol, uint32(c))
		rec := img[p*volPEB+volDataOff+id*ubiVtblRecord:][:ubiVtblRecord]
		fn(rec)
		if fix {
			binary.BigEndian.PutUint32(rec[168:], crcRaw(0xFFFFFFFF, rec[:168]))
		}
	}
}

// volumes extracts img and returns the volume files by name.
func volumes(t *testing.T, img []byte) (map[string][]byte, *firmwaretest.Result) {
	t.Helper()
	res := firmwaretest.MustRun(t, UBI, img, 0)
	out := map[string][]byte{}
	for _, e := range res.Sink.Entries {
		if e.Header.Type != firmware.TypeFile || strings.Contains(e.Header.Name, "/") || !filepath.IsLocal(e.Header.Name) {
			t.Errorf("volume entry %+v", e.Header)
		}
		out[e.Header.Name] = e.Data
	}
	return out, res
}

func hasWarning(res *firmwaretest.Result, sub string) bool {
	return slices.ContainsFunc(res.Sink.Warnings, func(w string) bool { return strings.Contains(w, sub) })
}

// TestUBIErasBlockCopies: several erase blocks claim the same LEB. The
// highest sequence number wins; a copy made by wear levelling (copy_flag)
// whose data CRC fails loses to the older copy.
func TestUBIEraseBlockCopies(t *testing.T) {
	orig := firmwaretest.ReadFixture(t, "ubi-volumes.img")
	base, _ := volumes(t, orig)
	garbage := bytes.Repeat([]byte("stale data! "), volPEB/12+1)[:volUsable]
	appendCopy := func(img []byte, lnum uint32, sqnum uint64, copyFlag bool, goodCRC bool) []byte {
		src := pebOf(t, img, 0, lnum)
		peb := slices.Clone(img[src*volPEB : (src+1)*volPEB])
		copy(peb[volDataOff:], garbage)
		img = append(img, peb...)
		editVID(img, len(img)/volPEB-1, func(v []byte) {
			binary.BigEndian.PutUint64(v[40:], sqnum)
			if copyFlag {
				v[6] = 1
				binary.BigEndian.PutUint32(v[20:], volUsable)
				crc := crcRaw(0xFFFFFFFF, garbage)
				if !goodCRC {
					crc ^= 1
				}
				binary.BigEndian.PutUint32(v[32:], crc)
			}
		})
		return img
	}
	// The original blocks have sequence number 0: raise them so that an
	// older copy can exist.
	img := slices.Clone(orig)
	for i := range len(img) / volPEB {
		editVID(img, i, func(v []byte) { binary.BigEndian.PutUint64(v[40:], 100) })
	}
	img = appendCopy(img, 2, 5, false, false)  // older: loses
	img = appendCopy(img, 3, 200, true, false) // newer copy, bad CRC: loses
	got, res := volumes(t, img)
	if !bytes.Equal(got["rootfs.ubifs"], base["rootfs.ubifs"]) || !bytes.Equal(got["blob.bin"], base["blob.bin"]) {
		t.Errorf("stale or corrupt copies changed the volumes (warnings %q)", res.Sink.Warnings)
	}
	img = appendCopy(img, 4, 300, true, true) // newer good copy: wins
	got, _ = volumes(t, img)
	want := slices.Concat(base["rootfs.ubifs"][:4*volUsable], garbage, base["rootfs.ubifs"][5*volUsable:])
	if !bytes.Equal(got["rootfs.ubifs"], want) {
		t.Error("the newest good copy of LEB 4 was not used")
	}
}

// TestUBIGaps: bad and erased blocks among an image's erase blocks are
// skipped and counted; the volumes do not change.
func TestUBIGaps(t *testing.T) {
	orig := firmwaretest.ReadFixture(t, "ubi-volumes.img")
	base, _ := volumes(t, orig)
	bad := bytes.Repeat([]byte{0x00, 0x5A}, volPEB/2)
	img := slices.Concat(orig[:5*volPEB], bad, bytes.Repeat([]byte{0xFF}, volPEB), orig[5*volPEB:])
	got, res := volumes(t, img)
	if !bytes.Equal(got["rootfs.ubifs"], base["rootfs.ubifs"]) || !bytes.Equal(got["blob.bin"], base["blob.bin"]) {
		t.Error("volumes differ")
	}
	c := res.Chunk
	if c.Size != int64(len(img)) || c.Meta["bad_blocks"] != int64(2) || c.Meta["erased_blocks"] != int64(1) || len(c.Warnings) != 1 {
		t.Errorf("chunk %+v", c)
	}
	// More than ubiMaxGap unreadable blocks in a row end the image.
	long := slices.Concat(orig[:5*volPEB], bytes.Repeat(bad, ubiMaxGap+1), orig[5*volPEB:])
	c, err := UBI.Identify(bytes.NewReader(long), 0, int64(len(long)))
	if err != nil || c.Size != 5*volPEB {
		t.Errorf("long gap: chunk %+v, %v", c, err)
	}
}

// TestUBIVolumeTableHostile: a volume table that lies is bounded and reported.
func TestUBIVolumeTableHostile(t *testing.T) {
	orig := firmwaretest.ReadFixture(t, "ubi-volumes.img")
	base, _ := volumes(t, orig)
	for _, tc := range []struct {
		name    string
		edit    func(img []byte)
		warning string
		vols    []string
	}{
		{"huge reservation", func(img []byte) {
			editVtbl(t, img, 0, -1, true, func(rec []byte) { binary.BigEndian.PutUint32(rec, 1<<30) })
		}, "reserves 1073741824 erase blocks, the image has 19", []string{"blob.bin", "rootfs.ubifs"}},
		{"both copies corrupt", func(img []byte) {
			editVtbl(t, img, 0, -1, false, func(rec []byte) { rec[20] ^= 1 })
		}, "no volume table; 2 volumes found", []string{"vol0.ubifs", "vol1.bin"}},
		{"copies differ", func(img []byte) {
			editVtbl(t, img, 1, 1, true, func(rec []byte) { rec[16] = 'B' })
		}, "copies of the volume table differ", []string{"blob.bin", "rootfs.ubifs"}},
		{"hostile name", func(img []byte) {
			editVtbl(t, img, 1, -1, true, func(rec []byte) {
				n := copy(rec[16:144], "../../etc/x\x00y")
				binary.BigEndian.PutUint16(rec[14:], uint16(n))
			})
		}, "", []string{"_.._etc_x_y.bin", "rootfs.ubifs"}},
		{"static data CRC", func(img []byte) {
			img[pebOf(t, img, 1, 0)*volPEB+volDataOff+7] ^= 0xFF
		}, "1 logical erase blocks fail their data CRC", []string{"blob.bin", "rootfs.ubifs"}},
		{"static used_ebs", func(img []byte) {
			for l := uint32(0); l < 2; l++ {
				editVID(img, pebOf(t, img, 1, l), func(v []byte) { binary.BigEndian.PutUint32(v[24:], 1<<31) })
			}
		}, "claims 2147483648 used erase blocks, 2 reserved", []string{"blob.bin", "rootfs.ubifs"}},
		{"volume not in table", func(img []byte) {
			editVID(img, pebOf(t, img, 0, 14), func(v []byte) { binary.BigEndian.PutUint32(v[8:], 77) })
		}, "1 erase blocks of volume 77, which is not in the volume table", []string{"blob.bin", "rootfs.ubifs"}},
		{"update marker", func(img []byte) {
			editVtbl(t, img, 1, -1, true, func(rec []byte) { rec[13] = 1 })
		}, `volume 1 "blob" has its update marker set`, []string{"blob.bin", "rootfs.ubifs"}},
		{"fastmap", func(img []byte) {
			editVID(img, pebOf(t, img, 0, 14), func(v []byte) { binary.BigEndian.PutUint32(v[8:], ubiFastmapSB) })
		}, "1 fastmap erase blocks ignored", []string{"blob.bin", "rootfs.ubifs"}},
		{"LEB beyond reservation", func(img []byte) {
			editVID(img, pebOf(t, img, 0, 14), func(v []byte) { binary.BigEndian.PutUint32(v[12:], 1<<30) })
		}, "1 logical erase blocks beyond its 15 reserved", []string{"blob.bin", "rootfs.ubifs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := slices.Clone(orig)
			tc.edit(img)
			got, res := volumes(t, img)
			var names []string
			for n := range got {
				names = append(names, n)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.vols) {
				t.Errorf("volumes %q, want %q", names, tc.vols)
			}
			if tc.warning != "" && !hasWarning(res, tc.warning) {
				t.Errorf("warnings %q, want %q", res.Sink.Warnings, tc.warning)
			}
			if tc.name == "huge reservation" && !bytes.Equal(got["rootfs.ubifs"], base["rootfs.ubifs"]) {
				t.Error("rootfs differs")
			}
		})
	}
}

// TestUBISeveralImages: two UBI images back to back (different image
// sequence numbers) are two chunks.
func TestUBISeveralImages(t *testing.T) {
	a := firmwaretest.ReadFixture(t, "ubi.img")
	b := firmwaretest.ReadFixture(t, "ubi-volumes.img")
	path := filepath.Join(t.TempDir(), "two.bin")
	if err := os.WriteFile(path, slices.Concat(a, b), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := firmware.Scan(context.Background(), path, firmware.Options{Formats: []*firmware.Format{UBI, UBIFS}, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range rep.Chunks {
		got = append(got, c.Format+" "+c.Desc)
	}
	if len(rep.Chunks) != 2 || rep.Chunks[0].Size != int64(len(a)) || rep.Chunks[1].Offset != int64(len(a)) ||
		!strings.HasSuffix(got[1], "volumes rootfs, blob") {
		t.Errorf("chunks %q", got)
	}
}

// interleaveOOB writes img as a raw NAND dump: every page followed by oob
// spare bytes (as nand-oob.sh, without its erased-page and bad-block rules),
// for images built at test time.
func interleaveOOB(img []byte, page, oob int) []byte {
	var out []byte
	for i := 0; i < len(img); i += page {
		pg := make([]byte, page)
		for j := range pg {
			pg[j] = 0xFF
		}
		copy(pg, img[i:])
		out = append(out, pg...)
		for j := range oob {
			out = append(out, byte(i/page*7+j*13+1))
		}
	}
	return out
}

// TestUBINANDOOB: UBI images with the spare bytes of 512+16, 2048+64 and
// 4096+224 NAND pages interleaved (and 2048-byte pages with spare bytes
// after each 512-byte sector) are found and read de-interleaved.
func TestUBINANDOOB(t *testing.T) {
	t.Run("512+16", func(t *testing.T) {
		plain := firmwaretest.ReadFixture(t, "ubi.img")
		checkNAND(t, plain, 512, 16, 32)
	})
	for _, g := range []struct{ page, oob, ppb int }{{2048, 64, 64}, {4096, 224, 64}} {
		t.Run(strings.Join([]string{itoa(g.page), itoa(g.oob)}, "+"), func(t *testing.T) {
			testutil.NeedTool(t, "mkfs.ubifs", "ubinize")
			src := ubiSources(t)
			dir := t.TempDir()
			peb := g.page * g.ppb
			fsImg := filepath.Join(dir, "fs.ubifs")
			run(t, "mkfs.ubifs", "-r", filepath.Join(src, "root"), "-m", itoa(g.page), "-e", itoa(peb-2*g.page), "-c", "40", "-x", "lzo", "-o", fsImg)
			cfg := filepath.Join(dir, "ubi.cfg")
			os.WriteFile(cfg, []byte("[rootfs]\nmode=ubi\nimage="+fsImg+"\nvol_id=0\nvol_type=dynamic\nvol_name=rootfs\n"), 0o644)
			img := filepath.Join(dir, "ubi.img")
			run(t, "ubinize", "-o", img, "-m", itoa(g.page), "-p", itoa(peb), cfg)
			plain, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			vol := checkNAND(t, plain, g.page, g.oob, g.ppb)
			res := firmwaretest.MustRun(t, UBIFS, vol, 0)
			compareTree(t, res.Sink, filepath.Join(src, "root"), false)
			// Controllers that keep ECC per sector: the same raw block
			// size, told apart by the volume table.
			if g.page == 2048 {
				checkNAND(t, plain, 512, 16, 256)
				checkNAND(t, plain, 1024, 32, 128)
			} else {
				checkNAND(t, plain, 512, 28, 512)
				checkNAND(t, plain, 1024, 56, 256)
			}
		})
	}
}

// checkNAND interleaves plain's pages with spare bytes behind some leading
// erased flash, and checks the chunk and that the volume is the same as from
// plain. It returns the rootfs volume.
func checkNAND(t *testing.T, plain []byte, page, oob, ppb int) []byte {
	t.Helper()
	raw := interleaveOOB(plain, page, oob)
	lead := ppb * (page + oob)
	dump := slices.Concat(bytes.Repeat([]byte{0xFF}, lead), raw)
	want, _ := extractUBIVolume(t, plain, 0, "rootfs.ubifs")
	got, res := extractUBIVolume(t, dump, int64(lead), "rootfs.ubifs")
	c := res.Chunk
	if c.Size != int64(len(raw)) || c.Meta["nand_page_size"] != int64(page) || c.Meta["nand_oob_size"] != int64(oob) ||
		c.Meta["peb_size"] != int64(page*ppb) || !strings.Contains(c.Desc, "raw NAND with OOB") || len(c.Warnings) != 1 {
		t.Errorf("chunk %+v", c)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("volume from the NAND dump (%d bytes) differs from the plain image's (%d)", len(got), len(want))
	}
	return got
}

func itoa(n int) string { return strconv.Itoa(n) }

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

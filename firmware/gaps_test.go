package firmware_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/compress"
)

// lengthFormat declares a test format: magic + u32 little-endian total length.
func lengthFormat(name, magic string, kind firmware.Kind, extract func(context.Context, *io.SectionReader, *firmware.Chunk, firmware.Sink) error) *firmware.Format {
	return &firmware.Format{
		Name:   name,
		Kind:   kind,
		Magics: []firmware.Magic{{Bytes: []byte(magic)}},
		Identify: func(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
			var h [8]byte
			if off+8 > size {
				return nil, firmware.ErrNotFormat
			}
			r.ReadAt(h[:], off)
			n := int64(binary.LittleEndian.Uint32(h[4:]))
			if n < 8 || n > size-off {
				return nil, firmware.ErrNotFormat
			}
			return &firmware.Chunk{Offset: off, Size: n, Desc: name + " test chunk", Confidence: firmware.ConfidenceHigh}, nil
		},
		Extract: extract,
	}
}

// lengthChunk is magic + u32 length + body.
func lengthChunk(magic string, body []byte) []byte {
	b := append([]byte(magic), 0, 0, 0, 0)
	b = append(b, body...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

var (
	// mapOnly is identified, never extracted (like a filesystem cordon cannot read yet).
	mapOnly = lengthFormat("maponly", "MAPO", firmware.KindFilesystem, nil)
	// carved is carve-only, like ELF.
	carved = lengthFormat("carved", "CARV", firmware.KindCarve, nil)
	// broken fails before writing anything.
	broken = lengthFormat("broken", "BRKN", firmware.KindArchive, func(context.Context, *io.SectionReader, *firmware.Chunk, firmware.Sink) error {
		return &firmware.FormatError{Format: "broken", Off: 8, Msg: "bad inode table", Err: firmware.ErrTruncated}
	})
)

func gapFormats() []*firmware.Format {
	return []*firmware.Format{mapOnly, carved, broken, compress.GZIP}
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// truncatedGzip is the first half of a gzip member of text: its header is
// valid, its stream is cut short.
func truncatedGzip(t testing.TB) []byte {
	var text []byte
	for i := range 600 {
		text = append(text, []byte("line "+strings.Repeat("x", i%50)+"\n")...)
	}
	g := gz(t, text)
	return g[:len(g)/2]
}

func findGap(gs []firmware.Gap, format string) (firmware.Gap, bool) {
	i := slices.IndexFunc(gs, func(g firmware.Gap) bool { return g.Format == format })
	if i < 0 {
		return firmware.Gap{}, false
	}
	return gs[i], true
}

func checkCoverage(t *testing.T, rep *firmware.Report) {
	t.Helper()
	cv := rep.Coverage
	if cv.Size != rep.Image.Size || cv.Extracted+cv.Carved+cv.Identified+cv.Padding+cv.Unknown != cv.Size {
		t.Errorf("coverage %+v does not add up to the image size %d", cv, rep.Image.Size)
	}
	var unknown int64
	for _, u := range rep.Unknown {
		if u.Padding == "" {
			unknown += u.Size
		}
	}
	if unknown != cv.Unknown {
		t.Errorf("coverage unknown %d, unknown regions hold %d", cv.Unknown, unknown)
	}
	for _, g := range rep.Gaps {
		if strings.Contains(g.Reason, "\n") {
			t.Errorf("gap reason %q spans lines: each gap is one warning line", g.Reason)
		}
	}
}

func hasWarning(rep []string, parts ...string) bool {
	return slices.ContainsFunc(rep, func(w string) bool {
		for _, p := range parts {
			if !strings.Contains(w, p) {
				return false
			}
		}
		return true
	})
}

// TestGapTruncatedGzip: a gzip cut short in the middle of an image is a
// failed gap with its offset and the decoder's reason; its bytes stay unknown.
func TestGapTruncatedGzip(t *testing.T) {
	img := slices.Concat(bytes.Repeat([]byte{0}, 4096), truncatedGzip(t), randomBytes(8192, 1))
	rep, _ := unpack(t, writeImage(t, img), firmware.Options{Formats: gapFormats()})
	if len(rep.Chunks) != 0 {
		t.Fatalf("chunks %+v, want none", rep.Chunks)
	}
	g, ok := findGap(rep.Gaps, "gzip")
	if !ok || g.Offset != 4096 || g.Status != firmware.GapFailed || !strings.Contains(g.Reason, "does not decode") {
		t.Fatalf("gaps %+v, want a failed gzip at 0x1000", rep.Gaps)
	}
	if !hasWarning(rep.Warnings, "image@0x1000", "gzip", "failed") {
		t.Errorf("warnings %q lack the gap", rep.Warnings)
	}
	checkCoverage(t, rep)
	if rep.Coverage.Padding != 4096 || rep.Coverage.Unknown != int64(len(img)-4096) || rep.Coverage.Examined >= 0.5 {
		t.Errorf("coverage %+v", rep.Coverage)
	}

	// scan reports it as well.
	srep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img), int64(len(img)), firmware.Options{Formats: gapFormats()})
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := findGap(srep.Gaps, "gzip"); !ok || g.Offset != 4096 || !hasWarning(srep.Warnings, "image@0x1000", "gzip") {
		t.Errorf("scan gaps %+v, warnings %q", srep.Gaps, srep.Warnings)
	}
}

// TestGapTruncatedGzipAtEnd: a gzip cut short by the end of the image is
// identified (low confidence), extracted as far as it goes, and a failed gap.
func TestGapTruncatedGzipAtEnd(t *testing.T) {
	img := slices.Concat(randomBytes(1000, 2), truncatedGzip(t))
	rep, _ := unpack(t, writeImage(t, img), firmware.Options{Formats: gapFormats()})
	if len(rep.Chunks) != 1 || rep.Chunks[0].Offset != 1000 {
		t.Fatalf("chunks %+v, want the gzip at 1000", rep.Chunks)
	}
	g, ok := findGap(rep.Gaps, "gzip")
	if !ok || g.Offset != 1000 || g.Status != firmware.GapFailed || g.Size != int64(len(img)-1000) {
		t.Fatalf("gaps %+v, want a failed gzip at 1000", rep.Gaps)
	}
	checkCoverage(t, rep)
}

// TestGapNotExtracted: a chunk of a format without Extract, and one whose
// extraction fails before writing anything, are identified-only bytes and gaps.
func TestGapNotExtracted(t *testing.T) {
	img := slices.Concat(lengthChunk("MAPO", randomBytes(3000, 3)), bytes.Repeat([]byte{0xff}, 1024), lengthChunk("BRKN", randomBytes(500, 4)))
	rep, _ := unpack(t, writeImage(t, img), firmware.Options{Formats: gapFormats()})
	if len(rep.Chunks) != 2 {
		t.Fatalf("chunks %+v", rep.Chunks)
	}
	for _, c := range rep.Chunks {
		if c.Outcome != firmware.OutcomeIdentified {
			t.Errorf("%s outcome %q, want identified", c.Format, c.Outcome)
		}
	}
	g, ok := findGap(rep.Gaps, "maponly")
	if !ok || g.Offset != 0 || g.Size != 3008 || g.Status != firmware.GapIdentified || !strings.Contains(g.Reason, "no extractor") {
		t.Errorf("maponly gap %+v", g)
	}
	g, ok = findGap(rep.Gaps, "broken")
	if !ok || g.Offset != 3008+1024 || g.Status != firmware.GapFailed || !strings.Contains(g.Reason, "bad inode table") {
		t.Errorf("broken gap %+v", g)
	}
	if !hasWarning(rep.Warnings, "image@0x0", "maponly", "identified, not extracted", "no extractor") {
		t.Errorf("warnings %q", rep.Warnings)
	}
	checkCoverage(t, rep)
	if cv := rep.Coverage; cv.Identified != 3008+508 || cv.Padding != 1024 || cv.Extracted != 0 {
		t.Errorf("coverage %+v", cv)
	}

	// A scan says which chunks unpack would not open, not the ones it would.
	srep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img), int64(len(img)), firmware.Options{Formats: gapFormats()})
	if err != nil {
		t.Fatal(err)
	}
	if len(srep.Gaps) != 1 || srep.Gaps[0].Format != "maponly" {
		t.Errorf("scan gaps %+v, want maponly only", srep.Gaps)
	}
}

// TestGapDepthLimit: a chunk beyond --depth is an identified-only gap.
func TestGapDepthLimit(t *testing.T) {
	img := gz(t, gz(t, []byte("inner")))
	rep, _ := unpack(t, writeImage(t, img), firmware.Options{Formats: gapFormats(), Limits: firmware.Limits{MaxDepth: 1}})
	g, ok := findGap(rep.Gaps, "gzip")
	if !ok || g.File == "" || g.Status != firmware.GapIdentified || !strings.Contains(g.Reason, "depth limit 1") {
		t.Errorf("gaps %+v, want the inner gzip stopped by the depth limit", rep.Gaps)
	}
	checkCoverage(t, rep)
	if rep.Coverage.Extracted != int64(len(img)) {
		t.Errorf("coverage %+v: the image's own chunk was extracted", rep.Coverage)
	}
}

// TestEmbeddedInCarved: a gzip inside a carve-only chunk is found, extracted
// and reported as its child; a gzip after it as well, at the top.
func TestEmbeddedInCarved(t *testing.T) {
	inner := gz(t, []byte("embedded payload\n"))
	after := gz(t, []byte("after the carved chunk\n"))
	carve := lengthChunk("CARV", slices.Concat(randomBytes(300, 5), inner, randomBytes(200, 6)))
	img := slices.Concat(bytes.Repeat([]byte{0}, 512), carve, after)
	rep, out := unpack(t, writeImage(t, img), firmware.Options{Formats: gapFormats()})
	if len(rep.Chunks) != 2 {
		t.Fatalf("chunks %+v, want the carved chunk and the gzip after it", rep.Chunks)
	}
	c := rep.Chunks[0]
	if c.Format != "carved" || c.Outcome != firmware.OutcomeCarved || len(c.Children) != 1 {
		t.Fatalf("carved chunk %+v", c)
	}
	k := c.Children[0]
	if k.Format != "gzip" || k.Offset != 512+8+300 || k.File != "" || k.Outcome != firmware.OutcomeExtracted {
		t.Fatalf("embedded chunk %+v", k)
	}
	if got := readFile(t, out, k.ExtractDir+"/data"); got != "embedded payload\n" {
		t.Errorf("embedded gzip extracted as %q", got)
	}
	checkCoverage(t, rep)
	cv := rep.Coverage
	if cv.Carved != int64(len(carve)-len(inner)) || cv.Extracted != int64(len(inner)+len(after)) || cv.Padding != 512 {
		t.Errorf("coverage %+v", cv)
	}
	if len(rep.Gaps) != 0 {
		t.Errorf("gaps %+v, want none", rep.Gaps)
	}

	// A gzip cut short inside the carved chunk is a failed gap there.
	carve = lengthChunk("CARV", slices.Concat(randomBytes(300, 5), truncatedGzip(t), randomBytes(2000, 6)))
	rep, _ = unpack(t, writeImage(t, carve), firmware.Options{Formats: gapFormats()})
	if g, ok := findGap(rep.Gaps, "gzip"); !ok || g.Offset != 308 || g.Status != firmware.GapFailed {
		t.Errorf("gaps %+v, want the gzip cut short at 308", rep.Gaps)
	}
}

func readFile(t *testing.T, dir, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestIdentifyErrorContract: only errors wrapping ErrNotFormat are silent.
func TestIdentifyErrorContract(t *testing.T) {
	fails := &firmware.Format{
		Name: "fails", Kind: firmware.KindArchive,
		Magics: []firmware.Magic{{Bytes: []byte("FAIL")}},
		Identify: func(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
			if off == 0 {
				return nil, errors.Join(firmware.ErrNotFormat, errors.New("just a string"))
			}
			return nil, &firmware.FormatError{Format: "fails", Off: off, Msg: "superblock says 1 GiB, 8 bytes left", Err: firmware.ErrTruncated}
		},
	}
	img := []byte("FAILxxxxFAILyyyy")
	rep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img), int64(len(img)), firmware.Options{Formats: []*firmware.Format{fails}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Gaps) != 1 || rep.Gaps[0].Offset != 8 || !strings.Contains(rep.Gaps[0].Reason, "superblock says 1 GiB") {
		t.Errorf("gaps %+v, want only the failure at 8", rep.Gaps)
	}
}

// TestFormatAction: extracts when Extract is set, carves for KindCarve
// without it, identifies otherwise.
func TestFormatAction(t *testing.T) {
	for _, c := range []struct {
		f    *firmware.Format
		want firmware.Action
	}{
		{broken, firmware.ActionExtract},
		{compress.GZIP, firmware.ActionExtract},
		{carved, firmware.ActionCarve},
		{mapOnly, firmware.ActionIdentify},
		{lengthFormat("kindless", "KNDL", "", nil), firmware.ActionIdentify},
	} {
		if got := c.f.Action(); got != c.want {
			t.Errorf("%s: Action() = %q, want %q", c.f.Name, got, c.want)
		}
	}
}

// TestOpaqueNotSearched: an Opaque carve-only chunk hides what starts inside
// it, like an extracted one.
func TestOpaqueNotSearched(t *testing.T) {
	opaque := lengthFormat("opaque", "OPAQ", firmware.KindCarve, nil)
	opaque.Opaque = true
	img := lengthChunk("OPAQ", slices.Concat(randomBytes(100, 8), gz(t, []byte("inside")), randomBytes(100, 9)))
	rep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img), int64(len(img)), firmware.Options{Formats: []*firmware.Format{opaque, compress.GZIP}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Chunks) != 1 || len(rep.Chunks[0].Children) != 0 {
		t.Errorf("chunks %+v, want the opaque chunk alone", rep.Chunks)
	}
}

// TestGapEncrypted: an encrypted chunk of a format that extracts is an
// identified-only gap in scan and unpack; an encrypted carve-only chunk (a
// key) is carved, not a gap.
func TestGapEncrypted(t *testing.T) {
	encrypted := func(f *firmware.Format) *firmware.Format {
		g := *f
		id := f.Identify
		g.Identify = func(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
			c, err := id(r, off, size)
			if c != nil {
				c.Encrypted = true
			}
			return c, err
		}
		return &g
	}
	sealed := encrypted(lengthFormat("sealed", "SEAL", firmware.KindVendor, func(context.Context, *io.SectionReader, *firmware.Chunk, firmware.Sink) error { return nil }))
	key := encrypted(lengthFormat("key", "KEY!", firmware.KindCarve, nil))
	img := slices.Concat(lengthChunk("SEAL", randomBytes(900, 10)), lengthChunk("KEY!", randomBytes(100, 11)))
	fs := []*firmware.Format{sealed, key}
	rep, _ := unpack(t, writeImage(t, img), firmware.Options{Formats: fs})
	if len(rep.Gaps) != 1 || rep.Gaps[0].Format != "sealed" || !strings.Contains(rep.Gaps[0].Reason, "encrypted") {
		t.Errorf("unpack gaps %+v, want the sealed chunk only", rep.Gaps)
	}
	if cv := rep.Coverage; cv.Identified != 908 || cv.Carved != 108 {
		t.Errorf("coverage %+v", cv)
	}
	srep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img), int64(len(img)), firmware.Options{Formats: fs})
	if err != nil {
		t.Fatal(err)
	}
	if len(srep.Gaps) != 1 || srep.Gaps[0].Format != "sealed" {
		t.Errorf("scan gaps %+v, want the sealed chunk only", srep.Gaps)
	}
}

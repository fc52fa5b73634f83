package firmware_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/firmware/formats/compress"
	"github.com/cordon-vms/cordon/internal/testutil"
)

// hostile is a test format: "HOST" + u32 length, whose Extract hands the Sink
// every kind of hostile entry.
var hostile = lengthFormat("hostile", "HOST", firmware.KindArchive, extractHostile)

// extractHostile extracts the entries of the hostile test archive.
func extractHostile(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
	file := func(name string, mode fs.FileMode, body string) error {
		return out.Add(&firmware.Header{Name: name, Type: firmware.TypeFile, Mode: mode, Size: int64(len(body))}, strings.NewReader(body))
	}
	link := func(name, target string, t firmware.EntryType) error {
		return out.Add(&firmware.Header{Name: name, Type: t, Mode: 0o777, Linkname: target}, nil)
	}
	steps := []func() error{
		func() error { return out.Add(&firmware.Header{Name: "bin", Type: firmware.TypeDir, Mode: 0o755}, nil) },
		func() error { return file("bin/busybox", 0o755|fs.ModeSetuid, "busybox") },
		func() error { return file("../../etc/evil", 0o644, "traversal") },
		func() error { return file("/abs/file", 0o600, "absolute") },
		func() error { return link("bin/sh", "busybox", firmware.TypeSymlink) },
		func() error { return link("bin/ash", "/bin/busybox", firmware.TypeSymlink) },
		func() error { return link("escape", "../../../../etc/shadow", firmware.TypeSymlink) },
		func() error { return link("dotlink", ".", firmware.TypeSymlink) },
		func() error { return file("dotlink/dotlink/through", 0o644, "through a link inside") },
		func() error { return link("bin/hard", "bin/busybox", firmware.TypeHardlink) },
		func() error { return link("hardout", "../../etc/passwd", firmware.TypeHardlink) },
		func() error {
			return out.Add(&firmware.Header{Name: "dev/console", Type: firmware.TypeCharDevice, Mode: 0o600, Devmajor: 5, Devminor: 1}, nil)
		},
		func() error {
			return out.Add(&firmware.Header{Name: "dev/fifo", Type: firmware.TypeFIFO, Mode: 0o644}, nil)
		},
		func() error { return file("bin", 0o644, "a file over a folder") },
		func() error { return file("tmp/x", 0o1777|fs.ModeSticky|fs.ModeSetgid, "sticky") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	out.Warn("hostile archive extracted")
	return nil
}

func hostileImage(t *testing.T) string {
	t.Helper()
	b := append([]byte("HOST"), 0, 0, 0, 0)
	b = append(b, bytes.Repeat([]byte("x"), 56)...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	img := append(bytes.Repeat([]byte{0xff}, 4096), b...)
	p := filepath.Join(t.TempDir(), "hostile.bin")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func unpack(t *testing.T, image string, o firmware.Options) (*firmware.Report, string) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testutil.Logger(t)
	}
	if o.Formats == nil {
		o.Formats = []*firmware.Format{hostile, compress.GZIP, compress.XZ, compress.Zstd}
	}
	out := filepath.Join(t.TempDir(), "out")
	rep, err := firmware.Unpack(context.Background(), image, out, o)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	return rep, out
}

func manifestByName(rep *firmware.Report) map[string]firmware.ManifestEntry {
	m := map[string]firmware.ManifestEntry{}
	for _, e := range rep.Manifest {
		m[e.OrigName] = e
	}
	return m
}

func TestSinkSafety(t *testing.T) {
	image := hostileImage(t)
	rep, out := unpack(t, image, firmware.Options{})
	parent := filepath.Dir(out)
	// Nothing outside out.
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Errorf("the output's parent holds %d entries, want only out/", len(ents))
	}
	checkHostileManifest(t, rep, filepath.Join(out, "0x1000-hostile.extract"))
	checkTreeStaysInside(t, out)
	if c := rep.Chunks[0]; len(c.Warnings) != 1 || c.ExtractDir != "0x1000-hostile.extract" {
		t.Errorf("chunk %+v", c)
	}
	if len(rep.Unknown) != 1 || rep.Unknown[0].Padding != "0xff" || rep.Unknown[0].Size != 4096 {
		t.Errorf("unknown regions %+v, want one 4096-byte 0xff padding", rep.Unknown)
	}
	// report.json is there and matches.
	var disk firmware.Report
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil || json.Unmarshal(b, &disk) != nil || len(disk.Manifest) != len(rep.Manifest) {
		t.Errorf("report.json: %v", err)
	}
	if !strings.Contains(string(b), `"timeout": "30m0s"`) {
		t.Errorf("report.json limits do not show the timeout")
	}
}

// checkManifestEntry checks that the manifest m has an entry for orig,
// written at wantPath, with a note that mentions noteHas.
func checkManifestEntry(t *testing.T, m map[string]firmware.ManifestEntry, orig, wantPath, noteHas string) firmware.ManifestEntry {
	t.Helper()
	e, ok := m[orig]
	if !ok {
		t.Fatalf("no manifest entry for %q", orig)
	}
	if e.Path != wantPath {
		t.Errorf("%q written at %q, want %q", orig, e.Path, wantPath)
	}
	if !strings.Contains(e.Note, noteHas) {
		t.Errorf("%q note %q, want it to mention %q", orig, e.Note, noteHas)
	}
	return e
}

// checkHostileManifest checks what became of each hostile entry of
// hostileImage, extracted in x: in the manifest and on disk. Names are
// made local and links kept inside.
func checkHostileManifest(t *testing.T, rep *firmware.Report, x string) {
	t.Helper()
	m := manifestByName(rep)

	check := func(orig, wantPath, noteHas string) firmware.ManifestEntry {
		t.Helper()
		return checkManifestEntry(t, m, orig, wantPath, noteHas)
	}
	bb := check("bin/busybox", "0x1000-hostile.extract/bin/busybox", "setuid")
	if bb.Mode != "4755" || bb.SHA256 == "" || bb.Size != 7 {
		t.Errorf("busybox manifest %+v, want mode 4755, size 7 and a sha256", bb)
	}
	if st, err := os.Stat(filepath.Join(x, "bin/busybox")); err != nil || st.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 || st.Mode().Perm() != 0o755 {
		t.Errorf("busybox on disk: %v %v, want 0755 without setuid", st.Mode(), err)
	}
	check("../../etc/evil", "0x1000-hostile.extract/etc/evil", "neutralised")
	check("/abs/file", "0x1000-hostile.extract/abs/file", "absolute")
	check("bin/ash", "0x1000-hostile.extract/bin/ash", "rewritten")
	if tgt, err := os.Readlink(filepath.Join(x, "bin/ash")); err != nil || tgt != "busybox" {
		t.Errorf("bin/ash -> %q (%v), want busybox", tgt, err)
	}
	if b, err := os.ReadFile(filepath.Join(x, "bin/sh")); err != nil || string(b) != "busybox" {
		t.Errorf("bin/sh reads %q (%v), want busybox's content through the link", b, err)
	}
	esc := check("escape", "0x1000-hostile.extract/escape", "escapes")
	if esc.LinkTarget != "../../../../etc/shadow" {
		t.Errorf("escape link target %q not recorded", esc.LinkTarget)
	}
	if st, err := os.Lstat(filepath.Join(x, "escape")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("escape is %v (%v), want a placeholder file", st.Mode(), err)
	}
	checkHostileRefused(t, rep, m, x)
}

// checkHostileRefused checks the hostile entries of hostileImage that are
// not created, or created only in part, in x.
func checkHostileRefused(t *testing.T, rep *firmware.Report, m map[string]firmware.ManifestEntry, x string) {
	t.Helper()
	check := func(orig, wantPath, noteHas string) firmware.ManifestEntry {
		t.Helper()
		return checkManifestEntry(t, m, orig, wantPath, noteHas)
	}
	check("dotlink/dotlink/through", "", "goes through the symlink \"dotlink\"")
	if _, err := os.Stat(filepath.Join(x, "through")); err == nil {
		t.Errorf("an entry was written through a symlink")
	}
	check("bin/hard", "0x1000-hostile.extract/bin/hard", "")
	check("hardout", "", "not created")
	dev := check("dev/console", "", "not created")
	if dev.Type != "chardev" || dev.DevMajor != 5 || dev.DevMinor != 1 {
		t.Errorf("device manifest %+v", dev)
	}
	check("dev/fifo", "", "not created")
	tmp := check("tmp/x", "0x1000-hostile.extract/tmp/x", "setuid/setgid")
	if tmp.Mode != "3777" {
		t.Errorf("tmp/x mode %s, want 3777", tmp.Mode)
	}
	// The file over a folder is refused, the folder kept.
	var overFolder bool
	for _, e := range rep.Manifest {
		if e.OrigName == "bin" && e.Type == "file" {
			overFolder = e.Path == "" && strings.Contains(e.Note, "not created")
		}
	}
	if !overFolder {
		t.Errorf("a file named like an existing folder was not refused")
	}
	if _, err := os.Stat(filepath.Join(x, "dev/console")); err == nil {
		t.Errorf("a device node placeholder exists")
	}
}

// checkTreeStaysInside walks out: no special files, no setuid bits, no
// link leaving out.
func checkTreeStaysInside(t *testing.T, out string) {
	t.Helper()
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, _ := d.Info()
		if info.Mode()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("%s has mode %v", p, info.Mode())
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			tgt, _ := os.Readlink(p)
			abs := filepath.Clean(filepath.Join(filepath.Dir(p), tgt))
			if !strings.HasPrefix(abs, out+string(filepath.Separator)) {
				t.Errorf("symlink %s -> %s leaves the output", p, tgt)
			}
		}
		return nil
	})
}

func TestOutputNotEmpty(t *testing.T) {
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "keep"), []byte("x"), 0o644)
	_, err := firmware.Unpack(context.Background(), hostileImage(t), out, firmware.Options{Formats: []*firmware.Format{hostile}})
	if !errors.Is(err, firmware.ErrOutputNotEmpty) {
		t.Fatalf("err %v, want ErrOutputNotEmpty", err)
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func writeImage(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "image.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNestedDepth: 40 nested gzip layers stop at the depth limit with a warning.
func TestNestedDepth(t *testing.T) {
	b := []byte("the innermost file\n")
	for range 40 {
		b = gz(t, b)
	}
	rep, _ := unpack(t, writeImage(t, b), firmware.Options{})
	if rep.Stats.MaxDepth != firmware.DefaultMaxDepth {
		t.Errorf("max depth %d, want %d", rep.Stats.MaxDepth, firmware.DefaultMaxDepth)
	}
	depth := 0
	for c := rep.Chunks; len(c) > 0; c = c[0].Children {
		depth++
	}
	if depth != firmware.DefaultMaxDepth+1 { // the last level is identified, not extracted
		t.Errorf("chunk tree depth %d", depth)
	}
	if !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "depth limit 10") }) {
		t.Errorf("no depth warning: %q", rep.Warnings)
	}
}

// TestBombLimits: a gzip of 16 MiB of zeros stops at the ratio limit, and the
// total-bytes and file limits hold.
func TestBombLimits(t *testing.T) {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for range 16 {
		w.Write(zero)
	}
	w.Close()
	image := writeImage(t, append(buf.Bytes(), buf.Bytes()...)) // two bombs
	start := time.Now()
	rep, _ := unpack(t, image, firmware.Options{Limits: firmware.Limits{MaxRatio: 10, RatioFloor: 1 << 20}})
	if len(rep.Chunks) != 2 {
		t.Fatalf("%d chunks, want 2", len(rep.Chunks))
	}
	for _, c := range rep.Chunks {
		if len(c.Errors) == 0 || !strings.Contains(c.Errors[0], "max ratio") {
			t.Errorf("chunk errors %q, want a ratio limit", c.Errors)
		}
	}
	if max := int64(2 * 10 * buf.Len()); rep.Stats.BytesWritten > max+2<<20 {
		t.Errorf("wrote %d bytes, limit about %d", rep.Stats.BytesWritten, max)
	}
	if !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "limit reached") }) {
		t.Errorf("no limit warning: %q", rep.Warnings)
	}
	if !strings.Contains(rep.Manifest[0].Note, "truncated") {
		t.Errorf("manifest note %q, want truncated", rep.Manifest[0].Note)
	}
	t.Logf("bomb stopped in %v", time.Since(start))

	rep, _ = unpack(t, image, firmware.Options{Limits: firmware.Limits{MaxTotalBytes: 3 << 20, MaxRatio: -1}})
	if rep.Stats.BytesWritten != 3<<20 {
		t.Errorf("wrote %d bytes, want exactly the 3 MiB limit", rep.Stats.BytesWritten)
	}
	files := []byte{}
	for i := range 5 {
		files = append(files, gz(t, []byte{byte(i)})...)
	}
	rep, _ = unpack(t, writeImage(t, files), firmware.Options{Limits: firmware.Limits{MaxFiles: 3}})
	if rep.Stats.Files != 3 {
		t.Errorf("%d files, want 3", rep.Stats.Files)
	}
}

// TestRandom: random data is unknown, with entropy near 8, and nothing crashes.
func TestRandom(t *testing.T) {
	b := make([]byte, 4<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(b)
	rep, _ := unpack(t, writeImage(t, b), firmware.Options{Formats: allTestFormats()})
	var unknown int64
	for _, u := range rep.Unknown {
		unknown += u.Size
		if u.Padding == "" && u.Size > 1<<20 && u.Entropy < 7.99 {
			t.Errorf("region %+v: entropy too low for random data", u)
		}
	}
	t.Logf("%d chunks in random data, %d bytes unknown", len(rep.Chunks), unknown)
	if unknown < int64(len(b))*99/100 {
		t.Errorf("only %d of %d random bytes unknown: false positives %+v", unknown, len(b), rep.Chunks)
	}
}

func TestTimeout(t *testing.T) {
	b := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{2}).Read(b)
	out := filepath.Join(t.TempDir(), "out")
	rep, err := firmware.Unpack(context.Background(), writeImage(t, b), out, firmware.Options{Formats: allTestFormats(), Limits: firmware.Limits{Timeout: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "timeout") }) {
		t.Errorf("no timeout warning: %q", rep.Warnings)
	}
}

func allTestFormats() []*firmware.Format {
	return []*firmware.Format{hostile, compress.GZIP, compress.XZ, compress.Zstd, compress.Bzip2, compress.LZ4, compress.LZ4Legacy, compress.LZOP, compress.LZMA, compress.Zlib}
}

// TestDeterministic: the report does not depend on the number of workers.
func TestDeterministic(t *testing.T) {
	var img []byte
	for i := range 12 {
		img = append(img, gz(t, bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1)))...)
		img = append(img, bytes.Repeat([]byte{0}, 300)...)
		img = append(img, gz(t, gz(t, []byte(strings.Repeat("nested ", i+1))))...)
	}
	image := writeImage(t, img)
	norm := func(r *firmware.Report) string {
		r.Stats.Seconds = 0
		b, _ := json.Marshal(r)
		return string(b)
	}
	r1, _ := unpack(t, image, firmware.Options{Workers: 1})
	r4, _ := unpack(t, image, firmware.Options{Workers: 4})
	if len(r1.Chunks) != 24 {
		t.Fatalf("%d chunks, want 24", len(r1.Chunks))
	}
	if norm(r1) != norm(r4) {
		t.Errorf("reports differ between 1 and 4 workers")
	}
}

func TestScanHidesInnerMagics(t *testing.T) {
	inner := gz(t, []byte("inner"))
	// A gzip whose stored (level 0) content holds another gzip's bytes.
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	w.Write(inner)
	w.Close()
	img := append(bytes.Repeat([]byte{0}, 1000), buf.Bytes()...)
	rep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img), int64(len(img)), firmware.Options{Formats: allTestFormats()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Chunks) != 1 || rep.Chunks[0].Offset != 1000 || rep.Chunks[0].Size != int64(buf.Len()) {
		t.Fatalf("chunks %+v, want the outer gzip only", rep.Chunks)
	}
	if len(rep.Unknown) != 1 || rep.Unknown[0].Padding != "0x00" {
		t.Errorf("unknown %+v", rep.Unknown)
	}
}

// FuzzScan runs the scanner over arbitrary bytes: no panic, chunks inside
// the data, regions and chunks tile the data exactly.
func FuzzScan(f *testing.F) {
	seeds, _ := filepath.Glob("formats/compress/testdata/*.*")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil && len(b) < 1<<16 {
			f.Add(b)
		}
	}
	f.Add(append(bytes.Repeat([]byte{0xff}, 600), []byte("HOST\x10\x00\x00\x00abcdefgh")...))
	f.Add(lengthChunk("CARV", slices.Concat([]byte("xx"), gzBytes([]byte("embedded")), []byte("yy"))))
	formats := append(allTestFormats(), carved)
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := firmware.ScanReaderAt(ctx, bytes.NewReader(data), int64(len(data)), firmware.Options{Formats: formats})
		if err != nil {
			t.Fatal(err)
		}
		type span struct{ off, size int64 }
		var spans []span
		for _, c := range rep.Chunks {
			spans = append(spans, span{c.Offset, c.Size})
		}
		for _, u := range rep.Unknown {
			spans = append(spans, span{u.Offset, u.Size})
		}
		slices.SortFunc(spans, func(a, b span) int { return int(a.off - b.off) })
		pos := int64(0)
		for _, s := range spans {
			if s.off != pos || s.size <= 0 {
				t.Fatalf("spans do not tile the data at %d: %+v", pos, spans)
			}
			pos += s.size
		}
		if pos != int64(len(data)) {
			t.Fatalf("spans end at %d, data at %d", pos, len(data))
		}
		// Embedded chunks lie inside their parent, in order, apart.
		var inside func(p *firmware.ChunkReport)
		inside = func(p *firmware.ChunkReport) {
			at := p.Offset
			for _, k := range p.Children {
				if k.Offset < at || k.Offset <= p.Offset || k.End() > p.End() {
					t.Fatalf("embedded %s [%d, %d) out of place in %s [%d, %d)", k.Format, k.Offset, k.End(), p.Format, p.Offset, p.End())
				}
				at = k.End()
				inside(k)
			}
		}
		for _, c := range rep.Chunks {
			inside(c)
		}
	})
}

// benchImage is 64 MiB: random data with a few gzip members and padding.
func benchImage(b *testing.B) []byte {
	img := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{3}).Read(img)
	for i := range 8 {
		off := i * 8 << 20
		copy(img[off:], bytes.Repeat([]byte{0xff}, 1<<20))
		copy(img[off+1<<20:], gz(b, bytes.Repeat([]byte("camera config line\n"), 1000)))
	}
	return img
}

// BenchmarkScan measures the chunk map of a 64 MiB image with every
// compression format; BenchmarkScanBaseline is a plain sha256 pass over the
// same bytes in the same run (scan/baseline is the ratio to report).
func BenchmarkScan(b *testing.B) {
	img := benchImage(b)
	o := firmware.Options{Formats: allTestFormats()}
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		rep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img), int64(len(img)), o)
		if err != nil || len(rep.Chunks) != 8 {
			b.Fatalf("%v, %d chunks", err, len(rep.Chunks))
		}
	}
}

func BenchmarkScanBaseline(b *testing.B) {
	img := benchImage(b)
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		h := sha256.New()
		io.Copy(h, bytes.NewReader(img))
		h.Sum(nil)
	}
}

// BenchmarkUnpackWorkers unpacks an image of 8 gzip chunks (4 MiB of text
// each) with 1 and 2 workers: workers=1 is the baseline for the ratio.
func BenchmarkUnpackWorkers(b *testing.B) {
	var img []byte
	for i := range 8 {
		var buf bytes.Buffer
		for j := range 4 << 20 / 64 {
			fmt.Fprintf(&buf, "chunk %d line %08d rtsp://0.0.0.0:554/Streaming/Channels/%d\n", i, j, j%7)
		}
		img = append(img, gz(b, buf.Bytes())...)
	}
	p := filepath.Join(b.TempDir(), "image.bin")
	os.WriteFile(p, img, 0o644)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				out := filepath.Join(b.TempDir(), "out")
				rep, err := firmware.Unpack(context.Background(), p, out, firmware.Options{Formats: allTestFormats(), Workers: w})
				if err != nil || len(rep.Chunks) != 8 {
					b.Fatalf("%v %d", err, len(rep.Chunks))
				}
			}
		})
	}
}

// many is a test format ("MANY" + u32 count) that emits count small gzip files.
var many = &firmware.Format{
	Name:   "many",
	Kind:   firmware.KindArchive,
	Magics: []firmware.Magic{{Bytes: []byte("MANY")}},
	Identify: func(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
		if off+8 > size {
			return nil, firmware.ErrNotFormat
		}
		return &firmware.Chunk{Offset: off, Size: 8, Desc: "many files"}, nil
	},
	Extract: func(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
		var h [8]byte
		src.ReadAt(h[:], 0)
		n := int(binary.LittleEndian.Uint32(h[4:]))
		for i := range n {
			var buf bytes.Buffer
			w := gzip.NewWriter(&buf)
			fmt.Fprintf(w, "file %d\n", i)
			w.Close()
			if err := out.Add(&firmware.Header{Name: fmt.Sprintf("d%d/f%05d.gz", i%10, i), Type: firmware.TypeFile, Mode: 0o644, Size: int64(buf.Len())}, &buf); err != nil {
				return err
			}
		}
		return nil
	},
}

// TestManyFiles: every extracted file is scanned, children land in the
// file's own folder, and the order of the report does not depend on timing.
func TestManyFiles(t *testing.T) {
	img := []byte("MANY\x2c\x01\x00\x00") // 300 files
	image := writeImage(t, img)
	rep, out := unpack(t, image, firmware.Options{Formats: []*firmware.Format{many, compress.GZIP}, Workers: 3})
	c := rep.Chunks[0]
	if len(c.Children) != 300 {
		t.Fatalf("%d children, want 300", len(c.Children))
	}
	for i, k := range c.Children {
		if k.Format != "gzip" || !strings.HasSuffix(k.ExtractDir, ".gz.extract/0x0-gzip.extract") {
			t.Fatalf("child %d: %+v", i, k)
		}
	}
	if !slices.IsSortedFunc(c.Children, func(a, b *firmware.ChunkReport) int { return strings.Compare(a.File, b.File) }) {
		t.Errorf("children not in file order")
	}
	b, err := os.ReadFile(filepath.Join(out, c.Children[0].ExtractDir, "data"))
	if err != nil || !strings.HasPrefix(string(b), "file ") {
		t.Errorf("child content %q %v", b, err)
	}
	if rep.Stats.Files != 600 {
		t.Errorf("%d files written, want 600", rep.Stats.Files)
	}
}

// TestGzipBomb4GiB: a gzip member that inflates to 4 GiB (built without
// compressing 4 GiB) ends quickly at the ratio limit, with the warning in
// report.json.
func TestGzipBomb4GiB(t *testing.T) {
	if raceEnabled {
		t.Skip("decodes 512 MiB while identifying: too slow under -race (runs in the normal suite)")
	}
	bomb := firmwaretest.GzipBomb(t, 4<<30)
	start := time.Now()
	rep, out := unpack(t, writeImage(t, bomb), firmware.Options{Limits: firmware.Limits{MaxRatio: 2}})
	t.Logf("%d-byte bomb stopped after %d bytes in %v", len(bomb), rep.Stats.BytesWritten, time.Since(start))
	if rep.Stats.BytesWritten > firmware.DefaultRatioFloor+1<<20 {
		t.Errorf("wrote %d bytes", rep.Stats.BytesWritten)
	}
	b, _ := os.ReadFile(filepath.Join(out, "report.json"))
	if !bytes.Contains(b, []byte("max ratio")) || !bytes.Contains(b, []byte("limit reached")) {
		t.Errorf("report.json does not explain the limit")
	}
}

func TestInterrupted(t *testing.T) {
	b := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{4}).Read(b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(t.TempDir(), "out")
	rep, err := firmware.Unpack(ctx, writeImage(t, b), out, firmware.Options{Formats: allTestFormats()})
	if !errors.Is(err, context.Canceled) || rep == nil {
		t.Fatalf("rep %v, err %v: want a partial report and context.Canceled", rep != nil, err)
	}
	if _, err := os.Stat(filepath.Join(out, "report.json")); err != nil {
		t.Errorf("no partial report: %v", err)
	}
	if !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "interrupted") }) {
		t.Errorf("warnings %q", rep.Warnings)
	}
}

// squat is a test format whose archive holds a file and, under the name the
// engine would give the file's extract folder, a symlink to elsewhere.
var squat = &firmware.Format{
	Name:   "squat",
	Kind:   firmware.KindArchive,
	Magics: []firmware.Magic{{Bytes: []byte("SQAT")}},
	Identify: func(r io.ReaderAt, off, size int64) (*firmware.Chunk, error) {
		return &firmware.Chunk{Offset: off, Size: 4, Desc: "squatter"}, nil
	},
	Extract: func(ctx context.Context, src *io.SectionReader, c *firmware.Chunk, out firmware.Sink) error {
		inner := gzBytes([]byte("inner"))
		out.Add(&firmware.Header{Name: "other", Type: firmware.TypeDir, Mode: 0o755}, nil)
		out.Add(&firmware.Header{Name: "a.gz", Type: firmware.TypeFile, Mode: 0o644}, bytes.NewReader(inner))
		out.Add(&firmware.Header{Name: "b.gz", Type: firmware.TypeFile, Mode: 0o644}, bytes.NewReader(inner))
		return out.Add(&firmware.Header{Name: "a.gz.extract", Type: firmware.TypeSymlink, Linkname: "other"}, nil)
	},
}

func gzBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestExtractDirSquatted(t *testing.T) {
	rep, out := unpack(t, writeImage(t, []byte("SQAT")), firmware.Options{Formats: []*firmware.Format{squat, compress.GZIP}})
	kids := rep.Chunks[0].Children
	if len(kids) != 2 || kids[0].ExtractDir != "0x0-squat.extract/a.gz.extract-2/0x0-gzip.extract" {
		t.Fatalf("children %+v", kids)
	}
	if ents, _ := os.ReadDir(filepath.Join(out, "0x0-squat.extract/other")); len(ents) != 0 {
		t.Errorf("extraction went through the squatting symlink: %v", ents)
	}
}

func TestProgress(t *testing.T) {
	var img []byte
	for i := range 6 {
		img = append(img, bytes.Repeat([]byte{0xff}, 3000)...)
		img = append(img, gz(t, bytes.Repeat([]byte{byte(i)}, 5000))...)
	}
	var mu sync.Mutex
	var last, total int64
	calls := 0
	o := firmware.Options{Progress: func(done, tot int64) {
		mu.Lock()
		defer mu.Unlock()
		if done < last || done > tot {
			t.Errorf("progress %d/%d after %d", done, tot, last)
		}
		last, total = done, tot
		calls++
	}}
	unpack(t, writeImage(t, img), o)
	if calls == 0 || total != int64(len(img)) || last < total*99/100 {
		t.Errorf("%d calls, last %d of %d (image %d)", calls, last, total, len(img))
	}
}

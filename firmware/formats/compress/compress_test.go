package compress

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/ulikunitz/xz/lzma"
)

var all = []*firmware.Format{GZIP, Zlib, Bzip2, XZ, LZMA, LZ4, LZ4Legacy, LZOP, Zstd}

// fixtures maps each format to its fixture (built by testdata/recipe.sh).
var fixtures = map[*firmware.Format]string{
	GZIP: "gzip.gz", Zlib: "zlib.zlib", Bzip2: "bzip2.bz2", XZ: "xz.xz", LZMA: "lzma.lzma",
	LZ4: "lz4.lz4", LZ4Legacy: "lz4-legacy.lz4", LZOP: "lzop.lzo", Zstd: "zstd.zst",
}

// want is camera.cfg, decoded from the gzip fixture by the standard library.
func want(t *testing.T) []byte {
	z, err := stdgzip.NewReader(bytes.NewReader(firmwaretest.ReadFixture(t, "gzip.gz")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFixtures(t *testing.T) {
	ref := want(t)
	for _, f := range all {
		t.Run(f.Name, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, fixtures[f])
			// Padding before and garbage after: the chunk must start at the
			// magic and end exactly where the stream ends.
			img := append(append(bytes.Repeat([]byte{0xff}, 100), data...), []byte("\x00garbage after the stream")...)
			res, err := firmwaretest.Run(f, img, 100)
			if err != nil {
				t.Fatal(err)
			}
			if res.Chunk == nil {
				t.Fatalf("not identified: %v", res.IdentifyErr)
			}
			if res.Chunk.Size != int64(len(data)) {
				t.Errorf("chunk size %d, want %d (%s)", res.Chunk.Size, len(data), res.Chunk.Desc)
			}
			if res.ExtractErr != nil {
				t.Fatalf("extract: %v", res.ExtractErr)
			}
			if len(res.Sink.Entries) != 1 {
				t.Fatalf("%d entries, want 1", len(res.Sink.Entries))
			}
			if got := res.Sink.Entries[0].Data; !bytes.Equal(got, ref) {
				t.Errorf("decoded %d bytes, want the %d bytes of camera.cfg", len(got), len(ref))
			}
			// Every other format rejects it.
			for _, g := range all {
				if g == f {
					continue
				}
				if c, err := g.Identify(bytes.NewReader(img), 100, int64(len(img))); err == nil {
					t.Errorf("%s also claims it: %+v", g.Name, c)
				} else if !errors.Is(err, firmware.ErrNotFormat) {
					t.Errorf("%s rejects with %v, want ErrNotFormat", g.Name, err)
				}
			}
		})
	}
}

func TestNames(t *testing.T) {
	res, err := firmwaretest.Run(GZIP, firmwaretest.ReadFixture(t, "gzip.gz"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Sink.Entries[0]; e.Header.Name != "camera.cfg" || e.Header.ModTime.Unix() != 1700000000 {
		t.Errorf("gzip entry %q mtime %v, want camera.cfg at 1700000000", e.Header.Name, e.Header.ModTime.Unix())
	}
	res, err = firmwaretest.Run(LZOP, firmwaretest.ReadFixture(t, "lzop.lzo"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Sink.Entries[0]; e.Header.Name != "camera.cfg" {
		t.Errorf("lzop entry %q, want camera.cfg", e.Header.Name)
	}
}

func TestTruncated(t *testing.T) {
	for _, f := range all {
		t.Run(f.Name, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, fixtures[f])
			cut := data[:len(data)*2/3]
			res, err := firmwaretest.Run(f, cut, 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.Chunk == nil {
				return // rejected outright: fine
			}
			if res.Chunk.Size != int64(len(cut)) {
				t.Errorf("truncated chunk size %d, want to the end (%d)", res.Chunk.Size, len(cut))
			}
			if len(res.Chunk.Warnings) == 0 {
				t.Errorf("no warning for a truncated stream")
			}
			if res.ExtractErr == nil {
				t.Errorf("extract of a truncated stream returned no error")
			}
		})
	}
}

func TestCorruptRejected(t *testing.T) {
	for _, f := range all {
		t.Run(f.Name, func(t *testing.T) {
			data := bytes.Clone(firmwaretest.ReadFixture(t, fixtures[f]))
			// Keep the magic, destroy everything after it.
			for i := 6; i < len(data); i++ {
				data[i] = byte(i*131 + 7)
			}
			res, err := firmwaretest.Run(f, data, 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.Chunk != nil && res.ExtractErr == nil && len(res.Chunk.Warnings) == 0 {
				t.Errorf("corrupt stream identified and extracted cleanly: %+v", res.Chunk)
			}
		})
	}
}

// TestBomb: a gzip stream that inflates to 4 GiB is identified within the
// budget (not decoded to the end) and its extraction stops at the sink's limit.
func TestBomb(t *testing.T) {
	if raceEnabled {
		t.Skip("decodes 512 MiB while identifying: too slow under -race (runs in the normal suite)")
	}
	bomb := firmwaretest.GzipBomb(t, 4<<30)
	res, err := firmwaretest.Run(GZIP, bomb, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunk == nil {
		t.Fatalf("bomb not identified: %v", res.IdentifyErr)
	}
	if len(res.Chunk.Warnings) == 0 {
		t.Errorf("no warning about the budget: %+v", res.Chunk)
	}
	if !errors.Is(res.ExtractErr, firmware.ErrLimit) {
		t.Errorf("extract error %v, want ErrLimit", res.ExtractErr)
	}
}

func fuzzFormat(f *testing.F, format *firmware.Format) {
	firmwaretest.Fuzz(f, format, firmwaretest.Fixtures(f, 0, fixtures[format], "xz-multi.bin")...)
}

func FuzzGzip(f *testing.F)      { fuzzFormat(f, GZIP) }
func FuzzZlib(f *testing.F)      { fuzzFormat(f, Zlib) }
func FuzzBzip2(f *testing.F)     { fuzzFormat(f, Bzip2) }
func FuzzXZ(f *testing.F)        { fuzzFormat(f, XZ) }
func FuzzLZMA(f *testing.F)      { fuzzFormat(f, LZMA) }
func FuzzLZ4(f *testing.F)       { fuzzFormat(f, LZ4) }
func FuzzLZ4Legacy(f *testing.F) { fuzzFormat(f, LZ4Legacy) }
func FuzzLZOP(f *testing.F)      { fuzzFormat(f, LZOP) }
func FuzzZstd(f *testing.F)      { fuzzFormat(f, Zstd) }

// TestXZDictLimit: a stream asking for a 4 GiB dictionary is refused before
// any allocation.
func TestXZDictLimit(t *testing.T) {
	data := bytes.Clone(firmwaretest.ReadFixture(t, "xz.xz"))
	if data[14] != 0x21 || data[15] != 1 {
		t.Fatalf("fixture's first block does not start with the LZMA2 filter: % x", data[12:18])
	}
	data[16] = 40 // 4 GiB - 1
	_, err := XZ.Identify(bytes.NewReader(data), 0, int64(len(data)))
	if !errors.Is(err, firmware.ErrNotFormat) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("err %v, want a dictionary limit rejection", err)
	}
}

// TestLZMALongDistance: a stream whose matches reach further back than the
// first decode's capped dictionary (lzmaProbeDict) is decoded again with its
// own dictionary and identified whole, followed by other data.
func TestLZMALongDistance(t *testing.T) {
	block := make([]byte, lzmaProbeDict+lzmaProbeDict/2)
	rand.NewChaCha8([32]byte{4}).Read(block)
	var buf bytes.Buffer
	w, err := lzma.WriterConfig{DictCap: 8 << 20}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(block)
	w.Write(block) // the second copy is matched 1.5 MiB back
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > len(block)+len(block)/4 {
		t.Fatalf("stream of %d bytes: the writer did not match the second copy", buf.Len())
	}
	stream := buf.Len()
	img := append(buf.Bytes(), bytes.Repeat([]byte("tail"), 100)...)
	c, err := LZMA.Identify(bytes.NewReader(img), 0, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != int64(stream) || c.Meta["decompressed_size"] != int64(2*len(block)) {
		t.Errorf("chunk size %d (want %d), meta %v", c.Size, stream, c.Meta)
	}
}

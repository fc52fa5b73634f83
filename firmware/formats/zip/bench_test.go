package zip

import (
	stdzip "archive/zip"
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkLocate measures finding the extent of a 500-entry zip cut before
// its central directory, at the start of a 64 MiB image: walking the local
// headers (what Locate does when the sizes are in them) against scanning the
// image for an end record (the fallback for streamed archives), same run:
//
//	go test ./firmware/formats/zip -run XXX -bench Locate
func BenchmarkLocate(b *testing.B) {
	var buf bytes.Buffer
	w := stdzip.NewWriter(&buf)
	for i := range 500 {
		f, err := w.CreateRaw(&stdzip.FileHeader{Name: fmt.Sprintf("www/js/module%03d.js", i), Method: stdzip.Store,
			CompressedSize64: 1000, UncompressedSize64: 1000})
		if err != nil {
			b.Fatal(err)
		}
		f.Write(bytes.Repeat([]byte{'x'}, 1000))
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	cd := bytes.Index(buf.Bytes(), sigCentr)
	img := append(buf.Bytes()[:cd], make([]byte, 64<<20)...)
	r := bytes.NewReader(img)
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			if _, err := Locate(r, 0, int64(len(img))); err == nil {
				b.Fatal("found an end record")
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, err := scanLocate(r, 0, int64(len(img))); err == nil {
				b.Fatal("found an end record")
			}
		}
	})
}

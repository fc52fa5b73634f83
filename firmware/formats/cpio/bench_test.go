package cpio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	cavcpio "github.com/cavaliergopher/cpio"
	"github.com/cordon-vms/cordon/firmware"
)

// discard is a Sink that reads and drops content, to time the parser alone.
type discard struct{}

func (discard) Add(h *firmware.Header, r io.Reader) error {
	if r != nil {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	return nil
}
func (discard) Warn(string) {}

// initramfs builds an initramfs-like newc archive (files of 64 B to 64 KiB)
// with the cavaliergopher writer.
func initramfs(b testing.TB, files int) []byte {
	var buf bytes.Buffer
	w := cavcpio.NewWriter(&buf)
	for i := range files {
		body := bytes.Repeat([]byte{byte(i)}, 64<<(i%11))
		h := &cavcpio.Header{Name: fmt.Sprintf("usr/lib/mod%04d.ko", i), Mode: 0o100644, Size: int64(len(body))}
		if err := w.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkNewc compares this reader (Identify + Extract through a Sink that
// discards) with cavaliergopher/cpio reading the same archive, in the same run:
//
//	go test ./firmware/formats/cpio -run XXX -bench Newc -benchmem
func BenchmarkNewc(b *testing.B) {
	data := initramfs(b, 2000)
	b.Run("cordon", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			r := bytes.NewReader(data)
			c, err := Format.Identify(r, 0, int64(len(data)))
			if err != nil {
				b.Fatal(err)
			}
			if err := Format.Extract(context.Background(), io.NewSectionReader(r, 0, c.Size), c, discard{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cavaliergopher", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			cr := cavcpio.NewReader(bytes.NewReader(data))
			for {
				_, err := cr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, cr); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

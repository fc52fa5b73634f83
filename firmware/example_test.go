package firmware_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/formats/compress"
)

// A chunk map of an image held in memory: padding, a gzip member, and bytes
// no format claims.
func ExampleScanReaderAt() {
	var img bytes.Buffer
	img.Write(bytes.Repeat([]byte{0xff}, 512))
	zw := gzip.NewWriter(&img)
	zw.Write([]byte("rtsp_port=554\n"))
	zw.Close()
	img.WriteString("no format here")

	rep, err := firmware.ScanReaderAt(context.Background(), bytes.NewReader(img.Bytes()), int64(img.Len()),
		firmware.Options{Formats: []*firmware.Format{compress.GZIP, compress.XZ}})
	if err != nil {
		panic(err)
	}
	for _, c := range rep.Chunks {
		fmt.Printf("%#x %s %s\n", c.Offset, c.Format, c.Confidence)
	}
	for _, u := range rep.Unknown {
		fmt.Printf("%#x +%d padding=%q\n", u.Offset, u.Size, u.Padding)
	}
	// Output:
	// 0x200 gzip high
	// 0x0 +512 padding="0xff"
	// 0x226 +14 padding=""
}

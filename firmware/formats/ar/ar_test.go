package ar

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
)

func TestArchives(t *testing.T) {
	for _, tt := range []struct {
		file  string
		names []string
	}{
		{"ar-lib.a", []string{"onvif-discovery-settings.conf", "short.txt", "version.o"}},
		{"ar-deb.deb", []string{"control.tar.gz", "data.tar.xz", "debian-binary"}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data := firmwaretest.ReadFixture(t, tt.file)
			img := append(append(bytes.Repeat([]byte{1}, 17), data...), "trailing garbage that is not a header at all, long enough"...)
			res := firmwaretest.MustRun(t, Format, img, 17)
			if res.Chunk.Size != int64(len(data)) || len(res.Chunk.Warnings) != 0 {
				t.Errorf("chunk %+v, want size %d", res.Chunk, len(data))
			}
			got := res.Sink.Names()
			if fmt.Sprint(got) != fmt.Sprint(tt.names) {
				t.Errorf("names %v, want %v", got, tt.names)
			}
		})
	}
	res, _ := firmwaretest.Run(Format, firmwaretest.ReadFixture(t, "ar-lib.a"), 0)
	if b, _ := res.Sink.File("onvif-discovery-settings.conf"); string(b) != "onvif discovery settings\n" {
		t.Errorf("long-name member %q", b)
	}
	if e, _ := res.Sink.Entry("short.txt"); e.Header.Mode != 0o644 || string(e.Data) != "short\n" {
		t.Errorf("short.txt %+v %q", e.Header, e.Data)
	}
}

func TestBSDLongName(t *testing.T) {
	name := "a-bsd-long-member-name.txt"
	body := name + "hello\n"
	hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8o%-10d`\n", fmt.Sprintf("#1/%d", len(name)), 1700000000, 0, 0, 0o100755, len(body))
	data := []byte(magic + hdr + body)
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.IdentifyErr, res.ExtractErr)
	}
	if e, ok := res.Sink.Entry(name); !ok || string(e.Data) != "hello\n" || e.Header.Mode != 0o755 {
		t.Errorf("BSD member %v %+v", res.Sink.Names(), e)
	}
}

func TestDamage(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "ar-deb.deb")
	res, err := firmwaretest.Run(Format, data[:len(data)-50], 0)
	if err != nil || res.Chunk == nil || len(res.Chunk.Warnings) != 1 {
		t.Errorf("truncated: %v %+v", err, res.Chunk)
	}
	bad := []byte(magic + "not a header at all, but sixty bytes long, more or less......")
	if _, err := Format.Identify(bytes.NewReader(bad), 0, int64(len(bad))); !errors.Is(err, firmware.ErrNotFormat) {
		t.Errorf("bad header: %v", err)
	}
}

func FuzzAr(f *testing.F) {
	firmwaretest.Fuzz(f, Format, firmwaretest.Fixtures(f, 0, "ar-lib.a", "ar-deb.deb")...)
}

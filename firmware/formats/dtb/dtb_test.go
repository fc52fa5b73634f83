package dtb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-vms/cordon/firmware"
	"github.com/cordon-vms/cordon/firmware/firmwaretest"
	"github.com/cordon-vms/cordon/internal/testutil"
)

func TestParse(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "dtb.dtb")
	img := append(append(bytes.Repeat([]byte{0}, 64), data...), 0xde, 0xad)
	res := firmwaretest.MustRun(t, Format, img, 64)
	c := res.Chunk
	if c.Size != int64(len(data)) || c.Meta["model"] != "Cordon test camera (Hi3516EV300)" || c.Meta["nodes"] != 8 {
		t.Errorf("chunk %+v", c)
	}
	if cs := c.Meta["compatible"].([]string); len(cs) != 2 || cs[1] != "hisilicon,hi3516ev300" {
		t.Errorf("compatible %v", cs)
	}
	tree, err := Parse(bytes.NewReader(data), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	flash := tree.Root.Child("flash@10000000")
	if flash == nil || flash.Child("partition@340000").Prop("label").String() != "rootfs" {
		t.Errorf("flash node %+v", flash)
	}
	if v, ok := tree.Root.Child("memory@40000000").Prop("reg").Uint(); !ok || v != 0x40000000_04000000 {
		t.Errorf("memory reg %#x %v", v, ok)
	}
	dts, _ := res.Sink.File("tree.dts")
	for _, want := range []string{`model = "Cordon test camera (Hi3516EV300)";`, `reg = <0x40000000 0x4000000>;`, `local-mac-address = [00 12 34 56 78 9a];`, `label = "rootfs";`} {
		if !strings.Contains(string(dts), want) {
			t.Errorf("tree.dts lacks %q:\n%s", want, dts)
		}
	}
}

// TestDTSRoundTrip compiles the extracted source with dtc: it must give the same tree.
func TestDTSRoundTrip(t *testing.T) {
	testutil.NeedTool(t, "dtc")
	data := firmwaretest.ReadFixture(t, "dtb.dtb")
	res, err := firmwaretest.Run(Format, data, 0)
	if err != nil || res.ExtractErr != nil {
		t.Fatal(err, res.ExtractErr)
	}
	dts, _ := res.Sink.File("tree.dts")
	in := filepath.Join(t.TempDir(), "tree.dts")
	if err := os.WriteFile(in, dts, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dtc", "-q", "-I", "dts", "-O", "dtb", in).Output()
	if err != nil {
		t.Fatalf("dtc: %v", err)
	}
	if !bytes.Equal(out, data) {
		t.Errorf("dtc of the extracted source differs from the original blob")
	}
}

func TestHostile(t *testing.T) {
	data := firmwaretest.ReadFixture(t, "dtb.dtb")
	be := binary.BigEndian
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(data); f(b); return b }
	for name, b := range map[string][]byte{
		"total size too big": mut(func(b []byte) { be.PutUint32(b[4:], 1<<30) }),
		"strings outside":    mut(func(b []byte) { be.PutUint32(b[12:], uint32(len(b)-2)) }),
		"version 1":          mut(func(b []byte) { be.PutUint32(b[20:], 1) }),
		"bad token":          mut(func(b []byte) { be.PutUint32(b[be.Uint32(b[8:]):], 7) }),
		"cut":                data[:len(data)/2],
	} {
		_, err := Parse(bytes.NewReader(b), 0, int64(len(b)))
		if !errors.Is(err, firmware.ErrNotFormat) && !errors.Is(err, firmware.ErrTruncated) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A deep nest of BEGIN_NODE tokens stops at the depth limit.
	deep := buildDeep(1000)
	if _, err := Parse(bytes.NewReader(deep), 0, int64(len(deep))); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Errorf("deep nesting: %v", err)
	}
}

// buildDeep writes a blob with n nested empty nodes.
func buildDeep(n int) []byte {
	var st bytes.Buffer
	for range n {
		st.Write([]byte{0, 0, 0, 1, 0, 0, 0, 0})
	}
	for range n {
		st.Write([]byte{0, 0, 0, 2})
	}
	st.Write([]byte{0, 0, 0, 9})
	h := make([]byte, 40+16)
	be := binary.BigEndian
	be.PutUint32(h[0:], Magic)
	be.PutUint32(h[4:], uint32(len(h)+st.Len()))
	be.PutUint32(h[8:], uint32(len(h)))
	be.PutUint32(h[12:], uint32(len(h)+st.Len()))
	be.PutUint32(h[16:], 40)
	be.PutUint32(h[20:], 17)
	be.PutUint32(h[24:], 16)
	be.PutUint32(h[36:], uint32(st.Len()))
	return append(h, st.Bytes()...)
}

func FuzzDTB(f *testing.F) {
	f.Add(firmwaretest.ReadFixture(f, "dtb.dtb"))
	f.Add(buildDeep(3))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := firmwaretest.Run(Format, data, 0); err != nil {
			t.Fatal(err)
		}
	})
}
